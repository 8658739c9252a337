"""Base models: the built-in catalog and loading (catalog name, Hugging Face id or local folder)."""

"""tunelab: fine-tune open LLMs on your own data."""

__version__ = "0.1.0"

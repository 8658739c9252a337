"""The OpenAI-compatible server: one base model, any number of adapters, batched generation."""

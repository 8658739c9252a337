"""Evaluation: batched generation, metrics, and the report of base vs tuned."""

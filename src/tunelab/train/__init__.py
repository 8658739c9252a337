"""Training stages: one module each with a ``run(...)``; callbacks shared by all."""

"""The inference core shared by training (PPO rollouts, win rates), evaluation, serving and the
judge: batched decoding (``generate``), loading a run or a model for inference (``load``) and
the dtype rule (``resolve_dtype``). Nothing here imports train, evaluate, serve or api.
"""

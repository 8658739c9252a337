"""Run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import sys


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from tunelab.cli import main

    argv = sys.argv
    sys.argv = ["tunelab", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def save_random_lora(model, cfg, folder, seed: int = 1) -> None:
    """A LoRA adapter on ``model`` whose B matrices are random rather than zero, so the tuned
    model visibly differs from its base, saved to ``folder``/adapter (a run without training)."""
    import torch

    from tunelab import methods

    torch.manual_seed(seed)
    record = methods.get("lora")
    model = record.apply(model, record.settings(cfg.method))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    methods.save(record, model, folder / "adapter")

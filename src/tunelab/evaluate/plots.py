"""Loss curves of a run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def loss_curves(metrics: list[dict], out: Path, title: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    val = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    if not train and not val:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train", color="#4a7fb5")
    if val:
        ax.plot(*zip(*val), label="validation", color="#d0743c", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"Loss{': ' + title if title else ''}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out

"""One training run over many processes: who writes, who waits, which device and how many
threads each process gets, and the trainer arguments of each distributed mode.

A multi-process run is started by torchrun (``tunelab train --nproc-per-node N`` re-executes
itself under it, see train/launch.py), ``torchrun -m tunelab train`` or ``accelerate launch``.
Every process runs the same recipe; the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK,
LOCAL_WORLD_SIZE) says which one this is. The process group and the barriers are accelerate's
``PartialState`` (the same state the trainer uses), so there is no collective of our own:

- only the main process (global rank 0) writes the run directory, its config, data splits,
  metrics, adapter, run.json and reports; the others wait at ``wait_for_everyone``;
- each process uses ``cores / LOCAL_WORLD_SIZE`` compute threads and the GPU ``LOCAL_RANK``;
- the trainer's distributed sampler splits each global batch, so with
  ``train.batch_size`` rows per process the global batch is ``batch_size × world size``.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable, Iterator

from tunelab import resources
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, TunelabError

MODES = ("ddp", "fsdp", "deepspeed")
# The shipped configurations of each mode (resources/distributed/), the first is the default.
SHIPPED = {"fsdp": ("fsdp-full-shard", "fsdp-offload"), "deepspeed": ("zero2", "zero3")}


class PeerLost(TunelabError):
    """Another process of a multi-process run died or stopped answering."""

    exit_code = 1


# ------------------------------------------------------------------------------- who am I
def world_size() -> int:
    """Processes in the run, from the launcher's environment (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", "1")))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _state():
    """accelerate's process state: it joins the process group the launcher set up (gloo on
    CPU, nccl on GPUs) once, shared with the trainer."""
    from accelerate import PartialState

    return PartialState(cpu=not _cuda())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def wait_for_everyone() -> None:
    """A barrier across every process of the run (nothing to do in a single process)."""
    if world_size() > 1:
        _state().wait_for_everyone()


def on_main(write: Callable, *args, **kwargs) -> None:
    """Run ``write`` on the main process only, then let every process past once it is done."""
    if is_main():
        write(*args, **kwargs)
    wait_for_everyone()


# ------------------------------------------------------------------------------- what I use
def threads_per_process(cores: int) -> int:
    """The cores this machine gives the run, shared among the processes on it."""
    return max(1, cores // max(1, local_world_size()))


def mode(cfg: RunConfig) -> str:
    """single (one process), or the configured mode (auto: ddp) when there are several."""
    if world_size() == 1:
        return "single"
    return "ddp" if cfg.train.distributed == "auto" else cfg.train.distributed


def describe(cfg: RunConfig) -> dict:
    """What run.json records about the processes that trained the run."""
    backend = _state().backend if world_size() > 1 else None
    return {"world_size": world_size(), "nodes": max(1, world_size() // max(1, local_world_size())),
            "backend": backend, "mode": mode(cfg)}


def check(cfg: RunConfig) -> None:
    """Refuse, before anything is loaded or written, what does not run over several processes."""
    if world_size() == 1 and cfg.train.distributed == "auto":
        return
    if cfg.train.stage == "ppo" and world_size() > 1:
        raise ConfigError("--stage ppo runs in one process (its own loop, not a trainer, keeps the policy, value head "
                          "and reference on one device); use --stage rloo for policy optimisation over several "
                          "processes, or drop --nproc-per-node")
    chosen = mode(cfg)
    if chosen == "fsdp" and not _cuda():  # accelerate would quietly run DDP instead (seen with torch 2.13)
        raise ConfigError("train.distributed=fsdp shards over GPUs; on a CPU the trainer would run plain DDP, "
                          "so use train.distributed=ddp here")
    if chosen == "fsdp" and cfg.method.name == "qlora":
        raise ConfigError("method qlora under train.distributed=fsdp needs a 4-bit base stored in the compute dtype, "
                          "which tunelab's qlora does not load; use train.distributed=ddp (each GPU holds the 4-bit "
                          "base) or method lora with fsdp")
    if chosen == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("train.distributed=deepspeed needs the deepspeed package: pip install deepspeed "
                              "(GPU machines; on CPU use ddp)")


# ------------------------------------------------------------------------------- trainer arguments
def trainer_args(cfg: RunConfig) -> dict:
    """The TrainingArguments of the run's mode: FSDP's or DeepSpeed's configuration (a shipped
    one or the file train.distributed_config names) passed through the trainer's own fields;
    nothing for one process or DDP (the trainer wraps the model in DDP by itself)."""
    chosen = mode(cfg)
    if chosen == "single":
        return {}
    if chosen == "ddp":  # every trainable weight gets a gradient each step: skip DDP's unused-weight search
        return {"ddp_find_unused_parameters": False}
    settings = load_config(chosen, cfg.train.distributed_config)
    return {"fsdp": True, "fsdp_config": settings} if chosen == "fsdp" else {"deepspeed": settings}


def load_config(chosen: str, name: str | None) -> dict:
    """A shipped configuration by name (fsdp-full-shard, fsdp-offload, zero2, zero3) or a JSON
    file; the default is the mode's first shipped one."""
    shipped = SHIPPED[chosen]
    name = name or shipped[0]
    if name in shipped:
        return json.loads(resources.path(f"distributed/{name}.json").read_text())
    from pathlib import Path

    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"train.distributed_config: '{name}' is neither a shipped {chosen} configuration "
                          f"({', '.join(shipped)}) nor a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


# ------------------------------------------------------------------------------- failure
LOST_MARKERS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL", "Gloo",
                "ProcessGroup", "socket", "timed out")


@contextlib.contextmanager
def peer_guard() -> Iterator[None]:
    """Turn a collective that fails because another process died into one PeerLost line
    (the launcher then stops the run; no traceback from every process)."""
    try:
        yield
    except RuntimeError as exc:  # torch.distributed.DistError and gloo's errors are RuntimeErrors
        import torch.distributed as dist

        lost = isinstance(exc, getattr(dist, "DistError", ())) or any(m in str(exc) for m in LOST_MARKERS)
        if world_size() == 1 or not lost:
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise PeerLost(f"rank {rank()}: lost contact with another process of the run ({first}); "
                       "the run stopped; resume it from its last checkpoint with tunelab train --resume") from None


def shared_stop(flag) -> list:
    """The callback that makes every process stop after the same step when any of them caught
    SIGTERM/SIGINT (``flag``: the recipe's guards.StopOnSignal, which it must precede); none
    for a single process.

    A signal reaches the processes of a run at slightly different moments, perhaps either side
    of a step's end; a process that stopped alone would save a checkpoint the others never join
    and leave them waiting in the next step's gradient all-reduce. So after every step the
    processes agree: each offers the signal it caught (0: none), the highest wins (one
    all-reduce of one number through the trainer's process group), and all of them stop after
    that step and save its checkpoint together, as a single process does. Each acts on the
    vote's result (``flag.agreed``), not on its own flag, which may have changed since."""
    if world_size() == 1:
        return []
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback  # here: importing this module stays light

    class SharedStop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            caught = torch.tensor([flag.signum or 0], device=_state().device)
            dist.all_reduce(caught, op=dist.ReduceOp.MAX)
            flag.agreed = int(caught.item()) or None
            if flag.signum is None and flag.agreed:
                flag.signum = flag.agreed
            return control

    flag.shared = True
    return [SharedStop()]


# ------------------------------------------------------------------------------- placement
def device_map(cfg: RunConfig):
    """Where this process loads the base for training: None (one process: models/load.py's
    own rule), "cpu" under fsdp and deepspeed (the trainer shards it onto the GPUs; a whole
    copy per GPU is what they avoid), else this process's own GPU (LOCAL_RANK) or the CPU."""
    if world_size() == 1:
        return None
    if mode(cfg) in ("fsdp", "deepspeed"):
        return "cpu"
    return {"": int(os.environ.get("LOCAL_RANK", "0"))} if _cuda() else "cpu"


# ------------------------------------------------------------------------------- bookkeeping
def summed_tokens(summary: dict) -> dict:
    """A recipe counts the real tokens its own process trained on; the run's are the sum over
    every process (all-reduced through the trainer's process group), and tokens/s follows."""
    if world_size() == 1 or "real_tokens" not in summary:
        return summary
    import torch
    import torch.distributed as dist

    total = torch.tensor([float(summary["real_tokens"])], device=_state().device)  # nccl reduces GPU tensors only
    dist.all_reduce(total)
    tokens = int(total.item())
    seconds = max(float(summary.get("train_seconds") or 0.0), 1e-9)
    return {**summary, "real_tokens": tokens, "tokens_per_second": round(tokens / seconds, 1)}


def note_world_size(run_dir, events) -> None:
    """When a run resumes on a different number of processes than it started with, say so:
    the global batch, the steps per epoch and the data order change with it."""
    started = _launch(run_dir).get("world_size", 1)
    now = world_size()
    if started != now:
        events({"event": "note", "text": f"resuming at world size {now}; the run started at world size {started}, "
                                         "so the global batch, steps per epoch and data order differ from an "
                                         "unbroken run"})


def _launch(run_dir) -> dict:
    try:
        return json.loads(run_dir.launch_file.read_text())
    except (OSError, ValueError):
        return {}  # a run written before processes were recorded: it ran in one process

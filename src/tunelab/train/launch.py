"""`tunelab train --nproc-per-node N [--nnodes M --node-rank R --master-addr HOST --master-port P]`:
the same command, re-run as N processes per machine under PyTorch's own launcher (torchrun,
``torch.distributed.run``), called in this process so its failures become one line.

torchrun starts the processes, sets WORLD_SIZE/RANK/LOCAL_RANK/MASTER_ADDR for each, watches
them, and stops the rest when one dies; train/distributed.py is what each process does with
that. ``torchrun -m tunelab train ...`` and ``accelerate launch -m tunelab train ...`` start the
same processes without this module.
"""

from __future__ import annotations

import logging
import os
import signal

from tunelab.errors import ConfigError, TunelabError

# The flags this module reads; the command each process runs is the same one without them.
LAUNCH_FLAGS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port")


class LaunchFailed(TunelabError):
    """A process of a multi-process run failed; the launcher stopped the others."""

    exit_code = 1


def under_launcher() -> bool:
    """True inside a process that torchrun, accelerate or a similar launcher started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def wanted(nproc_per_node: int | None, nnodes: int | None) -> bool:
    """Whether the flags ask for a launch (more than one process in all)."""
    if nproc_per_node is None and nnodes is None:
        return False
    if under_launcher():
        raise ConfigError("--nproc-per-node/--nnodes: this process was already started by a launcher "
                          f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); drop the flags or the outer launcher")
    if (nproc_per_node or 1) < 1 or (nnodes or 1) < 1:
        raise ConfigError("--nproc-per-node and --nnodes must be at least 1")
    return (nproc_per_node or 1) * (nnodes or 1) > 1


def is_main() -> bool:
    """False in every process of a multi-process run but the one that writes the run (rank 0)."""
    return os.environ.get("RANK", "0") == "0"


def check(cfg, resume) -> None:
    """What the launcher can refuse before starting any process: a stage that runs in one."""
    if resume is not None:
        from tunelab.rundir import open_run

        cfg = open_run(resume).config()
    if cfg.train.stage == "ppo":
        raise ConfigError("--stage ppo runs in one process (its own loop, not a trainer, keeps the policy, value head "
                          "and reference on one device); use --stage rloo for policy optimisation over several "
                          "processes, or drop --nproc-per-node")


def strip_launch_flags(argv: list[str]) -> list[str]:
    """``argv`` without the launch flags and their values (``--flag value`` or ``--flag=value``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCH_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{f}=" for f in LAUNCH_FLAGS)):
            out.append(arg)
    return out


SHUTDOWN_SECONDS = 300


def torchrun_argv(command: list[str], nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                  master_addr: str | None = None, master_port: int | None = None) -> list[str]:
    """torchrun's arguments for running ``tunelab <command>`` on this machine: one machine
    rendezvous on a free local port (--standalone); several meet at master_addr:master_port.
    No restarts: a failed process ends the run (it resumes from its checkpoint)."""
    args = ["--nproc-per-node", str(nproc_per_node), "--max-restarts", "0"]
    if not {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "PET_SHUTDOWN_TIMEOUT"} & os.environ.keys():
        # After a SIGTERM, torchrun kills the processes that have not exited within this many
        # seconds; its default of 30 can cut short the checkpoint each of them is saving (a
        # large model, a slow disk, a loaded machine). Either variable overrides it.
        args += ["--shutdown-timeout", str(SHUTDOWN_SECONDS)]
    if nnodes == 1 and master_addr is None:
        args.append("--standalone")
    else:
        args += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", master_addr or "127.0.0.1",
                 "--master-port", str(master_port or 29500)]
    return args + ["-m", "tunelab", *command]


def launch(command: list[str], nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
           master_addr: str | None = None, master_port: int | None = None) -> None:
    """Run ``tunelab <command>`` as nproc_per_node processes here (node_rank of nnodes machines)
    and wait for all of them. A process that fails stops the run with LaunchFailed; SIGTERM or
    SIGINT reaches every process, which checkpoints and stops as a single process would."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    argv = torchrun_argv(command, nproc_per_node, nnodes, node_rank, master_addr, master_port)
    _share_cores(nproc_per_node)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # our one line says it instead
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as exc:
        raise LaunchFailed(failure_line(exc.failures)) from None
    except SignalException as exc:
        stopped = LaunchFailed(stopped_line(command, int(exc.sigval)))
        stopped.exit_code = 128 + int(exc.sigval)
        raise stopped from None


def stopped_line(command: list[str], signum: int) -> str:
    """The launcher's line when a signal stopped the run, naming the command that resumes it
    (the run directory from --out or --resume when the command gave one)."""
    run = "RUN_DIR"
    for flag in ("--out", "--resume"):
        for i, arg in enumerate(command):
            if arg == flag and i + 1 < len(command):
                run = command[i + 1]
            elif arg.startswith(f"{flag}="):
                run = arg.split("=", 1)[1]
    return (f"stopped by {signal.Signals(signum).name}; every process saved its part of the checkpoint of the same "
            f"step; resume with: tunelab train --resume {run} --nproc-per-node N (N as before)")


def failure_line(failures: dict) -> str:
    """One line naming the process that failed and how. The launcher stops the others with
    SIGTERM and lists them too, so a process ended otherwise is the cause. A process killed by
    another signal (SIGKILL, the OOM killer) is named before one that exited with an error: when a
    process dies, its peers' next collective fails and they exit with code 1, sometimes before
    the launcher has seen the death."""
    def blame(item):
        rank, failure = item
        killed = failure.exitcode < 0 and failure.exitcode != -signal.SIGTERM
        return (0 if killed else 1 if failure.exitcode > 0 else 2, rank)

    global_rank, failure = min(failures.items(), key=blame)
    how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
           else f"exited with code {failure.exitcode}")
    return (f"process rank {global_rank} (local rank {failure.local_rank}) {how}; the launcher stopped the other "
            "processes. Its own error is above; the run resumes from its last checkpoint with tunelab train --resume")


def _share_cores(nproc_per_node: int) -> None:
    """Each process's OpenMP threads: this machine's cores shared among its processes (torchrun
    would set one thread each)."""
    if "OMP_NUM_THREADS" not in os.environ:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // nproc_per_node))

"""Training over several processes on CPU with gloo: one writer per run, torchrun launches from
`tunelab train --nproc-per-node`, two "machines" on one host, a killed process, resume, and the
FSDP/DeepSpeed settings reaching the trainer. The multi-process runs are slow (each process
loads torch and the trainer), so they are marked slow; the fast tests check the pieces."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunelab.config import build_config
from tunelab.errors import ConfigError
from tunelab.train import distributed, launch

# Losses of the 2-process run and of the 1-process run with the same global batch agree to
# float32 rounding (the trainer averages the loss over the tokens of all processes); the
# tolerance leaves room for the different order of the gradient sums.
LOSS_TOLERANCE = 1e-3
FAST = ["train.bf16=off", "train.logging_steps=1", "train.lr=1e-2", "train.scheduler=constant",
        "method.lora.dropout=0.0"]


@pytest.fixture
def one_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)


# ------------------------------------------------------------------------------- fast pieces
def test_launch_flags_are_stripped_from_the_command_each_process_runs():
    argv = ["train", "--data", "d.jsonl", "--nproc-per-node", "2", "--nnodes=2", "--node-rank", "1",
            "--master-addr", "10.0.0.1", "--master-port=29501", "--max-steps", "3"]
    assert launch.strip_launch_flags(argv) == ["train", "--data", "d.jsonl", "--max-steps", "3"]


def test_torchrun_arguments_for_one_and_for_several_machines():
    one = launch.torchrun_argv(["train"], 2)
    assert one[:4] == ["--nproc-per-node", "2", "--max-restarts", "0"] and "--standalone" in one
    assert one[-3:] == ["-m", "tunelab", "train"]
    many = launch.torchrun_argv(["train"], 1, nnodes=2, node_rank=1, master_addr="127.0.0.1", master_port=29511)
    assert "--standalone" not in many
    assert many[many.index("--node-rank") + 1] == "1" and many[many.index("--master-port") + 1] == "29511"


def test_the_processes_get_time_to_finish_their_checkpoint_after_a_sigterm(monkeypatch):
    monkeypatch.delenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", raising=False)
    argv = launch.torchrun_argv(["train"], 2)
    assert argv[argv.index("--shutdown-timeout") + 1] == str(launch.SHUTDOWN_SECONDS)
    monkeypatch.setenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "45")  # the user's own choice is torchrun's to read
    assert "--shutdown-timeout" not in launch.torchrun_argv(["train"], 2)


def test_launch_flags_inside_a_launched_process_are_refused(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="already started by a launcher"):
        launch.wanted(2, None)


def test_one_process_in_all_is_not_a_launch(one_process):
    assert not launch.wanted(1, 1) and not launch.wanted(None, None) and launch.wanted(2, None)


def test_threads_are_the_cores_shared_among_the_processes_on_the_machine(monkeypatch):
    import torch

    from tunelab.train import fastpath

    before = torch.get_num_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    try:
        cores = len(os.sched_getaffinity(0))
        assert distributed.threads_per_process(cores) == max(1, cores // 2)
        assert fastpath.set_threads() == max(1, cores // 2) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_fsdp_settings_reach_the_training_arguments(monkeypatch):
    from transformers import TrainingArguments

    cfg = build_config(sets=["train.distributed=fsdp", "train.distributed_config=fsdp-offload"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    extra = distributed.trainer_args(cfg)
    monkeypatch.delenv("WORLD_SIZE")
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", **extra)
    assert args.fsdp is True
    assert args.fsdp_config["cpu_offload"] is True and args.fsdp_config["activation_checkpointing"] is True
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_plugin_args["fsdp_version"] == 2


def test_deepspeed_zero_settings_are_the_shipped_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    zero3 = distributed.trainer_args(build_config(sets=["train.distributed=deepspeed",
                                                        "train.distributed_config=zero3"]))
    assert zero3["deepspeed"]["zero_optimization"]["stage"] == 3
    assert distributed.trainer_args(build_config(sets=["train.distributed=deepspeed"]))[
        "deepspeed"]["zero_optimization"]["stage"] == 2
    own = tmp_path / "ds.json"
    own.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert distributed.trainer_args(build_config(sets=["train.distributed=deepspeed",
                                                       f"train.distributed_config={own}"]))["deepspeed"] == {
        "zero_optimization": {"stage": 1}}
    with pytest.raises(ConfigError, match="neither a shipped deepspeed configuration"):
        distributed.trainer_args(build_config(sets=["train.distributed=deepspeed", "train.distributed_config=zero9"]))
    assert distributed.trainer_args(build_config()) == {"ddp_find_unused_parameters": False}


def test_what_does_not_run_over_several_processes_is_refused_in_one_line(monkeypatch):
    import importlib.util

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--stage ppo runs in one process.*--stage rloo"):
        distributed.check(build_config(sets=["train.stage=ppo"]))
    with pytest.raises(ConfigError, match="on a CPU the trainer would run plain DDP"):
        distributed.check(build_config(sets=["train.distributed=fsdp"]))
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="pip install deepspeed"):
            distributed.check(build_config(sets=["train.distributed=deepspeed"]))
    distributed.check(build_config(sets=["train.stage=rloo"]))


def test_the_launcher_refuses_ppo_before_starting_any_process(one_process, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunelab", "train", "--stage", "ppo", "--data", "x.jsonl",
                           "--nproc-per-node", "2"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "--stage ppo runs in one process" in proc.stderr


def test_a_failed_process_is_one_line_naming_it():
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    killed = ProcessFailure(local_rank=1, pid=123, exitcode=-9, error_file="/nonexistent")
    stopped = ProcessFailure(local_rank=0, pid=122, exitcode=-15, error_file="/nonexistent")
    line = launch.failure_line({0: stopped, 1: killed})
    assert "\n" not in line and "rank 1" in line and "SIGKILL" in line
    # The peer's collective failed first and it exited with code 1: the killed one is still the cause.
    broken = ProcessFailure(local_rank=0, pid=122, exitcode=1, error_file="/nonexistent")
    assert launch.failure_line({0: broken, 1: killed}).startswith("process rank 1 ")
    assert launch.failure_line({0: broken, 1: stopped}).startswith("process rank 0 ")


def test_the_launchers_stop_line_names_the_run_to_resume():
    line = launch.stopped_line(["train", "--data", "d.jsonl", "--out", "runs/a"], signal.SIGTERM)
    assert line.startswith("stopped by SIGTERM;") and "tunelab train --resume runs/a --nproc-per-node" in line
    assert "--resume runs/b " in launch.stopped_line(["train", "--resume=runs/b"], signal.SIGINT)
    assert "--resume RUN_DIR " in launch.stopped_line(["train", "--data", "d.jsonl"], signal.SIGTERM)


def test_a_resume_on_another_world_size_is_said(one_process, tmp_path):
    from tunelab.io import atomic_write_json
    from tunelab.rundir import RunDir

    run = RunDir(tmp_path)
    atomic_write_json(run.launch_file, {"world_size": 2, "backend": "gloo", "mode": "ddp", "nodes": 1})
    notes = []
    distributed.note_world_size(run, notes.append)
    assert notes and "resuming at world size 1; the run started at world size 2" in notes[0]["text"]
    atomic_write_json(run.launch_file, {"world_size": 1, "backend": None, "mode": "single", "nodes": 1})
    notes.clear()
    distributed.note_world_size(run, notes.append)
    assert notes == []


def test_one_process_records_itself_and_loads_on_the_cpu(one_process, tiny_model, tmp_path):
    from tunelab.inference.load import load_run
    from tunelab.models.load import default_device_map, resolve
    from tunelab.rundir import RunDir
    from tunelab.train import setup

    cfg = build_config(overrides={"model.name": tiny_model})
    setup.start_run(cfg, RunDir(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "launch.json").read_text()) == {
        "world_size": 1, "nodes": 1, "backend": None, "mode": "single"}
    assert default_device_map(resolve(tiny_model), "float32") is None  # no GPU here
    assert str(next(load_run(tiny_model, device_map="cpu").model.parameters()).device) == "cpu"
    with pytest.raises(ValueError, match="device_map"):
        load_run(tiny_model, device_map="balanced_everywhere")


def test_trained_tokens_are_the_training_rows_once_each_evaluations_excluded(one_process, capsys, tiny_model,
                                                                              tmp_path):
    from tests.helpers import run_cli

    run = tmp_path / "run"
    args = _data(tiny_model, tmp_path) + ["--max-steps", "4", "--batch-size", "4", "--out", str(run),
                                          "--set", "train.eval_steps=1"]  # 16 rows: one epoch, evaluated every step
    code, _, err = run_cli(capsys, "train", *args)
    assert code == 0, err
    card = json.loads((run / "data" / "data_card.json").read_text())["splits"]
    assert json.loads((run / "run.json").read_text())["real_tokens"] == card["train"]["tokens"]


# ------------------------------------------------------------------------------- processes
def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    return {**env, "OMP_NUM_THREADS": "1"}  # two processes on a small machine: one thread each


def _train(args: list[str], timeout: int = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab", "train", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _data(tiny_model, tmp_path) -> list[str]:
    from tests.conftest import MEMO_ROWS, write_jsonl

    train = write_jsonl(tmp_path / "memo16.jsonl", MEMO_ROWS * 2)
    val = write_jsonl(tmp_path / "val.jsonl", MEMO_ROWS[:2])
    return ["--model", tiny_model, "--data", str(train), "--val", str(val), *[a for s in FAST for a in ("--set", s)]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_run_with_the_loss_of_one_process(tiny_model, tmp_path):
    common = _data(tiny_model, tmp_path) + ["--max-steps", "6"]
    two = _train(common + ["--batch-size", "2", "--nproc-per-node", "2", "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-2000:]
    one = _train(common + ["--batch-size", "4", "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-2000:]
    run = tmp_path / "two"
    assert list(run.glob("adapter/adapter_model.safetensors")) and not list(tmp_path.glob("two*/adapter/.*tmp*"))
    summary = json.loads((run / "run.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "nodes": 1, "backend": "gloo", "mode": "ddp"}
    assert summary["steps"] == 6
    assert two.stdout.count("done:") == 1  # one progress display and one summary for the run
    a, b = _losses(run), _losses(tmp_path / "one")
    assert len(a) == len(b) == 6
    # each process counts the tokens of its own share of the training batches (never the
    # held-out ones it evaluates), and the run's count is their sum
    assert summary["real_tokens"] == json.loads((tmp_path / "one" / "run.json").read_text())["real_tokens"] > 0
    assert all(abs(x - y) <= LOSS_TOLERANCE * max(1.0, abs(y)) for x, y in zip(a, b)), (a, b)


@pytest.mark.slow
def test_two_machines_on_one_host_rendezvous_and_write_one_run(tiny_model, tmp_path):
    port = _free_port()
    args = _data(tiny_model, tmp_path) + ["--max-steps", "3", "--batch-size", "2", "--out", str(tmp_path / "run"),
                                          "--nproc-per-node", "1", "--nnodes", "2", "--master-addr", "127.0.0.1",
                                          "--master-port", str(port)]
    nodes = [subprocess.Popen([sys.executable, "-m", "tunelab", "train", *args, "--node-rank", str(rank)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for rank in (0, 1)]
    outs = [node.communicate(timeout=420) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outs[1][1][-2000:] + outs[0][1][-2000:]
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["distributed"]["world_size"] == 2 and summary["distributed"]["nodes"] == 2
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_killed_process_stops_the_other_with_one_line(tiny_model, tmp_path):
    import psutil

    run = tmp_path / "run"
    args = _data(tiny_model, tmp_path) + ["--max-steps", "100000", "--batch-size", "2", "--out", str(run),
                                          "--nproc-per-node", "2", "--set", "train.save_steps=50"]
    launcher = subprocess.Popen([sys.executable, "-m", "tunelab", "train", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 300
        while not (run / "metrics.jsonl").is_file() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert launcher.poll() is None, launcher.communicate()[1][-2000:]
        ranks = {p.environ().get("RANK"): p for p in psutil.Process(launcher.pid).children(recursive=True)
                 if p.environ().get("RANK") is not None}
        os.kill(ranks["1"].pid, signal.SIGKILL)
        _, err = launcher.communicate(timeout=60)  # bounded: the other process must not hang
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode not in (0, None)
    assert not ranks["0"].is_running() or ranks["0"].status() == psutil.STATUS_ZOMBIE
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: process rank 1") and "SIGKILL" in last


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_every_process_and_resume_finishes(tiny_model, tmp_path):
    from tunelab.rundir import RunDir, checkpoint_problem

    run, steps = tmp_path / "run", 30
    args = _data(tiny_model, tmp_path) + ["--max-steps", str(steps), "--batch-size", "2", "--out", str(run),
                                          "--nproc-per-node", "2", "--set", "train.save_steps=1000"]
    launcher = subprocess.Popen([sys.executable, "-m", "tunelab", "train", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 300
        while launcher.poll() is None and time.monotonic() < deadline and len(_losses_so_far(run)) < 2:
            time.sleep(0.2)
        assert launcher.poll() is None, launcher.communicate()[1][-2000:]
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err.strip().splitlines()[-1]
    checkpoint = RunDir(run).resume_checkpoint()
    assert checkpoint_problem(checkpoint) is None and 2 <= int(checkpoint.name.split("-")[1]) < steps
    assert sorted(p.name for p in checkpoint.glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert not (run / "run.json").exists() and not (run / "adapter").exists()

    resumed = _train(["--resume", str(run), "--nproc-per-node", "2"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["steps"] == steps
    assert [m["step"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in m] == list(range(1, steps + 1))
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def _losses_so_far(run: Path) -> list[float]:
    try:
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
                if '"loss"' in line]
    except (OSError, ValueError):
        return []


@pytest.mark.slow
def test_resume_at_the_same_world_size_and_a_changed_one_is_said(tiny_model, tmp_path):
    import shutil

    run = tmp_path / "run"
    first = _train(_data(tiny_model, tmp_path) + ["--max-steps", "4", "--batch-size", "2", "--out", str(run),
                                                   "--nproc-per-node", "2", "--set", "train.save_steps=2"])
    assert first.returncode == 0, first.stderr[-2000:]
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")  # as if stopped after step 2
    same = _train(["--resume", str(run), "--nproc-per-node", "2"])
    assert same.returncode == 0, same.stderr[-2000:]
    assert "resuming at world size" not in same.stdout + same.stderr
    assert json.loads((run / "run.json").read_text())["steps"] == 4
    assert [m["step"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in m] == [1, 2, 3, 4]
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    changed = _train(["--resume", str(run)])
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "resuming at world size 1; the run started at world size 2" in " ".join((changed.stdout + changed.stderr).split())


def test_gpus_needed_follow_the_memory_model():
    from tunelab import cost

    gpu = cost.parse_bytes("80GB")
    assert gpu == 80e9 and cost.parse_bytes("24GiB") == 24 * 2**30
    with pytest.raises(ConfigError, match="--gpu-memory"):
        cost.parse_bytes("lots")
    small = cost.gpus_needed(0.135e9, "lora", gpu)
    assert small["ddp"] == 1 and small["mode"] == "ddp"
    big = cost.gpus_needed(70e9, "full", gpu)  # a whole copy per GPU cannot fit: sharded over several
    assert big["ddp"] is None and big["mode"] == "fsdp"
    assert big["fsdp"] * cost.GPU_USABLE * gpu >= cost.training_memory_bytes(70e9, "full")
    assert (big["fsdp"] - 1) * cost.GPU_USABLE * gpu < cost.training_memory_bytes(70e9, "full")

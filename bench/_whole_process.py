"""What the training benchmarks share: run one side as its own process and measure it whole
(spawn to exit, peak RSS from the kernel's accounting of that one child), plus the load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def loadavg() -> float:
    """The 1-minute load average: the machine is shared, so every number carries it."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return -1.0


def run_side(argv: list[str], env: dict | None = None) -> dict:
    """Run ``argv`` to completion; returns its wall seconds, its peak RSS in MB (os.wait4's
    rusage: this child and the descendants it waited for), the load before and after, and the
    last JSON line it printed."""
    load_before = loadavg()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{stderr[-3000:]}")
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    return {"process_seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "load_before": load_before, "load_after": loadavg(), "result": json.loads(lines[-1]) if lines else {}}

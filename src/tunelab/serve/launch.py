"""Run the server as a process: engine, request log, app and uvicorn, with the limits set,
API keys from the environment or a file, and a shutdown that is bounded in time.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and closes idle ones; requests in
flight get ``shutdown_timeout`` seconds to finish, then are cancelled (their generation
stops); the engine and the log are closed and the process exits 0."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from tunelab.errors import ConfigError
from tunelab.serve.limits import Limits

KEY_ENV = "TUNELAB_API_KEY"
# seconds uvicorn waits, after the engine has stopped the requests in flight, for their
# answers to go out before it cancels what is left
DRAIN_GRACE = 5.0
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, has_keys: bool) -> str | None:
    """What to tell someone who opens the API beyond this machine without a key (None: nothing)."""
    if has_keys or is_loopback(host):
        return None
    return (f"warning: listening on {host} without an API key: anyone who can reach this port can use the models "
            f"(set {KEY_ENV} or --api-keys-file)")


def uvicorn_config(app, host: str, port: int, limits: Limits):
    """uvicorn's settings for ``limits``: the read-timeout protocol, a connection cap, the
    keep-alive and graceful-shutdown timeouts."""
    import uvicorn

    from tunelab.serve.protocol import with_read_timeout

    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=with_read_timeout(limits.read_timeout),
                          limit_concurrency=limits.max_connections, timeout_keep_alive=limits.keep_alive,
                          timeout_graceful_shutdown=limits.shutdown_timeout + DRAIN_GRACE, server_header=False)


def draining_server(config, engine, drain_after: float):
    """A uvicorn server whose shutdown, once ``drain_after`` seconds have passed, stops the
    engine's requests in flight, so they answer (503) and close instead of being cancelled
    mid-write."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            timer = asyncio.get_running_loop().call_later(drain_after, engine.drain)
            try:
                await super().shutdown(sockets)
            finally:
                timer.cancel()

    return DrainingServer(config)


def serve(model: str, *, adapters: dict[str, str] | None = None, runs: str | Path | None = None,
          runs_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          api_keys_file: str | Path | None = None, db: str | Path = "tunelab-serve.sqlite",
          log_content: bool = False, dtype: str = "auto", device_map: str | None = None,
          limits: Limits | None = None, rag: dict[str, str] | None = None, jobs_db: str | Path | None = None,
          workers: int = 0, say: Callable[[str], None] = _stderr, warn: Callable[[str], None] = _stderr) -> None:
    """Serve ``model`` and its adapters (``adapters``: NAME -> run folder; ``runs``: a folder
    whose runs of this base are all served) until SIGTERM or Ctrl-C.

    ``api_key`` (else the TUNELAB_API_KEY environment variable) and ``api_keys_file`` (one
    ``name:key`` per line) set the accepted keys; with none, the API is open. ``rag`` maps a model
    name to INDEX[:RUN]: requests to it retrieve from INDEX first (serve/rag_routes.py). The
    dashboard at /ui lists the runs in ``runs_dir`` (default: ``runs``, else ./runs).

    The files and fine-tuning jobs API keeps its queue in ``jobs_db`` (default
    TUNELAB_HOME/jobs/jobs.sqlite); ``workers`` job workers run beside the server, restarted if
    they exit (0: jobs wait for a separate `tunelab worker`)."""
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys
    from tunelab.serve import rag_routes
    from tunelab.serve.engine import Engine, find_adapters, served_name
    from tunelab.serve.store import Store

    limits = limits or Limits()
    try:
        limits.check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    keys = ApiKeys.load(api_key or os.environ.get(KEY_ENV) or None, api_keys_file)
    exposed = exposure_warning(host, bool(keys))
    if exposed:
        warn(exposed)
    adapters, rag_specs = dict(adapters or {}), rag_routes.parse(rag or {})
    for name, (_, run) in rag_specs.items():
        if run and adapters.setdefault(name, run) != run:
            raise ConfigError(f"--rag {name}: the adapter name '{name}' already serves {adapters[name]}")
    found = find_adapters(model, adapters, str(runs) if runs else None)
    routes = rag_routes.load(rag_specs, {run: served_name(model, name) for name, (_, run) in rag_specs.items()
                                         if run}, model)
    engine = Engine(model, found, max_batch=limits.max_batch, max_queue=limits.max_queue, dtype=dtype,
                    device_map=device_map)
    store = Store(db, log_content)
    jobs, supervisor = _jobs(model, jobs_db, workers, limits)
    app = create_app(engine, keys=keys, store=store, limits=limits, rag=routes, jobs=jobs,
                     runs_dir=runs_dir or runs)
    config = uvicorn_config(app, host, port, limits)
    auth = f" ({len(keys.names())} API key{'s' if len(keys.names()) != 1 else ''})" if keys else ""
    say(f"serving {', '.join(engine.model_names() + list(routes))} on http://{host}:{port}/v1{auth}; log: {db}")
    say(f"dashboard: http://{host}:{port}/ui (runs in {runs_dir or runs or 'runs'})")
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if main:
        # uvicorn re-raises the signal it caught once it has shut down; with the default
        # handler that would kill the process (exit -15) after a clean shutdown, so SIGTERM
        # gets a no-op handler for that last step and the process exits 0
        signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        if supervisor is not None:
            supervisor.start()
            say(f"{workers} fine-tuning worker{'s' if workers != 1 else ''} started; jobs: {jobs.store.path}")
        draining_server(config, engine, limits.shutdown_timeout).run()
    finally:
        if supervisor is not None:
            supervisor.stop()
        if main:
            signal.signal(signal.SIGTERM, previous)
        engine.close(timeout=limits.shutdown_timeout)
        store.close()


def _jobs(model: str, jobs_db: str | Path | None, workers: int, limits: Limits):
    """The jobs API over the job store, and the supervisor of ``workers`` workers (None: none)."""
    from tunelab.jobs.routes import JobsApi
    from tunelab.jobs.store import open_store
    from tunelab.jobs.worker import Supervisor

    if workers < 0:
        raise ConfigError(f"--workers {workers}: expected 0 or more")
    store = open_store(jobs_db)
    api = JobsApi(store, base=model, max_upload_bytes=limits.max_upload_bytes)
    return api, (Supervisor(workers, ["--db", str(store.path)]) if workers else None)

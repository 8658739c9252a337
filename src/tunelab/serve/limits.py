"""The server's limits, in one place: each has a `tunelab serve` flag of the same name."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    # the HTTP edge (answered with an OpenAI-shaped 413 or 429)
    max_body_bytes: int = 1 << 20  # request body, counted on the bytes received
    max_upload_bytes: int = 512 << 20  # one file uploaded to POST /v1/files (its body alone may be this large)
    max_prompt_chars: int = 100_000  # prompt or message text, checked before tokenising
    max_concurrent: int = 128  # requests being handled at once; more get 429
    # the engine
    max_queue: int = 64  # requests waiting or generating; more get 429
    max_batch: int = 8  # requests generated together
    # the connection (uvicorn)
    read_timeout: float = 15.0  # seconds a client has to send a whole request (headers and body)
    keep_alive: float = 5.0  # seconds an idle keep-alive connection is kept
    shutdown_timeout: float = 10.0  # on SIGTERM: seconds in-flight requests get before they are cancelled
    max_connections: int = 512  # open connections; beyond this uvicorn itself answers 503

    def check(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be positive (got {value})")

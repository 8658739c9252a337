"""uvicorn's HTTP/1.1 protocol with a read timeout.

uvicorn closes idle keep-alive connections but puts no limit on how long a client may take
to send a request: one that trickles its headers (or its body) a byte at a time holds a
connection and its buffers for as long as it likes. This subclass gives each request
``read_timeout`` seconds, from its first byte (or the connection's opening), to arrive whole;
past that the connection is closed. No server option does this, and the alternatives
(hypercorn, a proxy in front) would change how tunelab is run, so the guard lives here,
hooked on the protocol's own events."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    read_timeout: float = 15.0  # set per server by ``with_read_timeout``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._awaited_after = None  # the request cycle before the one being read
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting_for_new = self.cycle is None or self.cycle.response_complete
        if self._read_deadline is None and waiting_for_new:
            self._arm()  # a new request starts on a kept-alive connection
        super().data_received(data)
        current = self.cycle
        if self._read_deadline is not None and current is not None and current is not self._awaited_after \
                and not current.more_body:
            self._disarm()  # the request is all here

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._awaited_after = self.cycle
        self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_read_deadline", None) is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.logger.warning("closing a connection that sent no complete request within %.0f s", self.read_timeout)
            self.transport.close()


def with_read_timeout(seconds: float) -> type[GuardedH11Protocol]:
    """The protocol class to hand uvicorn (``Config(http=...)``) for this timeout."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"read_timeout": seconds})

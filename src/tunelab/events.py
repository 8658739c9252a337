"""Progress events: long work reports plain dicts to a sink function, never to a terminal.

The CLI renders them with rich; a job worker could store them instead.
"""

from __future__ import annotations

from typing import Callable

EventSink = Callable[[dict], None]


def no_events(_event: dict) -> None:
    return None

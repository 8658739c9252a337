"""Progress events: long work reports typed dicts to a sink function, never to a terminal.

The CLI renders them with rich (cli/render.ProgressView); a job worker stores them; a test
collects them in a list. Each kind is a TypedDict whose ``event`` field names it, so a sink
can dispatch on ``event["event"]`` and a type checker knows the other fields.
"""

from __future__ import annotations

from typing import Callable, Literal, TypedDict, Union

from typing_extensions import NotRequired


class Trainable(TypedDict):
    """The model about to train: trainable and total parameters, share, memory."""

    event: Literal["trainable"]
    trainable: int
    total: int
    percent: float
    model_mb: NotRequired[float]


class Start(TypedDict):
    """Training begins (or resumes) at ``step`` of ``total_steps``."""

    event: Literal["start"]
    total_steps: int
    step: int


class Step(TypedDict):
    """An optimizer step finished; PPO adds an ``info`` line (reward, KL, entropy)."""

    event: Literal["step"]
    step: int
    total_steps: int
    loss: NotRequired[float | None]
    eval_loss: NotRequired[float | None]
    info: NotRequired[str]


class Eval(TypedDict):
    """A validation pass finished."""

    event: Literal["eval"]
    step: int
    eval_loss: float


class End(TypedDict):
    event: Literal["end"]
    step: int


class Note(TypedDict):
    """A line of text worth showing (a stage starting, a judge at work)."""

    event: Literal["note"]
    text: str


class EvalSide(TypedDict):
    """Generation for one side of an evaluation begins: ``total`` prompts."""

    event: Literal["eval_side"]
    side: str
    total: int


class Generated(TypedDict):
    """``n`` more answers of that side are done."""

    event: Literal["generated"]
    side: str
    n: int


Event = Union[Trainable, Start, Step, Eval, End, Note, EvalSide, Generated]
EventSink = Callable[[Event], None]


def no_events(_event: Event) -> None:
    return None

"""The shipped example of both sides of the question.

``demo/manual/`` is the manual of an invented smart thermostat (the Halvard Loop 3), so no model
can know its facts; ``demo/questions.jsonl`` asks 20 questions whose answers are in it, each row
naming its source file. The calendar task (a tuned run's own test rows) is the other side: its
answers are a format, which no document supplies. Both run through the four-way comparison.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.events import EventSink, no_events
from tunelab.rag.compare import compare_rag
from tunelab.rag.index import build_index
from tunelab.rundir import open_run

HERE = Path(__file__).resolve().parent / "demo"
MANUAL = HERE / "manual"
QUESTIONS = HERE / "questions.jsonl"
# Short chunks keep a small model's prompt short; three of them cover any one answer.
DEMO_INDEX = {"chunk_tokens": 64, "overlap": 16}
DEMO_K = 3


def run_demo(run: str | Path, calendar_test: str | Path, out: str | Path, *, calendar_limit: int | None = 20,
             events: EventSink = no_events) -> dict:
    """Index the shipped manual into ``out``/rag-index, then compare base, base+RAG, tuned and
    tuned+RAG for ``run`` on the manual's questions and on the calendar rows of
    ``calendar_test``. Reports go to ``out``/rag_knowledge.md and ``out``/rag_calendar.md."""
    out = Path(out)
    model = open_run(run).config().model.name
    index = out / "rag-index"
    build_index([MANUAL], index, tokenizer=model, events=events, **DEMO_INDEX)
    events({"event": "note", "text": "knowledge: questions about the Halvard Loop 3 manual"})
    knowledge = compare_rag(index, run, QUESTIONS, k=DEMO_K, report=out / "rag_knowledge.md", events=events)
    events({"event": "note", "text": "format: calendar entries"})
    calendar = compare_rag(index, run, calendar_test, k=DEMO_K, limit=calendar_limit,
                           report=out / "rag_calendar.md", events=events)
    return {"index": str(index), "knowledge": knowledge, "calendar": calendar}

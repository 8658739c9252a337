"""Regenerate src/tunelab/resources/demo_calendar.jsonl (the demo's sample dataset).

One clear task with a recognisable output style: turn a casual meeting note into a fixed
five-line calendar entry. The base model answers in free prose; a tuned model answers in
the format, so the effect of fine-tuning shows in ROUGE-L and in the samples.

    python scripts/make_demo_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

EVENTS = [
    "budget review", "team sync", "design critique", "sprint planning", "quarterly review", "product demo",
    "onboarding session", "code review", "client call", "hiring debrief", "roadmap workshop", "lunch and learn",
    "incident retro", "one-on-one", "marketing brainstorm", "board prep", "vendor meeting", "release planning",
    "security briefing", "training session", "user interview", "sales kickoff", "offsite planning", "all-hands",
]
NAMES = [
    "Maria", "Tom", "Aisha", "Ken", "Lucia", "Omar", "Priya", "Jonas", "Mei", "Carlos", "Fatima", "Ivan", "Sofia",
    "Daniel", "Yuki", "Ahmed", "Elena", "Noah", "Grace", "Raj", "Chloe", "Mateo", "Hana", "Liam",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
TIMES = ["8:30 AM", "9:00 AM", "9:30 AM", "10:00 AM", "10:30 AM", "11:00 AM", "11:30 AM", "12:00 PM", "1:00 PM",
         "1:30 PM", "2:00 PM", "2:30 PM", "3:00 PM", "3:30 PM", "4:00 PM", "4:30 PM", "5:00 PM"]
PLACES = ["Room 4B", "the main conference room", "Room 12", "the library", "the cafeteria", "Zoom", "Google Meet",
          "the rooftop terrace", "Room 301", "the lab", "the lobby", "Teams", "the board room", "Room 7A"]
INSTRUCTIONS = [
    "Turn this note into a calendar entry.",
    "Make a calendar entry from this message.",
    "Convert the note below into a calendar entry.",
    "Create a calendar entry for this.",
    "Write this up as a calendar entry.",
]
TEMPLATES = [
    "hey, can we do the {event} with {people} on {day} at {time} in {place}?",
    "Reminder: {event} {day} {time}, {place}. {people} will join.",
    "{people} and I are meeting for the {event} on {day} at {time} ({place}).",
    "let's move the {event} to {day}, {time}. location: {place}. invite {people}",
    "Quick note - {event} is set for {day} at {time} in {place} with {people}.",
    "Please book {place} on {day} at {time} for the {event}; attendees: {people}.",
    "{day} {time}: {event} @ {place} w/ {people}",
    "Can you put the {event} on my calendar? It's {day} at {time}, {place}, with {people}.",
    "FYI the {event} with {people} happens {day} at {time}, we'll use {place}.",
    "scheduling the {event} for {day} at {time} in {place} - {people} confirmed",
]


def people_text(people: list[str]) -> str:
    return people[0] if len(people) == 1 else ", ".join(people[:-1]) + " and " + people[-1]


def make_row(rng: random.Random) -> dict:
    event = rng.choice(EVENTS)
    people = rng.sample(NAMES, rng.choice([1, 2, 2, 3]))
    day, time, place = rng.choice(DAYS), rng.choice(TIMES), rng.choice(PLACES)
    note = rng.choice(TEMPLATES).format(event=event, people=people_text(people), day=day, time=time, place=place)
    answer = "\n".join([
        f"Event: {event.capitalize()}",
        f"Date: {day}",
        f"Time: {time}",
        f"Place: {place[0].upper() + place[1:]}",
        f"With: {', '.join(people)}",
    ])
    return {"instruction": rng.choice(INSTRUCTIONS), "input": note, "output": answer}


def main() -> None:
    rng = random.Random(20261126)
    rows, seen = [], set()
    while len(rows) < 360:
        row = make_row(rng)
        if row["input"] not in seen:
            seen.add(row["input"])
            rows.append(row)
    out = Path(__file__).resolve().parents[1] / "src" / "tunelab" / "resources" / "demo_calendar.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()

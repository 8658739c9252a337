"""The data doctor: every finding about a dataset beyond format errors.

Each finding has a kind, the 1-based line numbers it concerns, a message and a one-line fix.
Kinds: duplicate, near_duplicate, conflicting_answers, short_answer, long_answer,
repetitive_answer, over_length, pii_<kind>, leakage_exact, leakage_near.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass

from tunelab.data import dedup, pii


@dataclass
class Issue:
    kind: str
    lines: list[int]
    message: str
    fix: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "lines": self.lines, "message": self.message, "fix": self.fix}


def _prompt_answer(messages: list[dict]) -> tuple[str, str]:
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    prompt = "\n".join(m["content"] for m in messages[:last])
    answer = messages[last]["content"] if last < len(messages) else ""
    return prompt, answer


def duplicates(rows, lines, near: float | None = 0.8) -> list[Issue]:
    out = []
    exact = dedup.exact_groups(rows)
    in_exact = {i for g in exact for i in g}
    for g in exact:
        out.append(Issue("duplicate", [lines[i] for i in g], f"{len(g)} identical rows",
                         "keep one copy (`tunelab data prepare` drops the rest)"))
    if near:
        texts = [dedup.text_of(r) for r in rows]
        for g in dedup.near_groups(texts, near):
            if set(g) <= in_exact and any(set(g) == set(e) for e in exact):
                continue  # already reported as exact copies
            out.append(Issue("near_duplicate", [lines[i] for i in g],
                             f"{len(g)} rows at least {near:.0%} alike (word 3-gram Jaccard)",
                             "keep one (`tunelab data prepare --near` does) or make them differ"))
    return out


def conflicts(rows, lines) -> list[Issue]:
    by_prompt: dict[str, list[int]] = defaultdict(list)
    answers = []
    for i, r in enumerate(rows):
        prompt, answer = _prompt_answer(r)
        answers.append(" ".join(answer.split()))
        by_prompt[" ".join(prompt.lower().split())].append(i)
    out = []
    for idx in by_prompt.values():
        if len({answers[i] for i in idx}) > 1:
            out.append(Issue("conflicting_answers", [lines[i] for i in idx],
                             f"the same prompt has {len({answers[i] for i in idx})} different answers",
                             "keep the best answer, or add the context that tells the cases apart"))
    return out


def _words(text: str) -> list[str]:
    return text.lower().split()


def repetitive(answer: str) -> bool:
    """True when an answer mostly repeats itself (few distinct word 3-grams, or a repeated line)."""
    words = _words(answer)
    # Trigrams starting with different words differ, so there are at least (distinct words - 2)
    # distinct trigrams: with that many words the 3-gram test below cannot fire; skip building it.
    if len(words) >= 12 and len(set(words)) - 2 < 0.5 * (len(words) - 2):
        grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
        if len(set(grams)) / len(grams) < 0.5:
            return True
    lines = [ln.strip().lower() for ln in answer.splitlines() if len(ln.split()) >= 4]
    return len(lines) >= 3 and len(set(lines)) <= len(lines) / 2


def outliers(rows, lines, z_limit: float = 3.5, ratio: float = 4.0) -> list[Issue]:
    """Answers far shorter or longer than the file's typical answer: a robust z-score of the log
    word count beyond ``z_limit`` and a length ``ratio`` times off the median, both at once."""
    lengths = [len(_words(_prompt_answer(r)[1])) for r in rows]
    out = []
    if len(lengths) >= 20:
        logs = [math.log1p(n) for n in lengths]
        med = statistics.median(logs)
        mad = statistics.median(abs(x - med) for x in logs) or 0.1  # all alike: only big jumps count
        typical = math.expm1(med)
        z = [0.6745 * (x - med) / mad for x in logs]
        short = [lines[i] for i, n in enumerate(lengths) if z[i] < -z_limit and n * ratio <= typical]
        long = [lines[i] for i, n in enumerate(lengths) if z[i] > z_limit and n >= ratio * typical]
        if short:
            out.append(Issue("short_answer", short, f"answers far shorter than the typical {typical:.0f} words",
                             "check they are complete; a one-word answer teaches terse replies"))
        if long:
            out.append(Issue("long_answer", long, f"answers far longer than the typical {typical:.0f} words",
                             "check for pasted junk or split the row; long rows may be truncated"))
    rep = [lines[i] for i, r in enumerate(rows) if repetitive(_prompt_answer(r)[1])]
    if rep:
        out.append(Issue("repetitive_answer", rep, "answers that repeat themselves",
                         "rewrite them: repetition in training data teaches the model to loop"))
    return out


PII_LABELS = {"email": "e-mail addresses", "phone": "phone numbers", "credit_card": "card numbers (Luhn-valid)",
              "ip_address": "IP addresses", "secret": "API keys or secrets"}


def personal_data(rows, lines) -> list[Issue]:
    found: dict[str, list[int]] = defaultdict(list)
    for r, line in zip(rows, lines):
        kinds = {m.kind for msg in r for m in pii.find(msg["content"])}
        for kind in kinds:
            found[kind].append(line)
    return [Issue(f"pii_{kind}", ls, f"{len(ls)} row(s) with {PII_LABELS[kind]}",
                  "remove or mask them (`tunelab data prepare --redact-pii`)")
            for kind, ls in sorted(found.items())]


def over_length(lengths: list[int], lines, max_length: int) -> list[Issue]:
    over = [line for n, line in zip(lengths, lines) if n > max_length]
    if not over:
        return []
    return [Issue("over_length", over, f"rows longer than {max_length} tokens (they will be truncated)",
                  "raise --max-length / data.max_length, or shorten these rows")]


def leakage(rows, lines, other_rows, threshold: float = 0.8) -> list[Issue]:
    texts = [dedup.text_of(r) for r in rows]
    others = [dedup.text_of(r) for r in other_rows]
    found: dict[str, list[int]] = defaultdict(list)
    for i, how in dedup.matches_against(texts, others, threshold):
        found[how].append(lines[i])
    return [Issue(f"leakage_{how}", ls, f"{len(ls)} rows also appear ({how}) in the --against file",
                  "remove them from one of the files, or the evaluation measures memory")
            for how, ls in sorted(found.items())]


# Below this many rows the second process costs more (a fork, pickling the findings back) than it saves.
FORK_ROWS = 5000


def _text_findings(rows, lines, near: float | None) -> tuple[list[Issue], list[Issue]]:
    """The findings that read only the rows' text: (duplicates, personal data)."""
    return duplicates(rows, lines, near), personal_data(rows, lines)


def _only_thread() -> bool:
    import threading

    return threading.active_count() == 1


class _TextFindingsBeside:
    """``_text_findings`` computed in a forked process while this one loads the tokenizer and
    counts tokens: the two halves of the work take about as long, and each is single-threaded
    Python. The child inherits the parsed rows through fork (nothing is pickled on the way in)
    and sends its findings back through a pipe; it uses no torch, so the torch the CLI has
    imported does not matter to it. Where fork is not safe (macOS, Windows), for
    small files, on one core, or if the child fails, the same findings are computed here. Nor
    in a process that runs other threads (the dashboard's server): a fork copies whatever lock
    another thread holds at that moment, and the child could wait on it forever."""

    def __init__(self, rows, lines, near: float | None) -> None:
        import multiprocessing

        self.args, self.process, self.pipe = (rows, lines, near), None, None
        if (len(rows) < FORK_ROWS or sys.platform != "linux" or (os.cpu_count() or 1) < 2
                or not _only_thread() or multiprocessing.current_process().daemon):
            return

        ctx = multiprocessing.get_context("fork")
        self.pipe, child_end = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=self._child, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()

    def _child(self, pipe) -> None:
        try:
            pipe.send(_text_findings(*self.args))
        except BaseException:  # noqa: BLE001 - nothing sent: the parent computes the findings itself
            pass  # and reports any error there, without a second traceback from here
        finally:
            pipe.close()

    def result(self) -> tuple[list[Issue], list[Issue]]:
        if self.process is not None:
            try:
                found = self.pipe.recv()
            except (EOFError, OSError):  # the child failed or died (killed, out of memory)
                found = None
            self.process.join()
            if found is not None:
                return found
        return _text_findings(*self.args)


def diagnose(path, model: str, max_length: int | None = None, *, against=None, near: float | None = 0.8,
             plots=None, columns: dict[str, str] | None = None, chat_template: str | None = None):
    """Validate a dataset and diagnose it: format errors, duplicates, conflicts, outliers,
    personal data, token lengths with ``model``'s chat template (or ``chat_template``), leakage
    into ``against``. ``columns`` renames source columns (of both files) onto tunelab's fields."""
    from pathlib import Path

    from tunelab.data.tokens import count_tokens
    from tunelab.data.validate import parse_file, token_stats
    from tunelab.models import catalog
    from tunelab.models.load import load_tokenizer, resolve

    parsed = parse_file(path, columns)
    report = parsed.report
    ref = resolve(model)
    rows, lines = parsed.messages, parsed.lines
    text_findings = _TextFindingsBeside(rows, lines, near)
    lengths: list[int] = count_tokens(load_tokenizer(ref, chat_template=chat_template), rows) if rows else []
    if lengths:
        report.tokens = token_stats(lengths)
        if max_length:
            report.max_length = max_length
            report.over_length = sum(n > max_length for n in lengths)
            report.findings += over_length(lengths, lines, max_length)
    later = []
    if not parsed.is_preference and not parsed.is_prompt_only:
        later += conflicts(rows, lines)
    if not parsed.is_prompt_only:  # prompts alone have no answers to compare
        later += outliers(rows, lines)
    duplicate_found, pii_found = text_findings.result()
    report.findings += duplicate_found + later + pii_found
    if against is not None:
        report.findings += leakage(rows, lines, parse_file(against, columns).messages)
    if plots is not None and lengths:
        from tunelab.data.plots import length_histogram

        report.plots.append(str(length_histogram(lengths, Path(plots) / "lengths.png", title=Path(path).name)))
    report.guidance = {**catalog.guidance(ref.params_b), "model": ref.name,
                       "verdict": catalog.verdict(len(rows), ref.params_b)}
    return report

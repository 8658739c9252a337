"""Base vs tuned on the same rows: the evaluation `tunelab eval` runs on a run directory.

Both sides answer the same prompts greedily and are scored on the same references (loss,
perplexity, ROUGE-L, BLEU, exact match, token F1); then, optionally, general-knowledge
forgetting and bias probes per side, overfitting from the run's training log and a pairwise
judge. The result is eval.json (one schema, see ``evaluate.report``), report.md and report.html.

The base side's parts are reused from an earlier evaluation of the same base on the same rows
with the same settings (``eval.reuse_base``; see ``evaluate.basecache``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tunelab import methods
from tunelab.data import dataset
from tunelab.data.formats import prompt_and_reference
from tunelab.data.tokens import encode_prompt
from tunelab.evaluate import basecache, overfit, report, sides
from tunelab.evaluate import bias as bias_probe
from tunelab.evaluate import forgetting as forget
from tunelab.evaluate import metrics
from tunelab.events import EventSink, no_events
from tunelab.inference.generate import generate, generate_and_score, is_prompt_learning
from tunelab.inference.load import resolve_dtype
from tunelab.rundir import open_run
from tunelab.train import tracking

QA_MAX_NEW_TOKENS = 24  # a general-knowledge answer is a few words


def evaluate_run(target: str | Path, data: str | Path, *, limit: int | None = None, forgetting: bool = True,
                 bias: bool = True, judge: str | None = None, judge_key: str | None = None,
                 fresh_base: bool = False, device_map: str | None = None,
                 events: EventSink = no_events) -> dict:
    """Base vs tuned on the rows of ``data`` (the first ``limit``, or ``eval.limit``), plus
    general-knowledge forgetting, bias probes, overfitting and an optional judge (a model, run
    or ``URL#MODEL`` of an OpenAI-compatible API). Writes eval.json, report.md and report.html
    into the run and returns what eval.json holds.

    ``fresh_base`` computes the base side again instead of reusing an earlier evaluation's."""
    run = open_run(target)
    cfg = run.config()
    rows = dataset.load_conversations(data)
    limit = limit or cfg.eval.limit
    rows = rows[:limit] if limit else rows
    method = methods.get(cfg.method.name)  # an unknown method fails before any model loads
    dtype = resolve_dtype(cfg.eval.dtype, method.name)
    base, tuned, loaded = sides.load(run, dtype, device_map)
    work = Workload.build(loaded.tokenizer, rows, cfg, forgetting=forgetting)
    reuse = None
    if cfg.eval.reuse_base:
        identity = basecache.base_identity(loaded.ref.source, base.model)
        if identity is not None:
            common = {"dtype": dtype, "trust_remote_code": cfg.model.trust_remote_code,
                      **basecache.runtime(base.model)}
            reuse = basecache.BaseReuse(identity, common, fresh=fresh_base, events=events)

    start = time.perf_counter()
    # The order matters: the tuned side may fold the adapter into the weights the base side
    # reads with the adapter switched off, so the base side runs to completion first.
    base_out = measure(base, work, reuse, forgetting=forgetting, bias=bias, events=events)
    tuned_out = measure(tuned, work, None, forgetting=forgetting, bias=bias, events=events)

    result = {
        "n": len(rows),
        "data": str(data),
        "base": base_out["scores"],
        "tuned": tuned_out["scores"],
        "base_reused": reuse.reused if reuse else [],
        "overfitting": overfit.analyse(run.read_metrics()),
        "samples": samples(work, base_out["answers"], tuned_out["answers"], cfg.eval.samples),
    }
    if forgetting:
        result["forgetting"] = {"base": base_out["forgetting"], "tuned": tuned_out["forgetting"],
                                "delta": forget.delta(base_out["forgetting"], tuned_out["forgetting"])}
    if bias:
        result["bias"] = bias_probe.compare(base_out["bias"], tuned_out["bias"])
    if judge:
        result["judge"] = judged(judge, judge_key, work, base_out["answers"], tuned_out["answers"],
                                 seed=cfg.train.seed, events=events)
    result["seconds"] = round(time.perf_counter() - start, 1)
    report.write(run, result)
    tracking.log_eval(run.path, result)  # into the trackers the run trained with, if any
    return result


@dataclass
class Workload:
    """What both sides are measured on, encoded once with the run's tokenizer."""

    tokenizer: object
    prompts: list[list[dict]]  # each row's messages before the answer
    references: list[str]  # each row's answer
    prompt_ids: list[list[int]]  # the prompts as the model sees them, ending with the assistant's turn
    encoded: list  # each row encoded as for training (teacher-forced loss when `continuations` is None)
    continuations: list[tuple[list[int], list[int]]] | None  # each answer's ids and labels after its prompt
    max_new_tokens: int
    batch_size: int
    questions: list[dict]  # general-knowledge probe questions (empty without the forgetting check)
    question_ids: list[list[int]]

    @classmethod
    def build(cls, tok, rows: list[list[dict]], cfg, *, forgetting: bool) -> "Workload":
        prompts, references = [], []
        for messages in rows:
            prompt, reference = prompt_and_reference(messages)
            prompts.append(prompt)
            references.append(reference)
        prompt_ids = [encode_prompt(tok, p) for p in prompts]
        questions = probe_questions(cfg.eval.probe_questions) if forgetting else []
        return cls(
            tokenizer=tok, prompts=prompts, references=references, prompt_ids=prompt_ids,
            encoded=dataset.encode_split(tok, list(rows), cfg.data.max_length, False).rows,
            continuations=continuations(tok, rows, prompt_ids, cfg.data.max_length),
            max_new_tokens=answer_budget(cfg.eval.max_new_tokens, tok, references),
            batch_size=cfg.eval.batch_size, questions=questions,
            question_ids=[encode_prompt(tok, [{"role": "user", "content": q["question"]}]) for q in questions])


def continuations(tok, rows, prompt_ids, max_length) -> list[tuple[list[int], list[int]]] | None:
    """Each row's reference answer as (token ids, labels) continuing its generation prompt, or
    None when some row's training encoding does not start with that prompt (a chat template
    that renders the prompt differently once the answer follows) or scores earlier turns."""
    out = []
    for messages, prompt in zip(rows, prompt_ids):
        enc = dataset.encode_chat(tok, list(messages), max_length, False)
        n = len(prompt)
        if enc.input_ids[:n] != prompt or any(label != -100 for label in enc.labels[:n]):
            return None
        out.append((enc.input_ids[n:], enc.labels[n:]))
    return out


def answer_budget(setting: int | str, tok, references: list[str]) -> int:
    """``eval.max_new_tokens``; "auto" leaves room for every reference answer, not for a base
    model's rambling."""
    if setting != "auto":
        return setting
    longest = max((len(ids) for ids in tok(references, add_special_tokens=False)["input_ids"]), default=64)
    return min(512, int(1.5 * longest) + 16)


def probe_questions(count: int) -> list[dict]:
    """``count`` general-knowledge questions spread evenly over the shipped set (0: all)."""
    questions = forget.probe_questions()
    if count and len(questions) > count:
        step = len(questions) / count
        questions = [questions[int(i * step)] for i in range(count)]
    return questions


def measure(side: sides.Side, work: Workload, reuse: basecache.BaseReuse | None, *, forgetting: bool,
            bias: bool, events: EventSink) -> dict:
    """One side's task scores and answers, and (when asked) its forgetting and bias probes;
    ``reuse`` (base side only) takes parts from an earlier evaluation."""
    model = side.model_ready()
    prompt_learning = is_prompt_learning(model)
    with side.context():
        scored = kept(reuse, "task", {
            "prompts": work.prompt_ids, "max_new_tokens": work.max_new_tokens, "batch_size": work.batch_size,
            "prompt_learning": prompt_learning,
            "references": work.continuations if work.continuations and not prompt_learning
            else [[e.input_ids, e.labels] for e in work.encoded]},
            lambda: task(model, side.name, work, prompt_learning, events), ("answers", "loss"))
        out: dict = {"scores": task_scores(scored["answers"], scored["loss"], work.references),
                     "answers": scored["answers"]}
        if forgetting:
            out["forgetting"] = kept(reuse, "forgetting", {
                "questions": work.questions, "prompts": work.question_ids, "batch_size": work.batch_size,
                "prompt_learning": prompt_learning, "prose": forget.probe_prose()},
                lambda: forgetting_probe(model, side.name, work, events), ("qa_accuracy", "prose_perplexity"))
        if bias:
            out["bias"] = kept(reuse, "bias", {"probes": bias_probe.probes(), "prompt_learning": prompt_learning},
                               lambda: bias_scores(model, side.name, work, events),
                               tuple(bias_probe.probes()["axes"]))
    return out


def kept(reuse: basecache.BaseReuse | None, part: str, settings: dict, compute, required: tuple[str, ...]) -> dict:
    return compute() if reuse is None else reuse.part(part, settings, compute, required)


def task(model, name: str, work: Workload, prompt_learning: bool, events: EventSink) -> dict:
    """Greedy answers to the rows' prompts and the mean loss of their references."""
    if work.continuations and not prompt_learning:  # one prefill serves loss and answers
        label = f"task ({name})"
        events({"event": "eval_side", "side": label, "total": len(work.prompt_ids)})
        answers, loss = generate_and_score(
            model, work.tokenizer, work.prompt_ids, work.continuations, max_new_tokens=work.max_new_tokens,
            batch_size=work.batch_size, progress=lambda k: events({"event": "generated", "side": label, "n": k}))
    else:
        loss = metrics.reference_loss(model, work.encoded, batch_size=work.batch_size)
        answers = answer(model, work, work.prompt_ids, work.max_new_tokens, f"task ({name})", events)
    return {"answers": answers, "loss": loss}


def task_scores(answers: list[str], loss: float, references: list[str]) -> dict:
    return {
        "loss": round(loss, 4),
        "perplexity": round(metrics.perplexity(loss), 4),
        "rougeL": round(metrics.rouge_l(answers, references), 4),
        "bleu": round(metrics.bleu(answers, references), 4),
        "exact_match": round(metrics.exact_match(answers, references), 4),
        "token_f1": round(metrics.token_f1(answers, references), 4),
    }


def forgetting_probe(model, name: str, work: Workload, events: EventSink) -> dict:
    """General-knowledge QA accuracy and prose perplexity of one side."""
    def ask(_questions: list[str]) -> list[str]:  # the same questions, already encoded
        return answer(model, work, work.question_ids, QA_MAX_NEW_TOKENS, f"general QA ({name})", events)

    return forget.side(model, work.tokenizer, ask, rows=work.questions)


def bias_scores(model, name: str, work: Workload, events: EventSink) -> dict:
    events({"event": "note", "text": f"bias probes ({name})"})
    return bias_probe.scores(model, work.tokenizer)


def answer(model, work: Workload, prompt_ids: list[list[int]], max_new_tokens: int, label: str,
           events: EventSink) -> list[str]:
    """Greedy answers, reported to ``events`` as they finish."""
    events({"event": "eval_side", "side": label, "total": len(prompt_ids)})
    return generate(model, work.tokenizer, prompt_ids, max_new_tokens=max_new_tokens, batch_size=work.batch_size,
                    progress=lambda k: events({"event": "generated", "side": label, "n": k}))


def samples(work: Workload, base: list[str], tuned: list[str], count: int) -> list[dict]:
    """The first ``count`` rows side by side, for the report."""
    return [{"prompt": work.prompts[i][-1]["content"], "reference": work.references[i],
             "base": base[i], "tuned": tuned[i]} for i in range(min(count, len(work.prompts)))]


def judged(spec: str, api_key: str | None, work: Workload, base: list[str], tuned: list[str], *, seed: int,
           events: EventSink) -> dict:
    """The judge's verdicts on every row's base and tuned answers."""
    from tunelab.evaluate import judge

    events({"event": "note", "text": f"judging with {spec}"})
    verdicts = judge.win_rate(judge.make_judge(spec, api_key), [p[-1]["content"] for p in work.prompts],
                              work.references, base, tuned, seed=seed)
    return {"judge": spec, **verdicts}

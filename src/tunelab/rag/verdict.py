"""The comparison in words: which system wins, by how much, and what it costs."""

from __future__ import annotations

SYSTEMS = ("base", "base+rag", "tuned", "tuned+rag")
TIE = 0.02  # ROUGE-L differences below this are noise on a few dozen rows
COLUMNS = [("rougeL", "ROUGE-L", "{:.3f}"), ("exact_match", "exact match", "{:.3f}"),
           ("token_f1", "token F1", "{:.3f}"), ("prompt_tokens", "prompt tokens", "{:.0f}"),
           ("seconds_per_answer", "s / answer", "{:.3f}"), ("api_usd_per_1k_answers", "$ / 1k answers (API)", "{:.4f}")]


def verdict(result: dict) -> list[str]:
    """Sentences a reader can act on, from the numbers in ``result`` (compare_rag's)."""
    s = result["systems"]
    r = {name: s[name]["rougeL"] for name in SYSTEMS}
    best = max(SYSTEMS, key=lambda n: (r[n], s[n]["token_f1"], -s[n]["prompt_tokens"]))
    lines = [f"{best} answers best: ROUGE-L {r[best]:.3f} against {r['base']:.3f} for the base model "
             f"({r[best] - r['base']:+.3f}); exact match {s[best]['exact_match']:.3f} against "
             f"{s['base']['exact_match']:.3f}."]
    rag_lift, tune_lift = r["base+rag"] - r["base"], r["tuned"] - r["base"]
    lines.append(f"Retrieval alone changes ROUGE-L by {rag_lift:+.3f} (and by {r['tuned+rag'] - r['tuned']:+.3f} "
                 f"on the tuned model); fine-tuning alone by {tune_lift:+.3f}.")
    lines.append(lesson(rag_lift, tune_lift, r))
    lines.append(costs(result))
    return lines


def lesson(rag_lift: float, tune_lift: float, r: dict) -> str:
    both = r["tuned+rag"] - max(r["base+rag"], r["tuned"])
    if abs(rag_lift) < TIE and abs(tune_lift) < TIE:
        return "Neither retrieval nor fine-tuning moves the answers on these rows."
    if both >= TIE and rag_lift >= TIE and tune_lift >= TIE:
        return ("Both help and they add up: fine-tuning teaches the behaviour, retrieval brings the knowledge; "
                "use them together.")
    if rag_lift > tune_lift + TIE:
        return ("Retrieval helps more here: the answers need knowledge that sits in the documents, which "
                "fine-tuning does not add.")
    if tune_lift > rag_lift + TIE:
        return ("Fine-tuning helps more here: the answers need a behaviour (a format, a style, a skill) that "
                "retrieved documents do not teach.")
    return "Retrieval and fine-tuning help about equally here; compare their costs."


def costs(result: dict) -> str:
    s, training = result["systems"], result["training"]
    extra = s["base+rag"]["api_usd_per_1k_answers"] - s["base"]["api_usd_per_1k_answers"]
    text = (f"At {result['api_model']} prices, retrieval's {s['base+rag']['prompt_tokens'] - s['base']['prompt_tokens']:.0f} "
            f"extra prompt tokens cost ${extra:.4f} more per 1,000 answers; ")
    if not training["tokens"]:
        return text + "the run records no training tokens, so fine-tuning's one-time cost is unknown."
    text += (f"fine-tuning cost ${training['api_usd']:.4f} once ({training['tokens']:,} training tokens; "
             f"{training['seconds']:.0f} s on this machine)")
    if extra > 0 and training["api_usd"] > 0:
        text += f", as much as retrieval's extra prompts over {training['api_usd'] / extra * 1000:,.0f} answers"
    return text + "."


def table_rows(result: dict) -> list[list[str]]:
    """One row per system: its name and the ``COLUMNS`` values, formatted."""
    return [[name, *(fmt.format(result["systems"][name][key]) for key, _, fmt in COLUMNS)] for name in SYSTEMS]


def to_markdown(result: dict) -> str:
    header = ["system", *(label for _, label, _ in COLUMNS)]
    lines = [f"# Fine-tuning or RAG? {result['n']} rows of {result['data']}", "",
             f"Run `{result['run']}`, index `{result['index']}` ({result['retriever']}, top {result['k']}).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    if result.get("retrieval"):
        (key, value), = [(k, v) for k, v in result["retrieval"].items() if k.startswith("recall")]
        lines += ["", f"Retrieval {key}: {value:.3f} over {result['retrieval']['rows']} rows that name their source."]
    lines += ["", "## Verdict", "", *(f"- {line}" for line in result["verdict"]), "", "## Samples", ""]
    for i, sample in enumerate(result["samples"], 1):
        lines += [f"### {i}. {one_line(sample['question'])}", "", f"- reference: {one_line(sample['reference'])}",
                  f"- retrieved: {', '.join(sample['sources']) or '(nothing)'}"]
        lines += [f"- {name}: {one_line(sample[name])}" for name in SYSTEMS] + [""]
    return "\n".join(lines)


def one_line(text: str, width: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"

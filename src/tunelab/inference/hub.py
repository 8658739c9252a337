"""Pushing an export to the Hugging Face Hub with a model card written from the run.

The upload is huggingface_hub's (``HfApi.create_repo`` then ``upload_folder``: one commit with
every file). The token comes from the environment (HF_TOKEN) or a stored ``hf auth login``,
never from the command line; HF_ENDPOINT points at another Hub (a mirror, or a test server).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from tunelab.errors import ConfigError, RunError
from tunelab.io import atomic_write_text
from tunelab.rundir import RunDir

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
LIBRARY = {"adapter": "peft", "model": "transformers", "merged model": "transformers", "gguf": "gguf"}


def check_repo_id(repo_id: str) -> None:
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise ConfigError(f"--push-to-hub {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.')")


def token() -> str:
    """The Hub token: HF_TOKEN, else the one ``hf auth login`` stored."""
    from huggingface_hub import get_token

    found = os.environ.get("HF_TOKEN") or get_token()
    if not found:
        raise ConfigError("--push-to-hub: no Hugging Face token; set HF_TOKEN (a write token) or run `hf auth login`")
    return found


def push(run: RunDir, folder: Path, repo_id: str, *, token: str, private: bool = False, kind: str = "adapter") -> dict:
    """Write README.md (the model card) into ``folder`` and upload the folder as one commit to
    ``repo_id`` (created when missing); returns the repo URL, commit id and file count."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    atomic_write_text(folder / "README.md", model_card(run, repo_id, kind))
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message=f"Upload {kind} of tunelab run {run.name}")
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise RunError(f"--push-to-hub {repo_id}: the Hub refused the upload (HTTP {status}: "
                       f"{str(exc).splitlines()[0]})") from None
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    return {"url": str(url), "commit": commit.oid, "files": files}


# ------------------------------------------------------------------------------- the model card
def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def card_metadata(run: RunDir, kind: str) -> dict:
    """The card's YAML header: the base model (when it is a Hub id), library, tags."""
    cfg = run.config()
    base = _hub_base(cfg.model.name)
    meta: dict = {"library_name": LIBRARY.get(kind, "transformers"), "pipeline_tag": "text-generation",
                  "tags": ["tunelab", cfg.method.name, cfg.train.stage] + (["gguf"] if kind == "gguf" else [])}
    if base:
        meta["base_model"] = base
    return meta


def _hub_base(name: str) -> str | None:
    from tunelab.models.catalog import CATALOG

    source = CATALOG[name].source if name in CATALOG else name
    return source if _REPO_ID.fullmatch(source) and not Path(source).exists() else None


def model_card(run: RunDir, repo_id: str, kind: str) -> str:
    """README.md for the Hub: YAML metadata, then what was trained on what, the training and
    evaluation numbers, forgetting and bias, and how to load it."""
    cfg, summary = run.config(), run.summary()
    evaluation = _read_json(run.path / "eval.json")
    sections = [f"# {repo_id.split('/')[-1]}",
                f"Fine-tuned from **{cfg.model.name}** with [tunelab](https://pypi.org/project/tunelab/): "
                f"method `{cfg.method.name}`, stage `{cfg.train.stage}`. This repository holds the {kind}.",
                "## Training", _table(["", "value"], _training_rows(cfg, summary)),
                "## Data", _data_section(_read_json(run.data / "data_card.json")),
                "## Evaluation", _eval_section(evaluation),
                "## Forgetting and bias", _forgetting_bias_section(evaluation),
                "## Use", _usage(repo_id, kind, cfg.model.name)]
    header = yaml.safe_dump(card_metadata(run, kind), sort_keys=False).strip()
    return f"---\n{header}\n---\n\n" + "\n\n".join(sections) + "\n"


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _training_rows(cfg, summary: dict) -> list[list]:
    rows = [["base model", cfg.model.name], ["method", cfg.method.name], ["stage", cfg.train.stage],
            ["learning rate", cfg.train.lr], ["epochs", cfg.train.epochs], ["max steps", cfg.train.max_steps]]
    for key, label in (("steps", "steps run"), ("train_rows", "training rows"), ("train_loss", "final train loss"),
                       ("eval_loss", "final validation loss"), ("train_seconds", "train seconds")):
        if key in summary:
            rows.append([label, summary[key]])
    return rows


def _data_section(card: dict) -> str:
    if not card:
        return "No data card was saved with this run."
    sources = ", ".join(f"`{k}`: {Path(v['path']).name} (sha256 {v['sha256'][:12]})"
                        for k, v in card.get("sources", {}).items())
    rows = [[name, s.get("rows"), s.get("tokens"), s.get("target_tokens"), s.get("truncated")]
            for name, s in card.get("splits", {}).items()]
    return (f"Sources: {sources or 'not recorded'}.\n\n"
            + _table(["split", "rows", "tokens", "answer tokens", "truncated"], rows))


def _eval_section(evaluation: dict) -> str:
    if not evaluation:
        return "Not evaluated (`tunelab eval RUN --data TEST.jsonl` writes these numbers)."
    base, tuned = evaluation.get("base", {}), evaluation.get("tuned", {})
    keys = [k for k in ("loss", "perplexity", "rougeL", "bleu", "exact_match", "token_f1") if k in tuned]
    rows = [[k, _num(base.get(k)), _num(tuned.get(k))] for k in keys]
    return f"Base vs tuned on {evaluation.get('n', '?')} held-out rows:\n\n" + _table(["metric", "base", "tuned"], rows)


def _forgetting_bias_section(evaluation: dict) -> str:
    """The general-knowledge probe (QA accuracy, prose perplexity) and the bias probe's gap per
    axis, base vs tuned, as eval.json holds them."""
    parts = []
    forgetting = evaluation.get("forgetting") or {}
    if forgetting.get("base") and forgetting.get("tuned"):
        base, tuned = forgetting["base"], forgetting["tuned"]
        rows = [[k, _num(base.get(k)), _num(tuned.get(k))] for k in ("qa_accuracy", "prose_perplexity")]
        parts.append(f"Forgetting, on {tuned.get('questions', '?')} general-knowledge questions:\n\n"
                     + _table(["probe", "base", "tuned"], rows))
    axes = (evaluation.get("bias") or {}).get("axes") or {}
    if axes:
        rows = [[axis, _num(a.get("base_gap")), _num(a.get("tuned_gap")), "yes" if a.get("amplified") else "no"]
                for axis, a in axes.items()]
        parts.append("Bias (gap between groups per axis; amplified when tuning widened it past the threshold):\n\n"
                     + _table(["axis", "base gap", "tuned gap", "amplified"], rows))
    return "\n\n".join(parts) or "Not measured."


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def _usage(repo_id: str, kind: str, base: str) -> str:
    if kind == "gguf":
        return ("Download the `.gguf` file and the `Modelfile`, then `ollama create NAME -f Modelfile`; "
                "or run the file with llama.cpp (`llama-cli -m FILE.gguf`).")
    if kind == "adapter":
        return ("```python\nfrom peft import AutoPeftModelForCausalLM\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained({repo_id!r})\n```\n\n(the adapter loads on {base}).")
    return f"```python\nfrom transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained({repo_id!r})\n```"

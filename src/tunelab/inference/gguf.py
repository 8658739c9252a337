"""A merged Llama-architecture model as one GGUF file (llama.cpp, Ollama, LM Studio), and the
Ollama ``Modelfile`` that runs it.

The ``gguf`` package gives the file format (its writer, key names and quantisers); the
conversion itself is ours because no library turns a transformers model into GGUF (llama.cpp's
converter is a script in its repository, not a package). It follows llama.cpp's conventions:

- tensor names: ``token_embd``, ``blk.N.attn_q``/``attn_k``/``attn_v``/``attn_output``,
  ``attn_norm``, ``ffn_gate``/``ffn_up``/``ffn_down``, ``ffn_norm``, ``output_norm``, ``output``
  (absent when the head is tied to the embeddings);
- Q and K rows reordered per head from transformers' rotary layout (the two halves of a head)
  to GGML's (interleaved pairs); transformers' GGUF loader undoes exactly this on reading;
- norms stay float32; weight matrices are float16, or Q8_0 where a row is a whole number of
  32-value blocks;
- the tokenizer as a byte-level BPE vocabulary (``gpt2``): tokens, types, merges, special ids,
  and the chat template.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tunelab.errors import ConfigError

QUANTS = ("f16", "q8_0")
ARCH = "llama"
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")
_LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
_TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}


def check_model(config) -> None:
    """Only what this writer knows how to lay out: the Llama architecture with plain rotary
    positions, no biases (SmolLM2, Llama 2/3-style models without rope scaling)."""
    if getattr(config, "model_type", None) != "llama":
        raise ConfigError(f"--format gguf: exports Llama-architecture models only; this one is "
                          f"'{getattr(config, 'model_type', '?')}' (export --merge and convert with llama.cpp)")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ConfigError(f"--format gguf: rope scaling '{rope.get('rope_type')}' is not written by this exporter; "
                          "export --merge and convert with llama.cpp")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError("--format gguf: models with attention or MLP biases are not written by this exporter")


def gguf_name(hf_name: str) -> str:
    """The GGUF tensor name of one transformers Llama weight."""
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name]
    match = _LAYER.fullmatch(hf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}.weight"
    raise ConfigError(f"--format gguf: weight '{hf_name}' has no place in a Llama GGUF file")


def to_ggml_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder a Q or K projection's rows, head by head, from the rotate-half layout
    (first half, second half) to interleaved pairs, which is how GGML applies rotary positions."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def tensor_data(name: str, array: np.ndarray, quant: str):
    """(data, raw type or None) for one tensor: float32 vectors; float16 or Q8_0 matrices."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    if array.ndim == 1:
        return array.astype(np.float32), None
    if quant == "q8_0" and array.shape[-1] % 32 == 0:
        return quantize(array.astype(np.float32), GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return array.astype(np.float16), None


def write_gguf(model, tokenizer, path: Path, *, quant: str = "f16", name: str = "tunelab model") -> dict:
    """Write ``model`` (a merged transformers Llama, any dtype) and ``tokenizer`` to ``path``;
    returns what went in (tensor count, quantisation, size)."""
    import gguf

    config = model.config
    check_model(config)
    if quant not in QUANTS:
        raise ConfigError(f"--quant {quant!r}: expected one of {', '.join(QUANTS)}")
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_hparams(writer, config)
    _add_tokenizer(writer, tokenizer, config.vocab_size)
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a GGUF without output.weight reads as tied
        array = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            array = to_ggml_rotary(array, config.num_attention_heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            array = to_ggml_rotary(array, config.num_key_value_heads)
        data, raw = tensor_data(hf_name, array, quant)
        writer.add_tensor(gguf_name(hf_name), data, raw_dtype=raw)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"tensors": count, "quant": quant, "bytes": path.stat().st_size}


def _add_hparams(writer, config) -> None:
    rope = getattr(config, "rope_parameters", None) or {}
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """The vocabulary in id order (padded to the model's rows with unused tokens), each token's
    type, the merges, special ids, whether a BOS is prepended, and the chat template."""
    from gguf import TokenType

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE":
        raise ConfigError(f"--format gguf: only byte-level BPE tokenizers are written; this one is {state['model']['type']}")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {t["id"]: t for t in state.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i, f"[PAD{i}]")
        tokens.append(token)
        if i not in by_id:
            types.append(TokenType.UNUSED)
        elif i in added:
            types.append(TokenType.CONTROL if added[i]["special"] else TokenType.USER_DEFINED)
        else:
            types.append(TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(state.get("pre_tokenizer")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]])
    for token, add in ((tokenizer.bos_token, writer.add_bos_token_id), (tokenizer.eos_token, writer.add_eos_token_id),
                       (tokenizer.pad_token, writer.add_pad_token_id), (tokenizer.unk_token, writer.add_unk_token_id)):
        if token is not None:
            add(tokenizer.convert_tokens_to_ids(token))
    probe = tokenizer("a").input_ids
    writer.add_add_bos_token(bool(probe) and tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def pre_tokenizer_name(pre: dict | None) -> str:
    """llama.cpp's name for how text is split before BPE: plain GPT-2 byte-level splitting
    ("gpt2"), or that with every digit on its own ("smollm"); anything else "default"."""
    if pre and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt2"
    parts = (pre or {}).get("pretokenizers") or []
    kinds = [(p.get("type"), p.get("individual_digits")) for p in parts]
    if kinds == [("Digits", True), ("ByteLevel", None)] and parts[1].get("use_regex", True):
        return "smollm"
    return "default"


# Ollama templates are Go templates, not Jinja: a ChatML chat template (SmolLM2, Qwen, the
# tunelab test models) is written out as one; for any other, Ollama picks a template matching the
# GGUF's tokenizer.chat_template itself.
_CHATML_OLLAMA = ('''TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""''')


def modelfile(gguf_file: str, tokenizer, *, temperature: float = 0.7) -> str:
    """An Ollama Modelfile for the exported file: FROM, the chat template where it is ChatML,
    the stop tokens, a sampling default."""
    template = getattr(tokenizer, "chat_template", None) or ""
    stops = sorted({t for t in (tokenizer.eos_token, "<|im_end|>" if "<|im_start|>" in template else None) if t})
    lines = [f"FROM ./{gguf_file}"] + ([_CHATML_OLLAMA] if "<|im_start|>" in template else [])
    lines += [f"PARAMETER temperature {temperature}"] + [f"PARAMETER stop {json.dumps(t)}" for t in stops]
    return "\n".join(lines) + "\n"

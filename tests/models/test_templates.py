"""Chat templates: a base model without one trains with a named template, its run reads with
that template in eval and chat, an override replaces a model's own, a different template at
load time warns, and a broken template file is one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.conftest import MEMO_ROWS, build_tiny_model, write_jsonl
from tests.helpers import run_cli
from tunelab.errors import ConfigError, ModelError
from tunelab.models import templates
from tunelab.models.load import load_tokenizer, resolve

CONVERSATION = [{"role": "user", "content": "Code word 1?"}, {"role": "assistant", "content": "bravo"}]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    """The tiny model as a base model: the same weights, a tokenizer without a chat template."""
    from transformers import AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-base"))
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = None
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert templates.current(AutoTokenizer.from_pretrained(folder)) is None
    return str(folder)


@pytest.fixture(scope="module")
def chatml_run(base_model, tmp_path_factory) -> Path:
    """A LoRA run of the base model trained (a few steps) with the shipped chatml template."""
    from tunelab import api
    from tunelab.config import build_config

    folder = tmp_path_factory.mktemp("runs")
    data = write_jsonl(folder / "memo.jsonl", MEMO_ROWS)
    cfg = build_config(overrides={"model.name": base_model, "data.train": str(data), "train.max_steps": 2,
                                  "train.batch_size": 4, "data.chat_template": "chatml"})
    return api.train(cfg, out=folder / "chatml").path


def test_base_model_without_template_is_refused_with_the_remedy(base_model, memo_file, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", base_model, "--data", memo_file, "--max-steps", "1",
                           "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has no chat template" in err and "--chat-template alpaca | chatml | llama3" in err
    assert not (tmp_path / "run").exists()


def test_base_model_trains_with_chatml_and_the_run_keeps_it(chatml_run):
    from tunelab.inference.load import saved_template

    shipped = templates.load("chatml").text
    assert saved_template(chatml_run / "adapter") == shipped
    assert json.loads((chatml_run / "run.json").read_text())["chat_template"] == {
        "name": "chatml", "sha256": templates.load("chatml").sha256}


def test_run_loads_for_eval_and_chat_with_its_template(chatml_run, caplog):
    from tunelab import api
    from tunelab.inference.load import load_run

    with caplog.at_level(logging.WARNING):
        loaded = load_run(chatml_run, "eval")
        chat = api.load(chatml_run)
    assert not caplog.records  # the trained template: nothing to warn about
    for tok in (loaded.tokenizer, chat.tokenizer):
        assert templates.current(tok) == templates.load("chatml").text
        assert tok.apply_chat_template(CONVERSATION, tokenize=False) == (
            "<|im_start|>user\nCode word 1?<|im_end|>\n<|im_start|>assistant\nbravo<|im_end|>\n")
    assert isinstance(api.reply(chat, CONVERSATION[:1], max_new_tokens=4), str)


def test_loading_with_another_template_warns_once(chatml_run, caplog):
    from tunelab.inference.load import load_run

    with caplog.at_level(logging.WARNING):
        loaded = load_run(chatml_run, "serve", chat_template="zephyr")
    assert templates.current(loaded.tokenizer) == templates.load("zephyr").text
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"{chatml_run} was trained with chat template chatml but is loaded for serve with another one" in warnings[0]


def test_override_replaces_a_models_own_template(tiny_model):
    tok = load_tokenizer(resolve(tiny_model), chat_template="alpaca")
    assert tok.apply_chat_template(CONVERSATION, tokenize=False) == (
        f"### Instruction:\nCode word 1?\n\n### Response:\nbravo{tok.eos_token}\n\n")


def test_every_shipped_template_renders_conversations_as_prefixes(base_model):
    """Loss masking finds each answer as the text added after the generation prompt."""
    from tunelab.data.tokens import assistant_spans, encode_chat

    conversation = [{"role": "system", "content": "Be brief."}, *CONVERSATION,
                    {"role": "user", "content": "Code word 2?"}, {"role": "assistant", "content": "charlie"}]
    for name in templates.shipped():
        tok = load_tokenizer(resolve(base_model), chat_template=name)
        full, spans = assistant_spans(tok, conversation)
        assert [full[a:b].rstrip("\n") for a, b in spans] == [
            f"bravo{tok.eos_token}", f"charlie{tok.eos_token}"], name
        assert encode_chat(tok, conversation, 512).target_tokens > 0


def test_a_template_file_is_used_and_a_broken_one_is_one_line(base_model, tmp_path):
    good = tmp_path / "plain.jinja"
    good.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}\n{% endfor %}"
                    "{% if add_generation_prompt %}assistant: {% endif %}")
    tok = load_tokenizer(resolve(base_model), chat_template=str(good))
    assert tok.apply_chat_template(CONVERSATION, tokenize=False).startswith("user: Code word 1?")

    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}")
    with pytest.raises(ConfigError, match=r"broken\.jinja:2: not a valid Jinja chat template"):
        load_tokenizer(resolve(base_model), chat_template=str(broken))
    silent = tmp_path / "silent.jinja"
    silent.write_text("{% for m in messages %}{{ m['role'] }}{% endfor %}")
    with pytest.raises(ConfigError, match="drops the system message's text"):
        load_tokenizer(resolve(base_model), chat_template=str(silent))
    with pytest.raises(ConfigError, match="no such chat template file"):
        load_tokenizer(resolve(base_model), chat_template=str(tmp_path / "missing.jinja"))
    with pytest.raises(ConfigError, match=r"unknown chat template 'chatlm' \(valid: alpaca, chatml"):
        load_tokenizer(resolve(base_model), chat_template="chatlm")


def test_broken_template_stops_training_before_anything_is_written(base_model, memo_file, tmp_path, capsys):
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% if %}")
    code, _, err = run_cli(capsys, "train", "--model", base_model, "--data", memo_file, "--max-steps", "1",
                           "--chat-template", broken, "--out", tmp_path / "run")
    assert code == 2 and err.strip().count("\n") == 0 and "broken.jinja:1: not a valid Jinja chat template" in err
    assert not (tmp_path / "run").exists()


def test_server_warns_for_an_adapter_trained_with_another_template(chatml_run, base_model, caplog):
    from tunelab.serve.engine import Adapter, warn_on_other_templates

    adapters = {"ft": Adapter("ft", chatml_run / "adapter")}
    with caplog.at_level(logging.WARNING):
        warn_on_other_templates(adapters, load_tokenizer(resolve(base_model), chat_template="chatml"))
        assert not caplog.records
        warn_on_other_templates(adapters, load_tokenizer(resolve(base_model), chat_template="llama3"))
    assert [r.getMessage().split(" with another one")[0] for r in caplog.records] == [
        f"warning: {chatml_run} was trained with chat template chatml but is loaded for serve"]


def test_a_base_model_without_a_template_is_served_with_its_adapters_template(chatml_run, base_model):
    from tunelab.models.templates import current
    from tunelab.serve.engine import Adapter, serving_tokenizer

    tok = serving_tokenizer(resolve(base_model), {"ft": Adapter("ft", chatml_run / "adapter")})
    assert current(tok) == load_tokenizer(resolve(base_model), chat_template="chatml").chat_template
    with pytest.raises(ModelError):
        serving_tokenizer(resolve(base_model), {})


def test_estimate_counts_a_base_models_tokens_with_the_template_given(base_model, memo_file, capsys):
    code, out, _ = run_cli(capsys, "estimate", "--model", base_model, "--data", memo_file,
                           "--chat-template", "chatml", "--json")
    assert code == 0 and json.loads(out)["tokens_per_epoch"] > 0
    code, _, err = run_cli(capsys, "estimate", "--model", base_model, "--data", memo_file)
    assert code == 2 and "no chat template" in err

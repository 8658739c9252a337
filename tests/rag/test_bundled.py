"""On the real bundled model: retrieval lifts answers to questions about the shipped manual of
an invented product, facts no model can know without the documents."""

from __future__ import annotations

import json

import pytest

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.models.catalog import DEFAULT_MODEL
from tunelab.models.load import load_model, resolve
from tunelab.rag.compare import compare_rag
from tunelab.rag.demo import DEMO_INDEX, DEMO_K, MANUAL, QUESTIONS
from tunelab.rag.index import build_index


@pytest.mark.slow
def test_rag_lifts_answers_on_the_shipped_knowledge_set(tmp_path):
    # A LoRA run as training leaves it at step 0 (B = 0): the tuned model equals the base, so
    # the test needs no training and still goes through compare's run handling.
    cfg = RunConfig.model_validate({"model": {"name": DEFAULT_MODEL}, "method": {"name": "lora"},
                                    "eval": {"max_new_tokens": 32}})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    record = methods.get("lora")
    model = record.apply(load_model(resolve(DEFAULT_MODEL), "float32"), record.settings(cfg.method))
    methods.save(record, model, run / "adapter")
    build_index([MANUAL], tmp_path / "idx", tokenizer=DEFAULT_MODEL, **DEMO_INDEX)
    result = compare_rag(tmp_path / "idx", run, QUESTIONS, limit=10, k=DEMO_K, report=tmp_path / "r.md")
    s = result["systems"]
    assert result["retrieval"]["recall@3"] >= 0.9
    assert s["base+rag"]["token_f1"] > s["base"]["token_f1"] + 0.1, json.dumps(s, indent=1)
    assert s["base+rag"]["rougeL"] > s["base"]["rougeL"] + 0.1

"""Chat rendering and the loss mask: only assistant turns with weight 1 carry labels."""

from __future__ import annotations

from tunelab.data.split import row_key, split_indices
from tunelab.data.tokens import IGNORE, encode_chat
from tunelab.models.load import load_tokenizer, resolve


def target_text(tok, enc):
    return tok.decode([t for t in enc.labels if t != IGNORE])


def test_loss_only_on_assistant_turns(tiny_model):
    tok = load_tokenizer(resolve(tiny_model))
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Monday?"},
        {"role": "assistant", "content": "Tuesday"},
        {"role": "user", "content": "and then?"},
        {"role": "assistant", "content": "Friday"},
    ]
    enc = encode_chat(tok, msgs, max_length=512)
    assert target_text(tok, enc) == "Tuesday<|im_end|>\nFriday<|im_end|>\n"
    weighted = [dict(m, weight=0) if m["content"] == "Tuesday" else m for m in msgs]
    assert target_text(tok, encode_chat(tok, weighted, 512)) == "Friday<|im_end|>\n"
    everything = encode_chat(tok, msgs, 512, train_on_inputs=True)
    assert everything.labels == everything.input_ids


def test_truncation_keeps_the_start(tiny_model):
    tok = load_tokenizer(resolve(tiny_model))
    msgs = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]
    enc = encode_chat(tok, msgs, max_length=20)
    assert enc.truncated and len(enc.input_ids) == 20 and enc.target_tokens == 0


def test_split_is_seeded_and_keeps_duplicates_together():
    rows = [[{"role": "user", "content": f"q{i % 30}"}, {"role": "assistant", "content": "a"}] for i in range(100)]
    keys = [row_key(r) for r in rows]
    a = split_indices(keys, [0.2], seed=1)
    assert a == split_indices(keys, [0.2], seed=1)
    assert a != split_indices(keys, [0.2], seed=2)
    train_keys, val_keys = {keys[i] for i in a[0]}, {keys[i] for i in a[1]}
    assert not train_keys & val_keys
    assert sorted(a[0] + a[1]) == list(range(100))


def test_word_counts_equal_the_tokenizer_on_awkward_text(tiny_model):
    from transformers import AutoTokenizer

    from tunelab.data.tokens import WordCounter

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["plain ascii words, numbers 123,456.78 and 'quotes' it's they'll",
             "  leading spaces\n\n\ttabs\r\n  and trailing   ", "<|im_start|>user\nhi<|im_end|>\n <|im_end|>x",
             "héllo wörld — ünïcode\u00a0nbsp 日本語 🙂🙂 ½ Ⅻ x² ٣٤", ""]
    counter = WordCounter.of(tok)
    assert counter is not None
    assert counter.count(texts) == [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]

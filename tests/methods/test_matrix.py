"""Every method on the tiny model: it learns, touches only its own parameters, saves and
reloads to identical logits, and merges (where it can) to the same logits."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import MEMO_ROWS, write_jsonl
from tunelab import methods
from tunelab.methods import METHODS
from tunelab.config import build_config
from tunelab.models.load import load_model, resolve
from tunelab.rundir import RunDir
from tunelab.train import setup, stages

# Learning rates that memorise the tiny set in ~40 steps; soft prompts need the largest.
LR = {"full": 3e-3, "lora": 1e-2, "dora": 1e-2, "qlora": 1e-2, "ia3": 5e-2, "adapter": 1e-2,
      "prefix": 3e-2, "prompt": 1e-1}
IDS = torch.tensor([[5, 17, 33, 70, 101, 9, 44]])


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


@pytest.fixture(scope="module", params=list(methods.METHODS))
def trained(request, tiny_model, tmp_path_factory):
    """A run of each method through the SFT recipe, with the model it trained kept in memory
    (captured where the recipe applies the method) beside copies of the base's weights."""
    name = request.param
    if name == "qlora":
        from tunelab.methods.qlora import check_available

        check_available()
    folder = tmp_path_factory.mktemp(name)
    data = write_jsonl(folder / "m.jsonl", MEMO_ROWS)
    cfg = build_config(overrides={"model.name": tiny_model, "method.name": name, "train.epochs": 40,
                                  "data.train": str(data), "data.val": str(data)},
                       sets=[f"train.lr={LR[name]}", "train.batch_size=8", "train.scheduler=constant",
                             "train.bf16=off", "train.logging_steps=1", "train.warmup_ratio=0"])
    captured = {}
    apply = setup.apply_method

    def capturing(model, cfg, task="CAUSAL_LM"):
        captured["base_params"] = [(p, p.detach().clone()) for p in model.parameters()]
        captured["model"] = apply(model, cfg, task)
        return captured["model"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setup, "apply_method", capturing)
        run = stages.run(cfg, RunDir(folder / "run")).run_dir
    method = methods.get(name)
    methods.save(method, captured["model"], folder / "weights")
    return {"name": name, "method": method, "model": captured["model"], "base_params": captured["base_params"],
            "run": run, "folder": folder, "ref": resolve(tiny_model), "settings": method.settings(cfg.method)}


def test_loss_falls(trained):
    losses = [m["loss"] for m in trained["run"].read_metrics() if "loss" in m]
    # A soft prompt steers a random tiny model only so far; every other method memorises the set.
    factor = 0.75 if trained["name"] == "prompt" else 0.6
    assert losses[-1] < factor * losses[0], (trained["name"], losses[0], losses[-1])


def test_only_the_methods_parameters_change(trained):
    changed = [not torch.equal(p.detach(), before) for p, before in trained["base_params"]]
    if trained["name"] == "full":
        assert all(changed)
    else:
        assert not any(changed), f"{trained['name']} changed {sum(changed)} base tensors"
        assert any(p.requires_grad for p in trained["model"].parameters())


def test_save_then_load_gives_identical_logits(trained):
    method = trained["method"]
    if method.saves == "model":
        reloaded = load_model(resolve(str(trained["folder"] / "weights")))
    else:
        base = load_model(trained["ref"], **method.load_kwargs(trained["settings"]))
        reloaded = methods.attach(base, trained["folder"] / "weights")
    a, b = logits(trained["model"]), logits(reloaded)
    if method.name == "qlora":
        # On CPU, bitsandbytes repacks 4-bit weights for its bf16 kernel at the first eval forward and
        # unpacks them to save a checkpoint (absmax rounded to bf16), and TRL keeps QLoRA adapters in
        # bf16; both leave small differences, so QLoRA is compared within 5% of the logit range.
        assert (a - b).abs().max() < 0.05 * a.abs().max()
    else:
        assert torch.equal(a, b)


def test_merge_gives_the_same_logits(trained):
    method = trained["method"]
    if not method.can_merge or method.saves == "model":
        pytest.skip(f"{method.name} has nothing to merge")
    base = load_model(trained["ref"], **method.load_kwargs(trained["settings"]))
    if getattr(base, "is_quantized", False):
        base = base.dequantize(dtype=torch.float32)
    tuned = methods.attach(base, trained["folder"] / "weights")
    before = logits(trained["model"])
    merged = tuned.merge_and_unload()
    assert not any("lora" in n or "ia3" in n for n, _ in merged.named_parameters())
    after = logits(merged)
    if method.name == "qlora":  # merged into the dequantised base: within the 4-bit rounding above
        assert (after - before).abs().max() < 0.05 * before.abs().max()
    else:
        assert torch.allclose(after, before, atol=1e-4)


def test_every_method_declares_every_trait():
    import dataclasses

    from tunelab.config import MethodSection
    from tunelab.methods import Method

    for method in METHODS.values():
        for field in dataclasses.fields(Method):
            value = getattr(method, field.name)
            assert value is not None or (field.name == "settings_cls" and method.name == "full"), (method.name, field)
        if method.settings_cls:
            assert method.name in MethodSection.model_fields  # the config section comes from the registry
        if method.lora_family or method.servable:
            assert method.saves == "peft"  # the preference stages and the server load PEFT adapters
        assert 0 < method.trainable_share <= 1 and method.base_bytes > 0

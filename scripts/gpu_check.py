"""GPU check of the paths a CPU cannot run: SFT with bf16 autocast, QLoRA's 4-bit base
(bitsandbytes CUDA kernels), model placement for eval/chat, and the reward -> DPO -> PPO ->
RLOO stages on one CUDA device, then DDP (LoRA, QLoRA) and FSDP over every visible GPU through
`tunelab train --nproc-per-node` (skipped, and said so, on a machine with one GPU), and chat and
eval with device_map "auto", all on a tiny random model. Prints one line per check and
writes $OUT/gpu_check.json (or /tmp/out). The numbers are meaningless (a random model):
it checks that every path runs on the GPU.

    PYTHONPATH=src python scripts/gpu_check.py
"""
import json, os, sys, time, traceback
from pathlib import Path
sys.path.insert(0, os.getcwd())
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0), flush=True)
from tests.conftest import build_tiny_model, MEMO_ROWS, write_jsonl
from tunelab import api
from tunelab.config import build_config
out = Path(os.environ.get("OUT", "/tmp/out")); out.mkdir(parents=True, exist_ok=True)
work = Path("/tmp/gpuwork")
if work.exists():
    import shutil
    shutil.rmtree(work)
work.mkdir()
tiny = str(build_tiny_model(work / "tiny"))
memo = write_jsonl(work / "memo.jsonl", MEMO_ROWS * 4)
qs = ["What is the capital of France?", "Which day comes after Monday?", "Is Paris in France?", "What time is noon?",
      "Name a day of the week.", "Is Rome a city?", "What is Berlin?", "Say yes or no."]
pairs = write_jsonl(work / "pairs.jsonl", [{"prompt": q, "chosen": "yes.", "rejected": f"Well, um, {q} hmm, maybe, ok?"} for q in qs] * 3)
results = {}
def step(name, fn):
    t = time.time()
    try:
        results[name] = {"ok": True, **(fn() or {}), "s": round(time.time() - t, 1)}
    except Exception as exc:
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    print(name, json.dumps(results[name])[:600], flush=True)
def sft(method):
    cfg = build_config(overrides={"model.name": tiny, "data.train": str(memo), "method.name": method,
                                  "train.max_steps": 6, "train.batch_size": 4, "train.lr": 5e-3})
    run = api.train(cfg, out=work / method)
    s = run.summary()
    loaded = api.load(run.path, "bfloat16" if method != "qlora" else "float32")
    dev = str(next(loaded.model.parameters()).device)
    from tunelab.models.load import load_model, resolve
    assert str(next(load_model(resolve(tiny)).parameters()).device) == "cuda:0"
    ans = api.reply(loaded, [{"role": "user", "content": "Code word 3?"}], max_new_tokens=6)
    return {"bf16": s.get("bf16"), "train_loss": s.get("train_loss"), "model_mb": s["trainable"].get("model_mb"),
            "device": dev, "answer": ans, "quantized": bool(getattr(loaded.model, "is_quantized", False))}
step("sft_lora", lambda: sft("lora"))
step("sft_qlora", lambda: sft("qlora"))
def stage(name, extra):
    cfg = build_config(overrides={"model.name": tiny, "data.train": str(pairs), "train.stage": name,
                                  "train.max_steps": 4, "train.batch_size": 4, "train.lr": 1e-3, **extra},
                       sets=[f"{s}.{k}" for s in ("ppo", "rloo") for k in
                             ("rollout_batch=4", "max_new_tokens=8", "eval_prompts=4")]
                       + ["ppo.mini_batch=2", "rloo.num_generations=2"])
    run = api.train(cfg, out=work / name)
    return run.summary()["held_out"]
def eval_pieces():
    from tunelab.evaluate import bias
    from tunelab.inference.generate import generate_and_score
    from tunelab.data.tokens import encode_chat, encode_prompt
    loaded = api.load(work / "lora", "bfloat16")
    tok = loaded.tokenizer
    convs = [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}] for r in MEMO_ROWS]
    prompts = [encode_prompt(tok, c[:1]) for c in convs]
    refs = [(e.input_ids[len(p):], e.labels[len(p):]) for p, e in zip(prompts, (encode_chat(tok, c, 512, False) for c in convs))]
    answers, loss = generate_and_score(loaded.model, tok, prompts, refs, max_new_tokens=6, batch_size=4)
    b = bias.scores(loaded.model, tok)
    return {"device": str(next(loaded.model.parameters()).device), "loss": loss, "answers": answers[:2], "bias_axes": list(b)[:4]}
step("eval_pieces", eval_pieces)
step("reward", lambda: stage("reward", {}))
step("dpo", lambda: stage("dpo", {}))
step("ppo", lambda: stage("ppo", {"ppo.reward_model": str(work / "reward"), "ppo.init": str(work / "lora")}))
step("rloo", lambda: stage("rloo", {"rloo.reward_model": str(work / "reward"), "rloo.init": str(work / "lora")}))
def multi(mode, method="lora"):
    """One run over every visible GPU (one process each); a machine with one GPU cannot run it:
    two processes on one GPU is not what DDP/FSDP do (NCCL refuses a GPU shared by two ranks)."""
    import subprocess
    n = torch.cuda.device_count()
    if n < 2:
        return {"skipped": f"{n} GPU visible: DDP/FSDP need 2 or more"}
    run = work / f"{mode}-{method}"
    cmd = [sys.executable, "-m", "tunelab", "train", "--model", tiny, "--data", str(memo), "--method", method,
           "--max-steps", "6", "--batch-size", "2", "--lr", "5e-3", "--out", str(run), "--nproc-per-node", str(n),
           "--distributed", mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1500:]
    s = json.loads((run / "run.json").read_text())
    assert s["distributed"]["world_size"] == n and (run / "adapter" / "adapter_config.json").is_file()
    return {"processes": n, **s["distributed"], "bf16": s.get("bf16"), "train_loss": s.get("train_loss"),
            "real_tokens": s.get("real_tokens")}
step("ddp_lora", lambda: multi("ddp"))
step("ddp_qlora", lambda: multi("ddp", "qlora"))
step("fsdp_lora", lambda: multi("fsdp"))
def device_map_auto():
    from tunelab.inference.load import load_run
    loaded = load_run(work / "lora", device_map="auto")
    ans = api.reply(loaded, [{"role": "user", "content": "Code word 3?"}], max_new_tokens=6)
    report = api.evaluate(work / "lora", memo, limit=4, forgetting=False, bias=False, device_map="auto")
    return {"device_map": sorted(set(map(str, getattr(loaded.model, "hf_device_map", {}).values()))), "answer": ans,
            "eval_tuned": {k: v for k, v in report.get("tuned", {}).items() if isinstance(v, (int, float))}}
step("device_map_auto_chat_and_eval", device_map_auto)
(out / "gpu_check.json").write_text(json.dumps(results, indent=1))
print("ALL", all(r["ok"] for r in results.values()))

#!/usr/bin/env python3
"""bench_hf.py: time transformers on the same checkpoint and batch shapes as `lm-worker bench`,
and measure the cuBLAS bf16 GEMM ceiling, for tools/gpu-check.sh.

Uses torch and transformers only to MEASURE the reference; Python is never a runtime dependency
of orchestrate or lm-worker.

Each measurement is one JSON line on stdout:
  {"mode": "hf", "attn": "sdpa", "batch": 8, "len": 1024, "tokens_per_s": ..., "ms_per_batch": ...,
   "peak_bytes": ..., "load_s": ...}
  {"mode": "gemm", "n": 8192, "tflops": ...}

The batch is B random sequences of L ids (never the pad id) with a full attention mask, run under
torch.inference_mode in the checkpoint's dtype: the same work lm-worker does (no tokenisation,
no padding). Time is the mean of --iters forwards after --warmup, between cuda synchronisations.
peak_bytes is torch.cuda.max_memory_allocated over the forwards, weights included.

With --ids FILE, the logits of each line of FILE (run alone) are printed too, as
  {"mode": "hf_logits", "attn": "eager", "logits": [[...], ...]}
so that gpu-check.sh can compare them with `lm-worker bench --ids FILE`.

--model takes a comma-separated list: each checkpoint is loaded and timed in turn in the same
process (gpu-check times a deep and a shallow copy of each model to split per-layer from
non-layer time); --ids runs on the first one only.

usage: bench_hf.py --model DIR[,DIR2] [--attn sdpa,eager] [--shapes 8x1024,4x2048] [--iters 5]
                   [--ids FILE --ids-attn eager]
       bench_hf.py --gemm [--n 8192]
"""
import argparse
import json
import sys
import time


def parse_shapes(s):
    out = []
    for part in s.split(","):
        b, l = part.lower().split("x")
        out.append((int(b), int(l)))
    return out


def bench_gemm(torch, n, iters=10, warmup=3):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(warmup):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / iters
    print(json.dumps({"mode": "gemm", "n": n, "tflops": 2.0 * n ** 3 / dt / 1e12}), flush=True)


def load_model(torch, path, attn):
    from transformers import AutoModelForSequenceClassification
    t0 = time.perf_counter()
    kw = {"attn_implementation": attn, "device_map": "cuda"}
    try:  # transformers >= 4.56 calls it dtype; older versions torch_dtype
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.bfloat16, **kw)
    except TypeError:
        model = AutoModelForSequenceClassification.from_pretrained(path, torch_dtype=torch.bfloat16, **kw)
    model.eval()
    torch.cuda.synchronize()
    return model, time.perf_counter() - t0


def switch_attn(torch, model, path, attn):
    """The same model with another attention implementation, without reloading when possible."""
    try:
        model.set_attn_implementation(attn)
        return model, 0.0
    except Exception:  # older transformers: reload
        del model
        torch.cuda.empty_cache()
        return load_model(torch, path, attn)


def run_ids(torch, model, path, attn, path_model):
    """Logits of each --ids sequence run alone (no padding), as one JSON line."""
    rows = []
    with open(path) as f, torch.inference_mode():
        for line in f:
            if line.strip():
                ids = torch.tensor([json.loads(line)["input_ids"]], device="cuda")
                rows.append([float(x) for x in model(input_ids=ids).logits[0].float().cpu()])
    print(json.dumps({"mode": "hf_logits", "model": path_model, "attn": attn, "logits": rows}), flush=True)


def bench_model(torch, args, path, first):
    model = None
    for attn in args.attn.split(","):
        if model is None:
            model, load_s = load_model(torch, path, attn)
        else:
            model, load_s = switch_attn(torch, model, path, attn)
        cfg = model.config
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else -1
        gen = torch.Generator(device="cuda").manual_seed(1)
        for B, L in parse_shapes(args.shapes):
            ids = torch.randint(0, cfg.vocab_size, (B, L), device="cuda", generator=gen)
            ids = torch.where(ids == pad, (ids + 1) % cfg.vocab_size, ids)
            mask = torch.ones_like(ids)
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                for _ in range(args.warmup):
                    model(input_ids=ids, attention_mask=mask)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    out = model(input_ids=ids, attention_mask=mask)
                torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / args.iters
            finite = bool(torch.isfinite(out.logits).all().item())
            print(json.dumps({"mode": "hf", "model": path, "attn": attn, "batch": B, "len": L,
                              "iters": args.iters, "load_s": load_s, "ms_per_batch": dt * 1e3,
                              "tokens_per_s": B * L / dt, "peak_bytes": torch.cuda.max_memory_allocated(),
                              "logits_finite": finite}), flush=True)
        if args.ids and first and attn == args.ids_attn:
            run_ids(torch, model, args.ids, attn, path)
    del model
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint directory, or several separated by commas")
    ap.add_argument("--attn", default="sdpa", help="comma-separated attn_implementation values (sdpa, eager)")
    ap.add_argument("--shapes", default="8x1024,4x2048", help="BxL,... batch shapes")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--ids", help="also print the logits of each {\"input_ids\": [...]} line of this file")
    ap.add_argument("--ids-attn", default="sdpa", help="which --attn implementation computes the --ids logits")
    ap.add_argument("--gemm", action="store_true", help="measure the bf16 GEMM ceiling instead")
    ap.add_argument("--n", type=int, default=8192, help="GEMM size for --gemm")
    args = ap.parse_args()
    if not args.gemm and not args.model:
        ap.error("--model is required (or --gemm)")
    import torch
    if not torch.cuda.is_available():
        print("bench_hf.py: no CUDA device visible to torch", file=sys.stderr)
        return 1
    if args.gemm:
        bench_gemm(torch, args.n)
    else:
        for i, path in enumerate(args.model.split(",")):
            bench_model(torch, args, path, i == 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

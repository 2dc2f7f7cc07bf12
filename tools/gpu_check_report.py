#!/usr/bin/env python3
"""gpu_check_report.py: the numbers tools/gpu-check.sh prints, read from its results.jsonl.

gpu-check.sh calls it after each step so that a run cut short still shows what it measured
("RESULT ..." lines), and once at the end for the summary table and the logits cross-check.
It measures nothing itself and needs only the standard library.

Depths and extrapolation. The random checkpoints are GPU_CHECK_LAYERS deep (default 4), with a
second copy at half that depth (the "shallow" one). For each implementation and shape, with
times t_deep and t_shallow at n_deep and n_shallow layers:
    per-layer time  = (t_deep - t_shallow) / (n_deep - n_shallow)
    non-layer time  = t_deep - n_deep x per-layer time   (embedding, final norm, score, launches)
    full-model time = non-layer time + n_real x per-layer time          -> EXTRAPOLATED
Every number derived that way is printed with the word "extrapolated"; everything else was
measured as printed. Without both depths nothing is extrapolated.

usage: gpu_check_report.py gemm RESULTS
       gpu_check_report.py model RESULTS ARCH lm-worker|hf
       gpu_check_report.py fidelity RESULTS ARCH FP32_TRACE BF16_TRACE   (appends a JSON line)
       gpu_check_report.py table RESULTS
       gpu_check_report.py logits RESULTS                               (exit 1 on a mismatch)
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random_checkpoint import ARCHS  # noqa: E402  (the real layer counts; no torch needed)


def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def name_of(path):
    return path.rstrip("/").split("/")[-1]


def arch_of(path):
    """'llama3-8b' from '.../llama3-8b-L4' (gpu-check's checkpoint folder names)."""
    n = name_of(path)
    return n.rsplit("-L", 1)[0] if "-L" in n else n


def depth_of(path, cache={}):
    if path not in cache:
        try:
            cache[path] = json.load(open(os.path.join(path, "config.json")))["num_hidden_layers"]
        except (OSError, ValueError, KeyError):
            cache[path] = None
    return cache[path]


def timings(rows, arch):
    """{(impl, B, L): {depth: row}} of one arch; impl is 'lm-worker', 'hf-sdpa' or 'hf-eager'.
    Only each (model dir, shape)'s first lm-worker line counts: the --ops runs repeat shapes."""
    out, seen = {}, set()
    for r in rows:
        if r.get("mode") not in ("bench", "hf") or arch_of(r["model"]) != arch:
            continue
        impl = "lm-worker" if r["mode"] == "bench" else "hf-" + r["attn"]
        key = (impl, r["model"], r["batch"], r["len"])
        if key in seen:
            continue
        seen.add(key)
        d = r["config"]["n_layers"] if r["mode"] == "bench" else depth_of(r["model"])
        out.setdefault((impl, r["batch"], r["len"]), {})[d] = r
    return out


def split(by_depth, n_real):
    """(ms per layer, non-layer ms, extrapolated full-model ms, (n1, n2)) from two depths, or None."""
    ds = sorted(d for d in by_depth if d)
    if len(ds) < 2 or n_real in ds:
        return None
    n1, n2 = ds[0], ds[-1]
    t1, t2 = by_depth[n1]["ms_per_batch"], by_depth[n2]["ms_per_batch"]
    per = (t2 - t1) / (n2 - n1)
    non = t2 - n2 * per
    return per, non, non + n_real * per, (n1, n2)


def real_layers(arch):
    return ARCHS[arch]["num_hidden_layers"] if arch in ARCHS else None


def cmd_gemm(rows):
    g = [r for r in rows if r.get("mode") == "gemm"]
    if g:
        print(f"RESULT gemm ceiling: cuBLAS bf16 {g[-1]['n']}^3 {g[-1]['tflops']:.0f} TFLOP/s (measured)")


def cmd_model(rows, arch, which):
    t = timings(rows, arch)
    n_real = real_layers(arch)
    shapes = sorted({(B, L) for (_, B, L) in t}, key=lambda s: (s[1], s[0]))
    for B, L in shapes:
        ours = t.get(("lm-worker", B, L), {})
        impls = ["lm-worker"] if which == "lm-worker" else [i for (i, b, l) in t if i.startswith("hf-") and (b, l) == (B, L)]
        for impl in sorted(set(impls)):
            by = t.get((impl, B, L), {})
            for d in sorted(x for x in by if x):
                r = by[d]
                line = (f"RESULT {arch} {B}x{L} {impl} at {d} layers (measured): {r['tokens_per_s']:,.0f} tok/s, "
                        f"{r['ms_per_batch']:.2f} ms/batch, peak {r['peak_bytes'] / 2**30:.1f} GiB")
                if impl != "lm-worker" and d in ours:
                    line += f"; lm-worker/{impl} = {ours[d]['tokens_per_s'] / r['tokens_per_s']:.2f} (measured)"
                print(line)
            s = split(by, n_real)
            if s:
                per, non, full, (n1, n2) = s
                line = (f"RESULT {arch} {B}x{L} {impl}: {per:.3f} ms per layer, non-layer part {non:.2f} ms (from "
                        f"{n1} and {n2} layers); EXTRAPOLATED to {n_real} layers: {full:.1f} ms/batch, "
                        f"{B * L / full * 1e3:,.0f} tok/s (extrapolated)")
                so = split(ours, n_real) if impl != "lm-worker" else None
                if so:
                    line += f"; lm-worker/{impl} = {full / so[2]:.2f} (extrapolated)"
                print(line)


def cmd_fidelity(results, arch, fp32_path, bf16_path):
    a, b = json.load(open(fp32_path)), json.load(open(bf16_path))
    if len(a["hidden"]) != len(b["hidden"]) or a["n_layers"] != b["n_layers"]:
        print(f"RESULT {arch} fidelity: MISMATCH in shape ({a['n_layers']} vs {b['n_layers']} layers)")
        return 1
    rows = a["n_layers"] + 2
    rel = []  # per row: the worst sequence's ||bf16 - fp32|| / ||fp32||
    for r in range(rows):
        worst = 0.0
        for sa, sb in zip(a["hidden"], b["hidden"]):
            num = math.sqrt(sum((x - y) ** 2 for x, y in zip(sa[r], sb[r])))
            den = math.sqrt(sum(x * x for x in sa[r])) or 1e-30
            worst = max(worst, num / den) if math.isfinite(num) else float("inf")
        rel.append(worst)
    layers = rel[1:-1]
    j = {"mode": "fidelity", "model": arch, "dtype": b["dtype"], "ref_dtype": a["dtype"], "n_layers": a["n_layers"],
         "seq_lens": a["lens"],
         "rel_embedding": rel[0], "rel_layers": layers, "rel_final_norm": rel[-1],
         "max_rel_layers": max(layers), "mean_rel_layers": sum(layers) / len(layers)}
    with open(results, "a") as f:
        f.write(json.dumps(j) + "\n")
    lo = b["dtype"] + ("+int8" if b.get("int8") else "")
    print(f"RESULT {arch} fidelity {lo} vs {a['dtype']} ({b['device']}, {a['n_layers']} layers, {len(a['lens'])} sequences "
          f"of {','.join(map(str, a['lens']))} tokens; ||{lo}-{a['dtype']}||/||{a['dtype']}|| of the pooled hidden state, "
          f"worst sequence): "
          f"layers max {j['max_rel_layers']:.2e} mean {j['mean_rel_layers']:.2e}; embedding {rel[0]:.2e}, "
          f"final norm {rel[-1]:.2e} (measured)")
    print("  per layer: " + " ".join(f"{x:.1e}" for x in layers))
    return 0 if all(math.isfinite(x) for x in rel) else 1


def flops_per_token(c, L, n_layers):
    """2 x linear params + attention (QK^T and PV over the average causal context)."""
    d, h, nh, nkv, hd = c["dim"], c["hidden_dim"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
    linear = n_layers * (d * nh * hd * 2 + 2 * d * nkv * hd + 3 * d * h)
    return 2.0 * linear + 4.0 * n_layers * nh * hd * (L + 1) / 2.0


def cmd_table(rows):
    g = next((r["tflops"] for r in rows if r.get("mode") == "gemm"), None)
    print()
    print(f"cuBLAS bf16 8192^3 GEMM ceiling: {g:.0f} TFLOP/s" if g else "GEMM ceiling: not measured")
    hdr = ("model", "layers", "BxL", "lm-worker tok/s", "ms/layer (2 depths)", "HF sdpa tok/s", "ratio", "HF eager tok/s",
           "ratio", "eff TFLOP/s", "of ceiling", "peak GiB ours", "peak GiB HF")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    archs = []
    for r in rows:
        if r.get("mode") == "bench" and arch_of(r["model"]) not in archs:
            archs.append(arch_of(r["model"]))
    for arch in archs:
        t = timings(rows, arch)
        n_real = real_layers(arch)
        for B, L in sorted({(b, l) for (i, b, l) in t if i == "lm-worker"}, key=lambda s: (s[1], s[0])):
            ours = t[("lm-worker", B, L)]
            sdpa, eager = t.get(("hf-sdpa", B, L), {}), t.get(("hf-eager", B, L), {})
            s_ours = split(ours, n_real)
            per = f"{s_ours[0]:.3f}" if s_ours else "-"
            for d in sorted(x for x in ours if x):
                r, s, e = ours[d], sdpa.get(d), eager.get(d)
                eff = r["tokens_per_s"] * flops_per_token(r["config"], L, d) / 1e12
                peaks = [x["peak_bytes"] for x in (s, e) if x]
                print("| " + " | ".join([
                    arch, f"{d} (measured)", f"{B}x{L}", f"{r['tokens_per_s']:,.0f}", per,
                    f"{s['tokens_per_s']:,.0f}" if s else "-", f"{r['tokens_per_s'] / s['tokens_per_s']:.2f}" if s else "-",
                    f"{e['tokens_per_s']:,.0f}" if e else "-", f"{r['tokens_per_s'] / e['tokens_per_s']:.2f}" if e else "-",
                    f"{eff:.0f}", f"{eff / g:.0%}" if g else "-", f"{r['peak_bytes'] / 2**30:.1f}",
                    f"{max(peaks) / 2**30:.1f}" if peaks else "-"]) + " |")
            if s_ours:
                tok = B * L / s_ours[2] * 1e3
                x_s, x_e = split(sdpa, n_real), split(eager, n_real)
                eff = tok * flops_per_token(ours[max(x for x in ours if x)]["config"], L, n_real) / 1e12
                print("| " + " | ".join([
                    arch + " EXTRAPOLATED", f"{n_real} (extrapolated from {s_ours[3][0]} and {s_ours[3][1]})",
                    f"{B}x{L}", f"{tok:,.0f} (extrapolated)", per,
                    f"{B * L / x_s[2] * 1e3:,.0f} (extrapolated)" if x_s else "-",
                    f"{x_s[2] / s_ours[2]:.2f} (extrapolated)" if x_s else "-",
                    f"{B * L / x_e[2] * 1e3:,.0f} (extrapolated)" if x_e else "-",
                    f"{x_e[2] / s_ours[2]:.2f} (extrapolated)" if x_e else "-",
                    f"{eff:.0f} (extrapolated)", f"{eff / g:.0%} (extrapolated)" if g else "-", "-", "-"]) + " |")
    for r in rows:
        if r.get("mode") == "bench" and r["len"] == 1024 and r.get("upload_gbps"):
            print(f"{name_of(r['model'])}: load {r['load_s']:.1f} s, weight upload {r['upload_gbps']:.1f} GB/s (measured)")
    for r in rows:
        if r.get("mode") == "fidelity":
            print(f"{r['model']}: {r['dtype']} vs {r['ref_dtype']} hidden states, relative error per layer max {r['max_rel_layers']:.2e}, "
                  f"mean {r['mean_rel_layers']:.2e} over {r['n_layers']} layers (measured)")


def cmd_logits(rows):
    """Logits of the same sequences: lm-worker (bf16, one packed batch) vs transformers (bf16, each
    alone). Both round differently (our residual stream is fp32), so the tolerance is loose: it
    catches masking, GQA, rope or softcap mistakes, which move logits by O(1)."""
    ours = [r for r in rows if r.get("mode") == "logits"]
    theirs = {name_of(r["model"]): r for r in rows if r.get("mode") == "hf_logits"}
    bad = 0
    for a in ours:
        b = theirs.get(name_of(a["model"]))
        if b is None:
            continue
        worst = max(abs(x - y) / (1 + abs(y)) for ra, rb in zip(a["logits"], b["logits"]) for x, y in zip(ra, rb))
        ok = worst <= 0.1 and len(a["logits"]) == len(b["logits"])
        bad += not ok
        print(f"logits vs transformers ({b['attn']}), {name_of(a['model'])}: worst |d|/(1+|ref|) = {worst:.4f}"
              f" {'ok' if ok else 'MISMATCH'}")
        if not ok:
            print("  lm-worker:    ", a["logits"])
            print("  transformers: ", b["logits"])
    if len(ours) != len(theirs):
        print(f"logits cross-check incomplete: {len(ours)} lm-worker vs {len(theirs)} transformers results")
    return 1 if bad else 0


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("usage:")[1], file=sys.stderr)
        return 64
    cmd, results = argv[1], argv[2]
    rows = load(results) if os.path.exists(results) else []
    if cmd == "gemm":
        cmd_gemm(rows)
    elif cmd == "model" and len(argv) == 5:
        cmd_model(rows, argv[3], argv[4])
    elif cmd == "fidelity" and len(argv) == 6:
        return cmd_fidelity(results, argv[3], argv[4], argv[5])
    elif cmd == "table":
        cmd_table(rows)
    elif cmd == "logits":
        return cmd_logits(rows)
    else:
        print("gpu_check_report.py: bad arguments; see its header", file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

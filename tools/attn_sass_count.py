#!/usr/bin/env python3
"""attn_sass_count.py: count, in the SASS of kernels/attention.cu, the instructions of the
tensor-core kernel's key loop: shared-memory loads (LDS, LDSM), mma (HMMA), their ratio, the async
copies (LDGSTS), exp2 (MUFU.EX2), barriers and register spills (LDL/STL). A static count of one
pass through the loop body, not a measurement of speed.

Usage: tools/attn_sass_count.py [--src kernels/attention.cu] [--arch 75,80,90]
Needs nvcc and cuobjdump (found as $NVCC / $CUOBJDUMP, else in $CUDA_BIN, else on PATH; any
toolkit >= 12.1). Prints one markdown table.

The key loop is taken to be the backward branch whose body holds the most HMMA (every inner loop
of the kernel is unrolled, so that is the loop over key tiles). Predicated-off instructions
(`@!PT`, padding nvcc places next to LDGSTS) are not counted. On sm_75 each m16n8k16 product is
two HMMA.1688, so the HMMA column there counts twice the mma of sm_80+ for the same work.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile


def tool(name):
    """The path of a CUDA tool: $NAME (upper case), $CUDA_BIN/name, else on PATH; else exit."""
    d = os.environ.get("CUDA_BIN")
    p = os.environ.get(name.upper()) or (os.path.join(d, name) if d else shutil.which(name))
    if not p or not os.path.exists(p):
        sys.exit(f"attn_sass_count: {name} not found (set CUDA_BIN to the toolkit's bin directory)")
    return p


def demangle(names):
    """c++filt over a list of mangled names (unchanged when c++filt is missing)."""
    if not shutil.which("c++filt"):
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return out.strip().split("\n")


def count_loop(func_text):
    """(counts dict, whether a loop was found) for one function's SASS text."""
    ins = []
    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", func_text):
        t = m.group(2).strip()
        if t.startswith("@!PT"):
            continue
        ins.append((int(m.group(1), 16), t))
    best, bestkey = None, None
    for a, t in ins:
        m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", t)
        if m and int(m.group(1), 16) < a:
            lo = int(m.group(1), 16)
            key = (sum(1 for b, u in ins if lo <= b <= a and "HMMA" in u), a - lo)
            if bestkey is None or key > bestkey:
                best, bestkey = (lo, a), key
    if not best or bestkey[0] == 0:
        return None
    sel = [t for a, t in ins if best[0] <= a <= best[1]]
    pats = {"LDS": r"\bLDS(\.|\s)", "LDSM": r"\bLDSM\b", "HMMA": r"\bHMMA\b", "LDGSTS": r"\bLDGSTS\b",
            "EX2": r"\bMUFU\.EX2\b", "BAR": r"\bBAR\.SYNC", "LDL": r"\bLDL\b", "STL": r"\bSTL\b"}
    c = {k: sum(1 for t in sel if re.search(p, t)) for k, p in pats.items()}
    c["ins"] = len(sel)
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="kernels/attention.cu")
    ap.add_argument("--arch", default="75,80,90")
    args = ap.parse_args()
    nvcc, cuobjdump = tool("nvcc"), tool("cuobjdump")
    inc = os.path.dirname(os.path.abspath(args.src))
    print("| sm | kernel <dtype, head_dim, ...> | LDS | LDSM | HMMA | (LDS+LDSM)/HMMA | LDGSTS | EX2 | BAR | LDL/STL | instructions |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch.split(","):
            cubin = os.path.join(tmp, f"attn_{arch}.cubin")
            subprocess.run([nvcc, "-std=c++17", "-O3", "-cubin", f"-arch=sm_{arch}", "-I", inc, args.src, "-o", cubin],
                           check=True)
            sass = subprocess.run([cuobjdump, "-sass", cubin], check=True, capture_output=True, text=True).stdout
            funcs = re.split(r"\n\s*Function : ", sass)[1:]
            names = demangle([f.split("\n", 1)[0].strip() for f in funcs])
            def order(nf):  # by dtype, then the numeric template arguments
                return (nf[0].split(",")[0], [int(x) for x in re.findall(r"\b\d+\b", nf[0].split("(")[0])])
            for name, f in sorted(zip(names, funcs), key=order):
                if "attn_mma_kernel" not in name:
                    continue
                c = count_loop(f)
                if not c:
                    continue  # bf16 on sm_75: the kernel only traps
                short = re.sub(r"\(.*", "", name).replace("void ", "").replace("attn_mma_kernel", "").replace("__nv_bfloat16", "bf16") \
                    .replace("__half", "f16")
                ratio = (c["LDS"] + c["LDSM"]) / c["HMMA"]
                print(f"| {arch} | {short} | {c['LDS']} | {c['LDSM']} | {c['HMMA']} | {ratio:.3f} | {c['LDGSTS']} | "
                      f"{c['EX2']} | {c['BAR']} | {c['LDL']}/{c['STL']} | {c['ins']} |")


if __name__ == "__main__":
    main()

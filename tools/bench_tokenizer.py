#!/usr/bin/env python3
"""bench_tokenizer.py: single-thread tokenizer throughput, HF `tokenizers` against ours.

Uses HF `tokenizers` from pip only to MEASURE; it is never a runtime dependency. Both sides
encode exactly the same texts (every string in the JSON-list columns of an LMSYS CSV, one
encode call per string, or all of them joined by "\n" with --concat) and the script checks
that they produce the same number of ids before it reports MB/s of UTF-8 input. Times are
thread CPU seconds on both sides (steadier than wall time on a shared machine; the encoding
is single-threaded on both sides, TOKENIZERS_PARALLELISM and RAYON_NUM_THREADS are pinned).

usage: tools/bench_tokenizer.py --build BUILD_DIR TOKENIZER.json [TOKENIZER.json ...]
         [--csv tests/fixtures/data/lmsys-sample.csv] [--repeat 3] [--concat]
Our side is BUILD_DIR/bench_tokenizer (built from tests/helpers/bench_tokenizer.c).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

# The same text extraction the tokenizer fixtures were made with (imported after the
# environment above, which must be set before HF tokenizers starts its thread pool).
from make_tiny_tokenizers import lmsys_texts  # noqa: E402


def bench_hf(tok_path, texts, repeat, concat):
    from tokenizers import Tokenizer

    t0 = time.thread_time()
    tok = Tokenizer.from_file(tok_path)
    load = time.thread_time() - t0
    work = ["\n".join(texts)] if concat else texts
    best, n_ids = float("inf"), 0
    for _ in range(repeat):
        s = time.thread_time()
        n_ids = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in work)
        best = min(best, time.thread_time() - s)
    nbytes = sum(len(t.encode("utf-8")) for t in work)
    return {"load_s": load, "bytes": nbytes, "ids": n_ids, "best_s": best, "mb_per_s": nbytes / best / 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizers", nargs="+", help="tokenizer.json files")
    ap.add_argument("--build", required=True, help="build directory holding bench_tokenizer")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--csv", default=os.path.join(here, "..", "tests", "fixtures", "data", "lmsys-sample.csv"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concat", action="store_true", help="one text: all strings joined by newlines")
    a = ap.parse_args()

    texts = lmsys_texts(a.csv)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
        jsonl = f.name
    try:
        print(f"{len(texts)} texts, {sum(len(t.encode()) for t in texts) / 1e6:.2f} MB, concat={a.concat}")
        for tp in a.tokenizers:
            hf = bench_hf(tp, texts, a.repeat, a.concat)
            cmd = [os.path.join(a.build, "bench_tokenizer"), tp, jsonl, "--repeat", str(a.repeat)]
            if a.concat:
                cmd.append("--concat")
            ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            same = "ok" if ours["ids"] == hf["ids"] else f"ID COUNT DIFFERS ({ours['ids']} vs {hf['ids']})"
            print(f"{os.path.basename(tp)}: HF {hf['mb_per_s']:.2f} MB/s (load {hf['load_s']:.2f} s), "
                  f"ours {ours['mb_per_s']:.2f} MB/s (load {ours['load_s']:.2f} s), "
                  f"speedup {ours['mb_per_s'] / hf['mb_per_s']:.1f}x, ids {same}")
    finally:
        os.unlink(jsonl)


if __name__ == "__main__":
    sys.exit(main())

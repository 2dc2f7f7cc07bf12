#!/usr/bin/env python3
"""make_random_checkpoint.py: write a random-weight *ForSequenceClassification checkpoint with the
exact shapes of Llama-3-8B or Gemma-2-9B, for benchmarks (tools/gpu-check.sh).

The output is what a Kaggle checkpoint looks like: config.json in the 2024 hub form (torch_dtype,
rope_theta), bf16 weights in ~5 GB safetensors shards with model.safetensors.index.json, and a
3-label head (winner_model_a, winner_model_b, winner_tie). Weights are N(0, 0.02) like
transformers' initialiser; norm weights are 1 (Llama) or small around 0 (Gemma's 1+w), so that
activations stay finite through all layers. The values mean nothing: only speed is measured.

Needs torch and safetensors (no transformers), only to MAKE benchmark checkpoints; Python is
never a runtime dependency of orchestrate or lm-worker. Tensors are drawn on the GPU when one
is present (fast), else on the CPU. It deliberately does not write a tokenizer.

--zeros writes the same files with every weight zero, as sparse files (a safetensors header, then
a hole), in seconds and with no torch: the shapes alone, for measuring memory without a GPU
(docs/cuda-emu.md, CUDA_EMU_DRY). --noise writes the same layout filled with random finite bf16
values in (-2, 2) (random bytes with one exponent bit cleared), also with no torch: real pages
for measuring the load path's host side (docs/benchmarks.md).

usage: make_random_checkpoint.py --arch llama3-8b|gemma2-9b --out DIR [--layers N] [--seed S] [--zeros | --noise]
"""
import argparse
import json
import os
import sys
import time

ARCHS = {
    "llama3-8b": {
        "architectures": ["LlamaForSequenceClassification"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "pad_token_id": 128001,
    },
    "gemma2-9b": {
        "architectures": ["Gemma2ForSequenceClassification"],
        "model_type": "gemma2",
        "vocab_size": 256000,
        "hidden_size": 3584,
        "intermediate_size": 14336,
        "num_hidden_layers": 42,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-06,
        "rope_theta": 10000.0,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "attention_bias": False,
        "cache_implementation": "hybrid",
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
    },
}
LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]
SHARD_BYTES = 5 << 30


def tensor_shapes(cfg):
    """(name, shape, kind) of every tensor, in the order transformers saves them."""
    d, h, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    gemma = cfg["model_type"] == "gemma2"
    out = [("model.embed_tokens.weight", (cfg["vocab_size"], d), "linear")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (nh * hd, d), "linear"),
            (p + "self_attn.k_proj.weight", (nkv * hd, d), "linear"),
            (p + "self_attn.v_proj.weight", (nkv * hd, d), "linear"),
            (p + "self_attn.o_proj.weight", (d, nh * hd), "linear"),
            (p + "mlp.gate_proj.weight", (h, d), "linear"),
            (p + "mlp.up_proj.weight", (h, d), "linear"),
            (p + "mlp.down_proj.weight", (d, h), "linear"),
            (p + "input_layernorm.weight", (d,), "norm"),
            (p + "post_attention_layernorm.weight", (d,), "norm"),
        ]
        if gemma:
            out += [(p + "pre_feedforward_layernorm.weight", (d,), "norm"),
                    (p + "post_feedforward_layernorm.weight", (d,), "norm")]
    out += [("model.norm.weight", (d,), "norm"), ("score.weight", (len(LABELS), d), "linear")]
    return out


def plan_shards(specs):
    """Group (name, shape, kind) specs into shards of at most SHARD_BYTES of bf16 data."""
    shards, cur_bytes = [[]], 0
    for name, shape, kind in specs:
        nbytes = 2 * prod(shape)
        if shards[-1] and cur_bytes + nbytes > SHARD_BYTES:
            shards.append([])
            cur_bytes = 0
        shards[-1].append((name, shape, kind))
        cur_bytes += nbytes
    return shards


def prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def write_index_and_config(cfg, args, weight_map, total, n_shards, t0):
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(json.dumps({"mode": "checkpoint", "arch": args.arch, "out": args.out, "params": total // 2,
                      "shards": n_shards, "zeros": bool(args.zeros), "seconds": round(time.time() - t0, 1)}))
    return 0


def write_zeros(cfg, args, noise=False):
    """The checkpoint with all-zero bf16 weights: each shard a safetensors header and a hole; with
    noise, random finite bf16 values instead of the hole."""
    t0 = time.time()
    shards = plan_shards(tensor_shapes(cfg))
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _ in shard:
            n = 2 * prod(shape)
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        total += off
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(len(h).to_bytes(8, "little") + h)
            if noise:
                # Clearing bit 0x40 of every byte caps a bf16's exponent at 0x7f: |v| < 2, finite.
                table = bytes(b & ~0x40 for b in range(256))
                for at in range(0, off, 64 << 20):
                    f.write(os.urandom(min(64 << 20, off - at)).translate(table))
            f.truncate(8 + len(h) + off)
    return write_index_and_config(cfg, args, weight_map, total, len(shards), t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--layers", type=int, default=0, help="override num_hidden_layers (0: the real model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zeros", action="store_true", help="all-zero weights in sparse files (no torch)")
    ap.add_argument("--noise", action="store_true", help="random finite bf16 bytes in (-2, 2) (no torch)")
    args = ap.parse_args()

    cfg = dict(ARCHS[args.arch])
    if args.layers > 0:
        cfg["num_hidden_layers"] = args.layers
    cfg.update({"torch_dtype": "bfloat16", "id2label": {str(i): l for i, l in enumerate(LABELS)},
                "label2id": {l: i for i, l in enumerate(LABELS)}})
    os.makedirs(args.out, exist_ok=True)
    if args.zeros or args.noise:
        return write_zeros(cfg, args, noise=args.noise)

    import torch
    from safetensors.torch import save_file

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    gemma = cfg["model_type"] == "gemma2"

    t0 = time.time()
    specs = tensor_shapes(cfg)
    # Plan the shards first (their count is in every file name), then draw and write one shard at
    # a time so that host memory holds at most one shard.
    shards = plan_shards(specs)

    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape, kind in shard:
            t = torch.randn(shape, generator=gen, device=dev, dtype=torch.float32)
            t.mul_(0.02 if kind == "linear" else 0.05)
            if kind == "norm" and not gemma:
                t.add_(1.0)
            tensors[name] = t.to(torch.bfloat16).cpu().contiguous()
            weight_map[name] = fname
            total += 2 * t.numel()
        save_file(tensors, os.path.join(args.out, fname), metadata={"format": "pt"})
        del tensors
    return write_index_and_config(cfg, args, weight_map, total, len(shards), t0)


if __name__ == "__main__":
    sys.exit(main())

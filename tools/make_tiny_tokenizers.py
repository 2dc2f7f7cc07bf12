#!/usr/bin/env python3
"""make_tiny_tokenizers.py: train the small tokenizer fixtures and write their goldens.

Uses HF `tokenizers` from pip only to MAKE fixtures; it is never a runtime dependency. The
native tokenizer (workers/lm/tokenizer) must reproduce these goldens exactly; tests/unit/
test_tokenizer.c checks every line.

Writes (paths relative to the repository root):
  tests/fixtures/models/tiny-llama/tokenizer.json    Llama-3 style: byte-level BPE, the Llama-3
        Split regex, ignore_merges, ByteLevel post-processor; <|pad|> 0, <|begin_of_text|> 1,
        <|end_of_text|> 2 (the tiny model's pad/bos/eos ids), vocab 1024.
  tests/fixtures/models/tiny-gemma2/tokenizer.json   Gemma style: BPE with byte_fallback and
        <0xNN> tokens, Replace(" " -> "▁"), no pre-tokenizer, TemplateProcessing "<bos> $A";
        <pad> 0, <eos> 1, <bos> 2, <unk> 3, <start_of_turn> 4, <end_of_turn> 5, vocab 1024.
  tests/fixtures/tokenizers/golden-tiny-{llama,gemma}.jsonl   20 texts from lmsys-sample.csv,
        31 edge cases and one 20 kB text: {"text", "ids", "ids_with_special"} per line.
  tests/fixtures/tokenizers/variants/<name>.json + golden-variants.jsonl   small tokenizers
        covering the other normalizers, pre-tokenizers, post-processors, added-token flags,
        truncation and padding the native tokenizer supports; lines add "tokenizer": <name>.
All are trained on the texts of tests/fixtures/data/lmsys-train-sample.csv; goldens use
lmsys-sample.csv, a different file.

usage: python3 tools/make_tiny_tokenizers.py [--root REPO]
"""
import argparse
import csv
import json
import os
import random
import sys

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")

EDGE_CASES = [
    "", " ", "  ", "\n", "\r\n", "\t", "\n\n\n", " \t\n ", "a", "Hello, world!", "hello world", " hello", "hello ",
    "   leading and trailing   ", "I'LL be there, don't you worry. She's, we've, they'd, you're",
    "1234567890 12 123 1234", "3.14159e-10", "x" * 300, " " * 300, "\u00a0\u2003\u3000\u180e\u0085|",
    "日本語のテキスト、中文文本，한국어 텍스트", "Ελληνικά русский עברית العربية ไทย",
    "e\u0301 combining \u0345 marks \u1e9e\u00df", "emoji 😀👩\u200d💻🇩🇪 zwj", "\ufeffBOM and \x00\x01\x7f control",
    "<|begin_of_text|>Hello<|end_of_text|>", "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos><pad> specials in text <unk>", "new chars \U00031350\U000105c0\U00010d40 and \U0010ffff\ue000",
    "def f(x):\n    return x  # comment\r\n\tpass", "http://example.com/a?b=c&d=e",
]


def lmsys_texts(path):
    """Every non-null string of the prompt / response_a / response_b JSON lists, in file order."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for col in ("prompt", "response_a", "response_b"):
                try:
                    cell = json.loads(row.get(col) or "[]")
                except json.JSONDecodeError:
                    continue
                out.extend(x for x in cell if isinstance(x, str))
    return out


def save(tok, path, edit=None):
    """Save, optionally edit the JSON (fields the Python API cannot set), reload to validate."""
    d = json.loads(tok.to_str())
    if edit:
        edit(d)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return Tokenizer.from_file(path)


def write_golden(path, tok, texts, name=None):
    with open(path, "a" if name else "w", encoding="utf-8") as f:
        for t in texts:
            d = {"text": t, "ids": tok.encode(t, add_special_tokens=False).ids,
                 "ids_with_special": tok.encode(t, add_special_tokens=True).ids}
            if name:
                d = {"tokenizer": name, **d}
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


def make_llama(train, path):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train, trainer)

    def edit(d):
        d["model"]["ignore_merges"] = True  # training resets the flag; Llama-3 sets it

    return save(tok, path, edit)


def make_gemma(train, path):
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    # 256 ids are kept for the <0xNN> byte tokens, appended to the vocab below.
    trainer = trainers.BpeTrainer(vocab_size=1024 - 256, special_tokens=specials, limit_alphabet=150,
                                  show_progress=False)
    tok.train_from_iterator(train, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", 2)])

    def edit(d):
        vocab = d["model"]["vocab"]
        base = max(vocab.values()) + 1
        assert base + 256 <= 1024, base
        for b in range(256):
            vocab[f"<0x{b:02X}>"] = base + b

    return save(tok, path, edit)


def train_small(train, model, vocab_size=400, specials=(), limit_alphabet=None, **kw):
    tok = Tokenizer(model)
    for k, v in kw.items():
        setattr(tok, k, v)
    args = dict(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False)
    if limit_alphabet:
        args["limit_alphabet"] = limit_alphabet
    if getattr(model, "continuing_subword_prefix", None):
        args["continuing_subword_prefix"] = model.continuing_subword_prefix
    if getattr(model, "end_of_word_suffix", None):
        args["end_of_word_suffix"] = model.end_of_word_suffix
    if isinstance(kw.get("pre_tokenizer"), pre_tokenizers.ByteLevel):
        args["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(train, trainers.BpeTrainer(**args))
    return tok


def add_byte_tokens(d):
    vocab = d["model"]["vocab"]
    base = max(vocab.values()) + 1
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = base + b


def variants(train):
    """(name, tokenizer before saving, JSON edit or None)."""
    V = []

    t = train_small(train, models.BPE(), specials=["<s>", "</s>", "<pad>"],
                    pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
                    decoder=decoders.ByteLevel())
    t.post_processor = processors.RobertaProcessing(("</s>", t.token_to_id("</s>")), ("<s>", t.token_to_id("<s>")))
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    t.add_tokens([AddedToken("hello world", normalized=False)])
    V.append(("bytelevel_gpt2_roberta", t, None))

    t = train_small(train, models.BPE(unk_token="[UNK]"), specials=["[UNK]", "[CLS]", "[SEP]"], limit_alphabet=80,
                    pre_tokenizer=pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True))
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    t.add_special_tokens([AddedToken("[MASK]", rstrip=True, special=True)])
    t.add_tokens([AddedToken("[NL]", single_word=True, normalized=False), AddedToken("ing", single_word=True)])
    V.append(("metaspace_always_bert", t, None))

    t = train_small(train, models.BPE(unk_token="<unk>", fuse_unk=False), specials=["<unk>", "<s>", "</s>"],
                    limit_alphabet=60,
                    pre_tokenizer=pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False))
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s> </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", t.token_to_id("<s>")), ("</s>", t.token_to_id("</s>"))])
    V.append(("metaspace_first_template", t, None))

    t = train_small(train, models.BPE(continuing_subword_prefix="##"), specials=["[PAD]"],
                    pre_tokenizer=pre_tokenizers.Sequence([
                        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
                        pre_tokenizers.Split(Regex(r"[0-9]"), behavior="merged_with_previous"),
                        pre_tokenizers.Punctuation(behavior="contiguous"),
                        pre_tokenizers.Digits(individual_digits=True)]))
    V.append(("splits_prefix", t, None))

    t = train_small(train, models.BPE(), specials=["<pad>"],
                    pre_tokenizer=pre_tokenizers.Sequence([
                        pre_tokenizers.Split(Regex(r"\w+|[^\w\s]+"), behavior="removed", invert=True),
                        pre_tokenizers.Split(" ", behavior="isolated"),
                        pre_tokenizers.Digits(individual_digits=False)]))
    V.append(("split_invert_literal", t, None))

    t = train_small(train, models.BPE(unk_token="<unk>", fuse_unk=True, end_of_word_suffix="</w>"),
                    specials=["<unk>"], limit_alphabet=50, pre_tokenizer=pre_tokenizers.Whitespace())
    V.append(("whitespace_suffix_unk", t, None))

    t = train_small(train, models.BPE(unk_token="[UNK]"), specials=["[UNK]", "[CLS]", "[SEP]"],
                    pre_tokenizer=pre_tokenizers.BertPreTokenizer(),
                    normalizer=normalizers.Sequence([normalizers.Strip(), normalizers.Replace(Regex(r"\s+"), " ")]))
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    t.enable_truncation(max_length=12)
    t.enable_padding(pad_id=0, pad_token="[UNK]", pad_to_multiple_of=4)
    V.append(("bert_pre_trunc_pad", t, None))

    t = train_small(train, models.BPE(unk_token="<unk>"), specials=["<unk>"],
                    pre_tokenizer=pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                           pre_tokenizers.CharDelimiterSplit("-")]))
    V.append(("wsplit_chardelim", t, None))

    t = train_small(train, models.BPE(unk_token="<unk>", byte_fallback=True), specials=["<unk>", "<s>"],
                    limit_alphabet=70,
                    normalizer=normalizers.Sequence([
                        normalizers.Replace(Regex(r"[0-9]"), "#"), normalizers.Strip(left=False, right=True),
                        normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]))
    t.add_tokens([AddedToken("world", normalized=True, single_word=True),
                  AddedToken("<x>", normalized=True, lstrip=True, rstrip=True),
                  AddedToken("##", normalized=True), AddedToken("\u2581the", normalized=False)])
    V.append(("normalizers_byte_fallback", t, add_byte_tokens))

    t = train_small(train, models.BPE(ignore_merges=True), specials=["<|pad|>", "<|a|>", "<|b|>"],
                    pre_tokenizer=pre_tokenizers.Sequence([
                        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated"),
                        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)]))
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|a|> $A <|b|> <|b|>", pair="<|a|> $A <|b|> $B:1",
                                      special_tokens=[("<|a|>", t.token_to_id("<|a|>")),
                                                      ("<|b|>", t.token_to_id("<|b|>"))])])
    t.enable_truncation(max_length=16, direction="left")
    t.enable_padding(length=24, pad_id=0, pad_token="<|pad|>", direction="left")

    def ignore_merges(d):
        d["model"]["ignore_merges"] = True

    V.append(("bytelevel_prefix_seq_trunc_left", t, ignore_merges))

    t = train_small(train, models.BPE(), specials=["<pad>"], normalizer=normalizers.ByteLevel(),
                    pre_tokenizer=pre_tokenizers.Split(Regex("\u0120?[^\u0120\u010a]+|[\u0120\u010a]+"), "isolated"))
    t.add_special_tokens([AddedToken("<sep>", special=True, normalized=False, lstrip=True, rstrip=True)])
    V.append(("bytelevel_normalizer", t, None))
    return V


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    fx = os.path.join(root, "tests", "fixtures")
    train = lmsys_texts(os.path.join(fx, "data", "lmsys-train-sample.csv"))
    sample = lmsys_texts(os.path.join(fx, "data", "lmsys-sample.csv"))
    rnd = random.Random(1234)
    picked = rnd.sample([t for t in sample if t], 20)
    # One long text too: without a pre-tokenizer it is a single ~20 kB BPE word for Gemma.
    texts = EDGE_CASES + picked + ["\n\n".join(picked)[:20000]]

    llama = make_llama(train, os.path.join(fx, "models", "tiny-llama", "tokenizer.json"))
    gemma = make_gemma(train, os.path.join(fx, "models", "tiny-gemma2", "tokenizer.json"))
    assert llama.get_vocab_size() <= 1024 and gemma.get_vocab_size() <= 1024
    assert [llama.token_to_id(t) for t in ("<|pad|>", "<|begin_of_text|>", "<|end_of_text|>")] == [0, 1, 2]
    assert [gemma.token_to_id(t) for t in ("<pad>", "<eos>", "<bos>")] == [0, 1, 2]
    write_golden(os.path.join(fx, "tokenizers", "golden-tiny-llama.jsonl"), llama, texts)
    write_golden(os.path.join(fx, "tokenizers", "golden-tiny-gemma.jsonl"), gemma, texts)

    # Variants: shorter texts keep the goldens small; the edge cases all stay.
    vtexts = EDGE_CASES + [t[:300] for t in picked[:8]] + [
        "a <mask> b<mask>c [MASK]  x [NL] y[NL]z ing sing ing\tworld worlds <x>  q  <x>r",
        "hello world hello  world ▁the the <sep>  <sep>x 12-34-56 a-b--c",
    ]
    vdir = os.path.join(fx, "tokenizers", "variants")
    gpath = os.path.join(fx, "tokenizers", "golden-variants.jsonl")
    open(gpath, "w").close()
    vs = variants(train)
    for name, tok, edit in vs:
        tok = save(tok, os.path.join(vdir, name + ".json"), edit)
        write_golden(gpath, tok, vtexts, name)
    print("wrote tiny-llama, tiny-gemma2 and", len(vs), "variants")


if __name__ == "__main__":
    sys.exit(main())

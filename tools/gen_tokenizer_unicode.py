#!/usr/bin/env python3
"""gen_tokenizer_unicode.py: write workers/lm/tokenizer/tok_unicode_data.c.

HF `tokenizers` matches Split / Replace patterns with Oniguruma, whose Unicode tables are newer
(Unicode 16 in tokenizers 0.23) than the system PCRE2's (Unicode 14 in PCRE2 10.42). For each
class the native tokenizer rewrites (tok_regex.c), this script lists the code points that
Oniguruma, as HF runs it, puts in the class and PCRE2 does not; the tokenizer adds them to
the class. Adding is always safe: on a PCRE2 with newer tables the ranges are already inside.

Two pre-tokenizers test chars with Rust code instead of a regex, each with its own Unicode
tables: Punctuation and BertPreTokenizer (the unicode_categories crate, older than PCRE2's),
and Digits (char::is_numeric, newer). For those this script writes the complete class, read
from what HF actually splits, so that they do not depend on PCRE2's tables at all.

Uses HF `tokenizers` from pip and libpcre2-8 (ctypes) only to MAKE this header; neither is
consulted at run time, and Python is never a runtime dependency. Rerun after upgrading either:
    python3 tools/gen_tokenizer_unicode.py > workers/lm/tokenizer/tok_unicode_data.c
"""
import ctypes
import ctypes.util
import sys

from tokenizers import Regex, pre_tokenizers
import tokenizers

# Classes as Oniguruma spells them -> the PCRE2 class body tok_regex.c uses for them.
CLASSES = [(f"\\p{{{gc}}}", f"\\p{{{gc}}}", gc) for gc in (
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
    "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp")]
CLASSES += [("\\w", "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}]", "w"), ("\\d", "\\p{Nd}", "d"),
            ("\\p{Alphabetic}", "\\p{Alphabetic}", "Alphabetic")]

CPS = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
ALL = "".join(chr(c) for c in CPS)


def onig_set(pattern):
    """Code points HF's Split(Regex(pattern)) matches, one char at a time."""
    pieces = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(ALL)
    kept = bytearray(len(CPS))
    for _, (a, b) in pieces:
        kept[a:b] = b"\x01" * (b - a)
    return {CPS[i] for i in range(len(CPS)) if not kept[i]}


class Pcre2:
    def __init__(self):
        lib = ctypes.CDLL(ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0")
        lib.pcre2_compile_8.restype = ctypes.c_void_p
        lib.pcre2_compile_8.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                                        ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
        lib.pcre2_match_data_create_8.restype = ctypes.c_void_p
        lib.pcre2_match_data_create_8.argtypes = [ctypes.c_uint32, ctypes.c_void_p]
        lib.pcre2_match_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                                      ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
        lib.pcre2_get_ovector_pointer_8.restype = ctypes.c_void_p
        lib.pcre2_get_ovector_pointer_8.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.md = lib.pcre2_match_data_create_8(1, None)
        self.all = ALL.encode()
        self.cp_at, off = {}, 0
        for c in CPS:
            self.cp_at[off] = c
            off += len(chr(c).encode())

    def set(self, body):
        """Code points the class body matches: one pass of matches over all code points."""
        UTF, UCP, NO_UTF_CHECK = 0x00080000, 0x00020000, 0x40000000
        pat = ("[" + body + "]" if not body.startswith("[") else body).encode()
        ec, eo = ctypes.c_int(), ctypes.c_size_t()
        code = self.lib.pcre2_compile_8(pat, len(pat), UTF | UCP, ctypes.byref(ec), ctypes.byref(eo), None)
        if not code:
            raise SystemExit(f"PCRE2 cannot compile {pat!r}")
        ov = ctypes.cast(self.lib.pcre2_get_ovector_pointer_8(self.md), ctypes.POINTER(ctypes.c_size_t))
        out, pos = set(), 0
        while self.lib.pcre2_match_8(code, self.all, len(self.all), pos, NO_UTF_CHECK, self.md, None) >= 0:
            out.add(self.cp_at[ov[0]])
            pos = ov[1]
        return out

def predicate_set(pre_tokenizer):
    """Code points a char-predicate pre-tokenizer isolates: each char sits between two 'x'
    (which no predicate here selects) and is selected iff it comes out as its own piece."""
    text = "x" + "x".join(ALL) + "x"
    pieces = pre_tokenizer.pre_tokenize_str(text)
    alone = {a for _, (a, b) in pieces if b == a + 1 and a % 2 == 1}
    return {CPS[(a - 1) // 2] for a in alone}


def ranges(s):
    r = []
    for c in sorted(s):
        if r and r[-1][1] == c - 1:
            r[-1][1] = c
        else:
            r.append([c, c])
    return r


def body(s):
    return "".join(f"\\\\x{{{a:X}}}" if a == b else f"\\\\x{{{a:X}}}-\\\\x{{{b:X}}}" for a, b in ranges(s))


def main():
    pc = Pcre2()
    print("/* tok_unicode_data.c: Unicode class data for tok_onig.c and tok_config.c, read from what HF")
    print(f" * `tokenizers` {tokenizers.__version__} matches and what the system PCRE2 matches.")
    print(" * Generated by tools/gen_tokenizer_unicode.py; do not edit. */")
    print('#include "tok_internal.h"\n')
    print("/* Per class: the code points Oniguruma puts in it and PCRE2 does not, as class-body ranges. */")
    print("const tok_uni_extra_t TOK_UNI_EXTRA[] = {")
    for onig, pbody, name in CLASSES:
        print(f'    {{"{name}", "{body(onig_set(onig) - pc.set(pbody))}"}},')
    print("};")
    print("const size_t TOK_UNI_EXTRA_N = sizeof TOK_UNI_EXTRA / sizeof *TOK_UNI_EXTRA;\n")
    print("/* Complete class bodies of HF's char predicates. */")
    punct = predicate_set(pre_tokenizers.Punctuation(behavior="isolated"))
    numeric = predicate_set(pre_tokenizers.Digits(individual_digits=True))
    print(f'const char TOK_HF_PUNCT[] = "{body(punct)}";')
    print(f'const char TOK_HF_NUMERIC[] = "{body(numeric)}";')


if __name__ == "__main__":
    sys.exit(main())

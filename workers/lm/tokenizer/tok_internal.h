/* tok_internal.h: the tokenizer's private types, shared by its source files and nobody else.
 *
 * The pipeline mirrors Hugging Face `tokenizers` (TokenizerImpl::encode) stage by stage, so that
 * each stage can be checked against the Rust code it imitates:
 *   added tokens (raw text) -> normalizer -> added tokens (normalized) -> pre-tokenizer -> BPE
 *   -> truncation -> post-processor -> padding.
 * Each stage's configuration is parsed once at load into the plain structs below; encode only
 * reads them, which is what makes a loaded tokenizer safe to share between threads. Per-call
 * state lives in tok_scratch_t.
 *
 * Deliberately absent: offsets, type ids, attention masks, pair encodings and decoding. The
 * worker needs ids only.
 */
#ifndef LM_TOK_INTERNAL_H
#define LM_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stddef.h>

#include "check.h"
#include "tokenizer.h"

/* ===================================================================================== */
/* Hash maps (tok_map.c)                                                                  */
/* ===================================================================================== */

/* A fast 64-bit non-cryptographic hash of p[0..n) (the key hash of strmap_t). */
uint64_t tok_hash(const void *p, size_t n);

/* String -> non-negative int32 map with its own key pool. Open addressing, linear probing,
 * load factor <= 1/2. Slots keep the first 8 key bytes so that most lookups cost one cache
 * miss, not two (the merges of a 256k vocab are resolved with ~1.7M lookups at load). Later puts of an existing key overwrite its value (serde's HashMap
 * behaviour for repeated keys). */
typedef struct {
    uint32_t hash;   // low 32 bits of tok_hash(key), a fast reject
    int32_t val;     // value; -1 marks an empty slot
    uint32_t len;    // key length in bytes
    uint32_t off;    // key offset in pool
    uint64_t head;   // the key's first 8 bytes, zero-padded: short keys never touch the pool
} strmap_slot_t;

typedef struct {
    strmap_slot_t *slots;  // (mask + 1) slots
    size_t mask;           // capacity - 1, capacity a power of two
    size_t n;              // keys stored
    char *pool;            // key bytes, back to back
    size_t pool_len, pool_cap;  // bytes used / allocated in pool
} strmap_t;

/* Initialise an empty map sized for `expected` keys without growing (load <= 1/2); aborts on OOM. */
void strmap_init(strmap_t *m, size_t expected);
/* Free the slots and key pool and zero *m. */
void strmap_free(strmap_t *m);
/* Value of key, or -1. */
int32_t strmap_get(const strmap_t *m, const char *key, size_t len);
/* The same with h = tok_hash(key, len) computed by the caller, and a prefetch of h's slot:
 * batched loading issues the prefetches of many lookups before doing any of them. */
int32_t strmap_get_h(const strmap_t *m, const char *key, size_t len, uint64_t h);
/* Prefetch the slot that hash h probes first (h = tok_hash(key, len)). */
void strmap_prefetch(const strmap_t *m, uint64_t h);
/* Insert or overwrite. val must be >= 0. Returns 0, or -1 when the pool would pass 4 GiB. */
int strmap_put(strmap_t *m, const char *key, size_t len, int32_t val);

/* (left id, right id) -> (rank, merged id): the BPE merge table. Load factor <= 3/4 keeps a
 * 580k-merge table at 16 MiB. */
typedef struct {
    uint64_t key;    // (uint64_t)left << 32 | right; UINT64_MAX marks an empty slot
    uint32_t rank;   // position in model.merges (lower merges first)
    int32_t id;      // id of the merged token
} pairmap_slot_t;

typedef struct {
    pairmap_slot_t *slots;  // (mask + 1) slots
    size_t mask;            // capacity - 1, capacity a power of two
    size_t n;               // pairs stored
} pairmap_t;

/* Initialise an empty merge table sized for `expected` pairs without growing (load <= 3/4). */
void pairmap_init(pairmap_t *m, size_t expected);
/* Free the slots and zero *m. */
void pairmap_free(pairmap_t *m);
/* Insert or overwrite (a later duplicate merge wins, as in HF's HashMap collect). */
void pairmap_put(pairmap_t *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
/* Prefetch the first slot probed for the pair (a, b), for writing. */
void pairmap_prefetch(const pairmap_t *m, int32_t a, int32_t b);
/* Slot of (a, b), or NULL. */
static inline const pairmap_slot_t *pairmap_get(const pairmap_t *m, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & m->mask;
    for (;;) {
        const pairmap_slot_t *s = &m->slots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & m->mask;
    }
}

/* ===================================================================================== */
/* Unicode helpers (tok_unicode.c)                                                        */
/* ===================================================================================== */

/* Length of the UTF-8 sequence starting with byte b (valid UTF-8 assumed): 1..4. */
static inline size_t utf8_len(unsigned char b) {
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}
/* Decode the code point at s (valid UTF-8 assumed); *n receives its length. */
uint32_t utf8_decode(const char *s, size_t *n);
/* Encode cp into out (4 bytes room). Returns the length. */
size_t utf8_encode(uint32_t cp, char *out);
/* Length of the valid UTF-8 prefix of s[0..len). */
size_t utf8_valid_prefix(const char *s, size_t len);
/* Rust's char::is_whitespace (the Unicode White_Space property). */
int uni_is_white_space(uint32_t cp);
/* GPT-2's bytes_to_unicode: UTF-8 of the char that stands for byte b (2 bytes at most). */
typedef struct {
    char s[2];       // the UTF-8 bytes
    uint8_t len;     // 1 or 2
} bytechar_t;
/* The 256-entry byte -> char table, built once (thread-safe, pthread_once); never freed. */
extern const bytechar_t *tok_bytechars(void);

/* ===================================================================================== */
/* Regular expressions (tok_regex.c)                                                      */
/* ===================================================================================== */

/* A compiled pattern. Immutable after compilation; match state lives in tok_scratch_t. */
typedef struct {
    pcre2_code *code;  // NULL when unused
    int jit;           // 1 when JIT-compiled (then pcre2_jit_match is used)
} tok_regex_t;

/* Compile pattern[0..len) as Oniguruma (HF's engine) would read it; literal=1 matches the
 * text verbatim (HF's escaped String patterns). `where` names the JSON field for errors.
 * Returns 0, or -1 with err set. */
int tok_regex_compile(tok_regex_t *re, const char *pattern, size_t len, int literal, const char *where,
                      err_t *err);
/* Free the compiled pattern and set re->code to NULL; safe on an unused or freed re. */
void tok_regex_free(tok_regex_t *re);
/* Generated Unicode data (tok_unicode_data.c, tools/gen_tokenizer_unicode.py). */
typedef struct {
    const char *name;   // a general category, "Alphabetic", "w" (for \w) or "d" (for \d)
    const char *extra;  // PCRE2 class-body ranges Oniguruma includes and PCRE2 does not
} tok_uni_extra_t;
extern const tok_uni_extra_t TOK_UNI_EXTRA[];
extern const size_t TOK_UNI_EXTRA_N;
extern const char TOK_HF_PUNCT[];    // class body: HF's punctuation test (Punctuation, Bert)
extern const char TOK_HF_NUMERIC[];  // class body: Rust char::is_numeric as HF runs it (Digits)

/* Rewrite Oniguruma (Ruby syntax) pattern p[0..n) into PCRE2 syntax with the same matches
 * (tok_onig.c). Returns a malloc'd NUL-terminated pattern, or NULL with err set. */
char *onig_to_pcre2(const char *p, size_t n, size_t *out_len, const char *where, err_t *err);

/* ===================================================================================== */
/* Configuration parsed from tokenizer.json                                               */
/* ===================================================================================== */

typedef enum { NORM_REPLACE, NORM_PREPEND, NORM_STRIP, NORM_BYTELEVEL } norm_kind_t;

/* One normalizer; a Sequence is flattened into consecutive steps. */
typedef struct {
    norm_kind_t kind;   // which normalizer this step is
    tok_regex_t re;     // NORM_REPLACE: the pattern
    char *str;          // NORM_REPLACE: replacement; NORM_PREPEND: the prefix
    size_t str_len;     // bytes in str
    int left, right;    // NORM_STRIP: which ends to strip
} norm_step_t;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior_t;
typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE } pre_kind_t;
typedef enum { PREPEND_ALWAYS, PREPEND_NEVER, PREPEND_FIRST } prepend_scheme_t;

/* One pre-tokenizer; a Sequence is flattened into consecutive steps. Split-like pre-tokenizers
 * (Split, Digits, Punctuation, Whitespace, WhitespaceSplit, CharDelimiterSplit) are all
 * PRE_SPLIT with the equivalent pattern. */
typedef struct {
    pre_kind_t kind;              // which pre-tokenizer this step is
    tok_regex_t re;               // PRE_SPLIT; PRE_BYTELEVEL with use_regex; PRE_METASPACE split
    split_behavior_t behavior;    // PRE_SPLIT
    int invert;                   // PRE_SPLIT: matches and gaps swap roles
    int add_prefix_space;         // PRE_BYTELEVEL
    int use_regex;                // PRE_BYTELEVEL; PRE_METASPACE: split on the replacement
    char rep[4];                  // PRE_METASPACE: UTF-8 of the replacement char
    size_t rep_len;               // bytes in rep (1..4)
    prepend_scheme_t prepend;     // PRE_METASPACE
} pre_step_t;

/* Flags of an added token, as in HF's AddedToken. */
typedef struct {
    uint8_t single_word, lstrip, rstrip, normalized, special;  // each 0 or 1, HF's field of the same name
} added_flags_t;

/* A byte trie over added-token contents, for leftmost-longest matching. */
typedef struct {
    int32_t first_child;   // node index, -1 none
    int32_t next_sibling;  // node index, -1 none
    int32_t pattern;       // index into added_trie_t.ids/flags when a content ends here, else -1
    uint8_t byte;          // edge label from the parent
} trie_node_t;

typedef struct {
    trie_node_t *nodes;    // nodes[0] is the root
    size_t n_nodes, cap_nodes;  // nodes used / allocated
    int32_t *ids;          // (n_patterns) token id of each pattern
    added_flags_t *flags;  // (n_patterns) flags that apply to each pattern's id
    size_t n_patterns, cap_patterns;  // patterns (ids, flags) used / allocated
    uint8_t first[256];    // 1 when some pattern starts with this byte
} added_trie_t;

/* BPE model (HF models::bpe::BPE). */
typedef struct {
    strmap_t vocab;           // token -> id, exactly as in model.vocab
    size_t vocab_len;         // number of vocab entries (HF get_vocab_size)
    pairmap_t merges;         // (left, right) -> (rank, merged id)
    char *unk_token;          // NULL when model.unk_token is null
    int32_t unk_id;           // id of unk_token, -1 when it is missing from the vocab
    char *prefix;             // continuing_subword_prefix or NULL
    size_t prefix_len;        // bytes in prefix
    char *suffix;             // end_of_word_suffix or NULL
    size_t suffix_len;        // bytes in suffix
    int fuse_unk, byte_fallback, ignore_merges;  // HF BPE options, each 0 or 1
    int32_t byte_ids[256];    // byte_fallback: id of "<0xNN>", -1 when absent
    int32_t *cp_id;           // (BPE_CP_TABLE) vocab id of each BMP code point alone, -1 none;
                              // only without prefix/suffix (else NULL)
    pairmap_t bigrams;        // set of (cp, next cp) found side by side in some vocab token;
                              // built with cp_id (rank and id unused)
    uint64_t uid;             // unique per loaded model (never reused, unlike pointers)
} bpe_model_t;

#define BPE_CP_TABLE 0x10000
#define BPE_PCACHE_BITS 12
#define BPE_PCACHE (1u << BPE_PCACHE_BITS)

/* Truncation and padding (HF TruncationParams / PaddingParams), single sequences only. */
typedef struct {
    int enabled;        // truncation configured (not null)
    size_t max_length;  // ids kept at most, special tokens included
    size_t stride;      // HF asserts stride < the length it truncates to
    int left;           // direction Left: keep the last max_length ids
    int only_second;    // strategy OnlySecond: an error for single sequences, as in HF
} trunc_cfg_t;

typedef struct {
    int enabled;        // padding configured (not null)
    int fixed;          // strategy Fixed(size) rather than BatchLongest
    size_t size;        // Fixed size
    size_t multiple;    // pad_to_multiple_of, 0 none
    int left;           // direction Left
    int32_t pad_id;     // id appended (or prepended) as padding
} pad_cfg_t;

struct tokenizer {
    char *name;                   // path or name, for errors
    bpe_model_t bpe;              // the vocabulary and merges
    strmap_t added;               // added-token content -> id
    added_trie_t raw_trie;        // tokens matched before normalisation (normalized: false)
    added_trie_t norm_trie;       // tokens matched after it (normalized: true), normalised
    tok_regex_t word_re;          // Rust regex \w as one char class; for single_word tokens
    norm_step_t *norm;            // (n_norm) normalizer steps
    size_t n_norm;                // entries in norm
    pre_step_t *pre;              // (n_pre) pre-tokenizer steps
    size_t n_pre;                 // entries in pre
    int32_t *prefix, *suffix;     // ids the post-processor adds around a single sequence
    size_t n_prefix, n_suffix;    // entries in prefix, suffix
    trunc_cfg_t trunc;            // "truncation", single sequences
    pad_cfg_t pad;                // "padding", single sequences
    size_t n_ids;                 // largest id + 1
    int has_regex;                // some stage needs PCRE2 match data at encode time
};

/* ===================================================================================== */
/* Loading helpers (tokenizer_json.c, tok_config.c, added_tokens.c)                        */
/* ===================================================================================== */

#include <jansson.h>

/* Parse normalizer / pre_tokenizer / post_processor / decoder / truncation / padding into tok.
 * Each returns 0, or -1 with err naming the field. */
int tok_config_normalizer(tokenizer_t *tok, json_t *j, err_t *err);
/* Parse "pre_tokenizer" (null allowed) into tok->pre. Returns 0, or -1 with err naming the field. */
int tok_config_pre_tokenizer(tokenizer_t *tok, json_t *j, err_t *err);
/* Parse "post_processor" into tok->prefix / tok->suffix ids. Returns 0, or -1 with err set. */
int tok_config_post_processor(tokenizer_t *tok, json_t *j, err_t *err);
/* Check that "decoder" is a known kind; decoding is not implemented, so nothing is kept. Returns 0,
 * or -1 with err set. */
int tok_config_decoder(json_t *j, err_t *err);
/* Parse "truncation" and "padding" (either may be null) into tok->trunc / tok->pad. Returns 0, or
 * -1 with err set. */
int tok_config_truncation_padding(tokenizer_t *tok, json_t *trunc, json_t *pad, err_t *err);
/* Free the normalizer and pre-tokenizer steps and the post-processor ids; leaves the fields zeroed. */
void tok_config_free(tokenizer_t *tok);

/* Build tok->added and the two tries from the "added_tokens" array, assigning ids the way HF's
 * AddedVocabulary::add_tokens does. Needs the model and normalizer loaded. Returns 0 or -1. */
int added_tokens_load(tokenizer_t *tok, json_t *arr, err_t *err);
/* Free the trie's arrays and zero *t. */
void added_trie_free(added_trie_t *t);

/* ===================================================================================== */
/* Encoding (encode.c and the stage files)                                                */
/* ===================================================================================== */

/* A piece of the text on its way through the pipeline: bytes in the scratch arena, plus the
 * token id when an added token already claimed it. */
typedef struct {
    size_t off, len;   // bytes in tok_scratch_t.buf
    int32_t id;        // added-token id, or -1 while the piece still needs the model
    uint8_t at_start;  // the piece starts at offset 0 of the original text (Metaspace "first")
} piece_t;

typedef struct {
    size_t start, end; // byte range inside the piece being split
} span_t;

/* A merge candidate on the heap: the merge's rank, the index of its left symbol, the merged id. */
typedef struct { uint32_t rank, pos; int32_t id; } bpe_merge_t;
/* A cached pair lookup: key is (left << 32 | right), with the rank and merged id found. */
typedef struct { uint64_t key; uint32_t rank; int32_t id; } bpe_pcache_t;  // id -1: no merge
/* A symbol of the word being merged: its id (-1 once merged away) and its list neighbours (-1
 * none). */
typedef struct { int32_t id; int32_t prev, next; } bpe_sym_t;

/* Everything one encode call allocates; freed at its end. */
typedef struct {
    char *buf;                 // arena of piece bytes
    size_t len, cap;           // bytes used / allocated in buf
    piece_t *pieces, *next;    // current list and the one being built
    size_t n, cap_pieces, n_next, cap_next;  // entries used / allocated in pieces and next
    span_t *spans;             // spans of one split
    size_t n_spans, cap_spans;  // entries used / allocated in spans
    int *is_match;             // (cap_spans) is each span a match
    bpe_sym_t *syms;           // BPE symbols of one word
    size_t cap_syms;           // entries allocated in syms
    bpe_merge_t *heap;         // BPE merge candidates
    size_t cap_heap;           // entries allocated in heap
    bpe_pcache_t *pcache;      // (BPE_PCACHE) recent merge lookups, for long words
    uint64_t pcache_owner;     // uid of the tokenizer whose merges pcache holds; 0 = stale
    char *word;                // one BPE char with prefix/suffix attached
    size_t cap_word;           // bytes allocated in word
    pcre2_match_data *md;      // NULL until a regex is needed
    pcre2_match_context *mctx;  // match context carrying jit_stack
    pcre2_jit_stack *jit_stack; // JIT stack, 32 KiB growing to 64 MiB
} tok_scratch_t;

/* Reserve room for n more bytes in the arena; returns the write position. */
char *scratch_reserve(tok_scratch_t *s, size_t n);
/* Append a piece to the list being built (s->next). */
void scratch_emit(tok_scratch_t *s, size_t off, size_t len, int32_t id, int at_start);
/* Swap the lists: the built list becomes current. */
void scratch_swap(tok_scratch_t *s);
/* Append text[0..len) to the arena with every maximal invalid UTF-8 subpart replaced by
 * U+FFFD (String::from_utf8_lossy). Returns the arena offset; *out_len gets the length. */
size_t utf8_lossy_to_arena(tok_scratch_t *s, const char *text, size_t len, size_t *out_len);

/* Find matches of re in subj[0..len) exactly as onig's find_iter (used by HF SysRegex),
 * then mark matches and gaps, HF Pattern::find_matches style, into s->spans / s->is_match.
 * Returns 0, or -1 with err set (PCRE2 match failure such as a resource limit). */
int regex_find_matches(const tok_regex_t *re, tok_scratch_t *s, const char *subj, size_t len, err_t *err);

/* Split the piece p (must have id < 0) by re with an HF SplitDelimiterBehavior, emitting the
 * non-empty parts into s->next. Returns 0 or -1. */
int split_piece(const tok_regex_t *re, split_behavior_t behavior, int invert, tok_scratch_t *s,
                const piece_t *p, err_t *err);

/* Stage entry points: each rewrites the current piece list (s->pieces). */
int added_split(const tokenizer_t *tok, const added_trie_t *trie, tok_scratch_t *s, err_t *err);
/* Run the normalizer steps on every piece that has no id yet, then split out added tokens matched
 * after normalisation. Returns 0, or -1 with err set. */
int normalize_pieces(const tokenizer_t *tok, tok_scratch_t *s, err_t *err);
/* Normalise a standalone string (added-token contents at load). Returns a malloc'd string. */
char *normalize_string(const tokenizer_t *tok, const char *str, size_t len, size_t *out_len, err_t *err);
/* Run the pre-tokenizer steps on every piece that has no id yet. Returns 0, or -1 with err set. */
int pretokenize_pieces(const tokenizer_t *tok, tok_scratch_t *s, err_t *err);
/* Append the BPE ids of word[0..len) to out. Returns 0, or -1 with err set. */
int bpe_encode_word(const bpe_model_t *m, tok_scratch_t *s, const char *word, size_t len, ids_t *out,
                    err_t *err);
/* Truncate, add the post-processor's ids and pad out[base..], as HF post_process does. */
int post_process(const tokenizer_t *tok, ids_t *out, size_t base, int add_special, err_t *err);

/* Free everything the scratch allocated (arena, lists, BPE buffers, PCRE2 state). */
void scratch_free(tok_scratch_t *s);

#endif

/* tok_config.c: tokenizer.json's normalizer, pre_tokenizer, post_processor, decoder,
 * truncation and padding sections, read into the plain structs of tok_internal.h.
 *
 * Sequences are flattened (applying a Sequence is applying its members in order, which is all
 * HF does). Split-like pre-tokenizers become PRE_SPLIT steps with the pattern HF's char
 * predicate or regex amounts to. Post-processors reduce to ids before and after one sequence.
 *
 * Every type we do not implement is rejected with the JSON path of the field, so that an
 * unsupported tokenizer fails at load instead of giving different ids. Decoders are only
 * checked for known types: encode never decodes.
 */
#include <string.h>

#include "tok_internal.h"

/* ---------------------------------------------------------------- JSON helpers ------ */

/* The "type" string of the object j (borrowed from j). Returns NULL with err set when j is not an
 * object or has no string type. */
static const char *get_type(json_t *j, const char *path, err_t *err) {
    if (!json_is_object(j)) { err_fmt(err, "%s: expected an object or null", path); return NULL; }
    json_t *t = json_object_get(j, "type");
    if (!json_is_string(t)) { err_fmt(err, "%s.type: expected a string", path); return NULL; }
    return json_string_value(t);
}

/* Read boolean member key of j into *out, dflt when absent or null. Returns 0, or -1 with err
 * naming path.key. */
static int get_bool(json_t *j, const char *key, int dflt, int *out, const char *path, err_t *err) {
    json_t *v = json_object_get(j, key);
    *out = dflt;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return err_fmt(err, "%s.%s: expected true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* Member key of j when it is an array (borrowed), else NULL with err set. */
static json_t *get_array(json_t *j, const char *key, const char *path, err_t *err) {
    json_t *v = json_object_get(j, key);
    if (!json_is_array(v)) err_fmt(err, "%s.%s: expected an array", path, key);
    return json_is_array(v) ? v : NULL;
}

/* Read the required member key of j, an integer in [0, INT32_MAX], into *out. Returns 0, or -1 with
 * err set. */
static int get_size(json_t *j, const char *key, size_t *out, const char *path, err_t *err) {
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return err_fmt(err, "%s.%s: expected a non-negative integer", path, key);
    *out = (size_t)json_integer_value(v);
    return 0;
}

/* path + ".field[i]" into buf. A path cut short by the buffer only shortens an error message. */
static const char *subpath(char *buf, size_t n, const char *path, const char *field, size_t i) {
    int w = snprintf(buf, n, "%s.%s[%zu]", path, field, i);
    if (w < 0) buf[0] = '\0';
    return buf;
}

/* A {"String": s} or {"Regex": r} pattern, compiled. */
static int get_pattern(json_t *j, tok_regex_t *re, const char *path, err_t *err) {
    char where[512];
    if (snprintf(where, sizeof where, "%s.pattern", path) < 0) where[0] = '\0';
    json_t *p = json_object_get(j, "pattern");
    json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    if (json_is_string(s)) return tok_regex_compile(re, json_string_value(s), json_string_length(s), 1, where, err);
    if (json_is_string(r)) return tok_regex_compile(re, json_string_value(r), json_string_length(r), 0, where, err);
    return err_fmt(err, "%s: expected {\"String\": ...} or {\"Regex\": ...}", where);
}

/* Known types that we deliberately do not implement, with the reason shown to the user. */
static int reject(const char *path, const char *type, const char *why, err_t *err) {
    return err_fmt(err, "%s.type: \"%s\" is not supported (%s); refusing rather than giving different ids",
                   path, type, why);
}

/* ---------------------------------------------------------------- normalizer -------- */

/* Append a zeroed normalizer step to tok and return it (valid until the next add_norm). */
static norm_step_t *add_norm(tokenizer_t *tok) {
    tok->norm = xrealloc(tok->norm, (tok->n_norm + 1) * sizeof *tok->norm);
    norm_step_t *st = &tok->norm[tok->n_norm++];
    memset(st, 0, sizeof *st);
    return st;
}

/* Parses one normalizer or pre-tokenizer step (and what it nests) at `path`. */
typedef int (*step_parse_fn)(tokenizer_t *tok, json_t *j, const char *path, int depth, err_t *err);

/* A "Sequence" step: parse each element of j[key] ("normalizers", "pretokenizers") with parse,
 * one nesting level deeper, naming each as path.key[i]. Returns 0, or -1 with err set. */
static int parse_sequence(tokenizer_t *tok, json_t *j, const char *key, const char *path, int depth,
                          step_parse_fn parse, err_t *err) {
    json_t *a = get_array(j, key, path, err);
    if (!a) return -1;
    char sub[512];
    for (size_t i = 0; i < json_array_size(a); i++) {
        subpath(sub, sizeof sub, path, key, i);
        if (parse(tok, json_array_get(a, i), sub, depth + 1, err) < 0) return -1;
    }
    return 0;
}

/* Append the normalizer j (a Sequence is flattened, at most 16 deep) to tok->norm.
 * Returns 0, or -1 with err naming the path and the offending field. */
static int parse_norm(tokenizer_t *tok, json_t *j, const char *path, int depth, err_t *err) {
    if (!j || json_is_null(j)) return 0;
    if (depth > 16) return err_fmt(err, "%s: Sequences nested too deeply", path);
    const char *type = get_type(j, path, err);
    if (!type) return -1;
    if (!strcmp(type, "Sequence")) return parse_sequence(tok, j, "normalizers", path, depth, parse_norm, err);
    if (!strcmp(type, "Replace")) {
        json_t *c = json_object_get(j, "content");
        if (!json_is_string(c)) return err_fmt(err, "%s.content: expected a string", path);
        norm_step_t *st = add_norm(tok);
        st->kind = NORM_REPLACE;
        st->str_len = json_string_length(c);
        st->str = xmalloc(st->str_len + 1);
        memcpy(st->str, json_string_value(c), st->str_len + 1);
        tok->has_regex = 1;
        return get_pattern(j, &st->re, path, err);
    }
    if (!strcmp(type, "Prepend")) {
        json_t *c = json_object_get(j, "prepend");
        if (!json_is_string(c)) return err_fmt(err, "%s.prepend: expected a string", path);
        norm_step_t *st = add_norm(tok);
        st->kind = NORM_PREPEND;
        st->str_len = json_string_length(c);
        st->str = xmalloc(st->str_len + 1);
        memcpy(st->str, json_string_value(c), st->str_len + 1);
        return 0;
    }
    if (!strcmp(type, "Strip")) {
        int l = 1, r = 1;
        if (get_bool(j, "strip_left", 1, &l, path, err) < 0 || get_bool(j, "strip_right", 1, &r, path, err) < 0)
            return -1;
        norm_step_t *st = add_norm(tok);
        st->kind = NORM_STRIP;
        st->left = l;
        st->right = r;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        add_norm(tok)->kind = NORM_BYTELEVEL;
        return 0;
    }
    if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD") ||
        !strcmp(type, "Precompiled") || !strcmp(type, "Nmt") || !strcmp(type, "StripAccents"))
        return reject(path, type, "it needs Unicode normalisation tables", err);
    if (!strcmp(type, "Lowercase") || !strcmp(type, "BertNormalizer"))
        return reject(path, type, "it needs full Unicode case mapping", err);
    return reject(path, type, "unknown normalizer", err);
}

int tok_config_normalizer(tokenizer_t *tok, json_t *j, err_t *err) {
    return parse_norm(tok, j, "normalizer", 0, err);
}

/* ---------------------------------------------------------------- pre_tokenizer ----- */

// Rust regex's Unicode \w (the Whitespace pre-tokenizer).
#define RUST_W "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Append a zeroed pre-tokenizer step of kind to tok and return it (valid until the next add_pre). */
static pre_step_t *add_pre(tokenizer_t *tok, pre_kind_t kind) {
    tok->pre = xrealloc(tok->pre, (tok->n_pre + 1) * sizeof *tok->pre);
    pre_step_t *st = &tok->pre[tok->n_pre++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    return st;
}

/* Append a PRE_SPLIT step splitting on re (literal: verbatim text) with behavior b. Returns 0, or
 * -1 with err set when re does not compile. */
static int add_split(tokenizer_t *tok, const char *re, int literal, split_behavior_t b, int invert,
                     const char *path, err_t *err) {
    pre_step_t *st = add_pre(tok, PRE_SPLIT);
    st->behavior = b;
    st->invert = invert;
    tok->has_regex = 1;
    return tok_regex_compile(&st->re, re, strlen(re), literal, path, err);
}

/* A split on one char of a generated class body (HF's char-predicate pre-tokenizers). */
static int add_class_split(tokenizer_t *tok, const char *class_body, split_behavior_t b, const char *path,
                           err_t *err) {
    size_t n = strlen(class_body);
    char *re = xmalloc(n + 3);
    re[0] = '[';
    memcpy(re + 1, class_body, n);
    memcpy(re + 1 + n, "]", 2);
    int rc = add_split(tok, re, 0, b, 0, path, err);
    free(re);
    return rc;
}

/* Parse the "behavior" member of j into *b. Returns 0, or -1 with err set. */
static int get_behavior(json_t *j, split_behavior_t *b, const char *path, err_t *err) {
    json_t *v = json_object_get(j, "behavior");
    const char *s = json_string_value(v);
    if (!s) return err_fmt(err, "%s.behavior: expected a string", path);
    if (!strcmp(s, "Removed")) *b = SPLIT_REMOVED;
    else if (!strcmp(s, "Isolated")) *b = SPLIT_ISOLATED;
    else if (!strcmp(s, "MergedWithPrevious")) *b = SPLIT_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *b = SPLIT_MERGED_NEXT;
    else if (!strcmp(s, "Contiguous")) *b = SPLIT_CONTIGUOUS;
    else return err_fmt(err, "%s.behavior: unknown behavior \"%s\"", path, s);
    return 0;
}

/* Append a Metaspace pre-tokenizer: one-character replacement, prepend_scheme (or the legacy
 * add_prefix_space) and split. Returns 0, or -1 with err set. */
static int parse_metaspace(tokenizer_t *tok, json_t *j, const char *path, err_t *err) {
    json_t *r = json_object_get(j, "replacement");
    const char *rs = json_string_value(r);
    size_t rl = json_string_length(r), cl;
    if (!rs || !rl || utf8_valid_prefix(rs, rl) != rl || (cl = utf8_len((unsigned char)rs[0])) != rl)
        return err_fmt(err, "%s.replacement: expected a string of one character", path);
    // Legacy files carry add_prefix_space instead of prepend_scheme (HF MetaspaceHelper).
    prepend_scheme_t scheme = PREPEND_ALWAYS;
    json_t *ps = json_object_get(j, "prepend_scheme");
    int have_scheme = ps && !json_is_null(ps);
    if (have_scheme) {
        const char *s = json_string_value(ps);
        if (s && !strcmp(s, "always")) scheme = PREPEND_ALWAYS;
        else if (s && !strcmp(s, "never")) scheme = PREPEND_NEVER;
        else if (s && !strcmp(s, "first")) scheme = PREPEND_FIRST;
        else return err_fmt(err, "%s.prepend_scheme: expected \"always\", \"never\" or \"first\"", path);
    }
    json_t *aps = json_object_get(j, "add_prefix_space");
    if (json_is_false(aps) && scheme != PREPEND_NEVER)
        // HF 0.23 refuses this too: a missing prepend_scheme defaults to "always".
        return err_fmt(err, "%s: add_prefix_space false contradicts prepend_scheme (\"always\" when absent)", path);
    int split = 1;
    if (get_bool(j, "split", 1, &split, path, err) < 0) return -1;
    pre_step_t *st = add_pre(tok, PRE_METASPACE);
    memcpy(st->rep, rs, rl);
    st->rep_len = rl;
    st->prepend = scheme;
    st->use_regex = split;
    if (split) {
        tok->has_regex = 1;
        char where[512];
        if (snprintf(where, sizeof where, "%s.replacement", path) < 0) where[0] = '\0';
        return tok_regex_compile(&st->re, rs, rl, 1, where, err);
    }
    return 0;
}

/* Append the pre-tokenizer j (a Sequence is flattened, at most 16 deep) to tok->pre.
 * Returns 0, or -1 with err naming the path and the offending field. */
static int parse_pre(tokenizer_t *tok, json_t *j, const char *path, int depth, err_t *err) {
    if (!j || json_is_null(j)) return 0;
    if (depth > 16) return err_fmt(err, "%s: Sequences nested too deeply", path);
    const char *type = get_type(j, path, err);
    if (!type) return -1;
    if (!strcmp(type, "Sequence")) return parse_sequence(tok, j, "pretokenizers", path, depth, parse_pre, err);
    if (!strcmp(type, "Split")) {
        pre_step_t *st = add_pre(tok, PRE_SPLIT);
        tok->has_regex = 1;
        if (get_behavior(j, &st->behavior, path, err) < 0 || get_bool(j, "invert", 0, &st->invert, path, err) < 0)
            return -1;
        return get_pattern(j, &st->re, path, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        int aps = 1, ur = 1;
        if (get_bool(j, "add_prefix_space", 1, &aps, path, err) < 0 || get_bool(j, "use_regex", 1, &ur, path, err) < 0)
            return -1;
        pre_step_t *st = add_pre(tok, PRE_BYTELEVEL);
        st->add_prefix_space = aps;
        st->use_regex = ur;
        if (!ur) return 0;
        tok->has_regex = 1;
        char sub[512];
        if (snprintf(sub, sizeof sub, "%s (the GPT-2 pattern)", path) < 0) sub[0] = '\0';
        return tok_regex_compile(&st->re, GPT2_RE, sizeof GPT2_RE - 1, 0, sub, err);
    }
    if (!strcmp(type, "Metaspace")) return parse_metaspace(tok, j, path, err);
    if (!strcmp(type, "Digits")) {
        int ind = 0;
        if (get_bool(j, "individual_digits", 0, &ind, path, err) < 0) return -1;
        return add_class_split(tok, TOK_HF_NUMERIC, ind ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, path, err);
    }
    if (!strcmp(type, "Punctuation")) {
        split_behavior_t b = SPLIT_ISOLATED;
        if (json_object_get(j, "behavior") && get_behavior(j, &b, path, err) < 0) return -1;
        return add_class_split(tok, TOK_HF_PUNCT, b, path, err);
    }
    if (!strcmp(type, "WhitespaceSplit")) return add_split(tok, "\\p{White_Space}", 0, SPLIT_REMOVED, 0, path, err);
    if (!strcmp(type, "Whitespace"))
        return add_split(tok, "[" RUST_W "]+|[^" RUST_W "\\p{White_Space}]+", 0, SPLIT_REMOVED, 1, path, err);
    if (!strcmp(type, "BertPreTokenizer")) {
        if (add_split(tok, "\\p{White_Space}", 0, SPLIT_REMOVED, 0, path, err) < 0) return -1;
        return add_class_split(tok, TOK_HF_PUNCT, SPLIT_ISOLATED, path, err);
    }
    if (!strcmp(type, "CharDelimiterSplit")) {
        json_t *d = json_object_get(j, "delimiter");
        const char *ds = json_string_value(d);
        size_t dl = json_string_length(d);
        if (!ds || !dl || utf8_len((unsigned char)ds[0]) != dl)
            return err_fmt(err, "%s.delimiter: expected a string of one character", path);
        pre_step_t *st = add_pre(tok, PRE_SPLIT);
        st->behavior = SPLIT_REMOVED;
        tok->has_regex = 1;
        return tok_regex_compile(&st->re, ds, dl, 1, path, err);
    }
    if (!strcmp(type, "UnicodeScripts")) return reject(path, type, "it needs the Unicode Script property tables", err);
    return reject(path, type, "unknown pre-tokenizer", err);
}

int tok_config_pre_tokenizer(tokenizer_t *tok, json_t *j, err_t *err) {
    return parse_pre(tok, j, "pre_tokenizer", 0, err);
}

/* ---------------------------------------------------------------- post_processor ---- */

/* Insert src[0..k) at the front (front != 0) or the end of the growable array *v of *n ids. */
static void append_ids(int32_t **v, size_t *n, const int32_t *src, size_t k, int front) {
    if (!k) return;
    *v = xrealloc(*v, (*n + k + 1) * sizeof **v);
    if (front) {
        memmove(*v + k, *v, *n * sizeof **v);
        memcpy(*v, src, k * sizeof **v);
    } else {
        memcpy(*v + *n, src, k * sizeof **v);
    }
    *n += k;
}

/* A ["token", id] pair of Bert/RobertaProcessing. */
static int get_pair_id(json_t *j, const char *key, int32_t *id, const char *path, err_t *err) {
    json_t *v = json_object_get(j, key);
    json_t *i = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)) ||
        !json_is_integer(i) || json_integer_value(i) < 0 || json_integer_value(i) > INT32_MAX)
        return err_fmt(err, "%s.%s: expected [\"token\", id]", path, key);
    *id = (int32_t)json_integer_value(i);
    return 0;
}

/* Read a TemplateProcessing's "single" template: the special-token ids before sequence A go to
 * *pre, those after it to *suf. Returns 0, or -1 with err set. */
static int parse_template(tokenizer_t *tok, json_t *j, const char *path, int32_t **pre, size_t *npre,
                          int32_t **suf, size_t *nsuf, err_t *err) {
    json_t *single = get_array(j, "single", path, err);
    if (!single) return -1;
    json_t *specials = json_object_get(j, "special_tokens");
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i);
        json_t *seq = json_object_get(it, "Sequence"), *sp = json_object_get(it, "SpecialToken");
        if (seq) {
            const char *id = json_string_value(json_object_get(seq, "id"));
            if (!id || strcmp(id, "A") || seen_a)
                return err_fmt(err, "%s.single[%zu]: a single-sequence template must hold sequence A once", path, i);
            seen_a = 1;
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        if (!name) return err_fmt(err, "%s.single[%zu]: expected {\"Sequence\"} or {\"SpecialToken\"}", path, i);
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids))
            return err_fmt(err, "%s.special_tokens: no entry \"%s\" with an \"ids\" array", path, name);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            json_t *v = json_array_get(ids, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
                return err_fmt(err, "%s.special_tokens.%s.ids[%zu]: expected a token id", path, name, k);
            int32_t id = (int32_t)json_integer_value(v);
            if (seen_a) append_ids(suf, nsuf, &id, 1, 0);
            else append_ids(pre, npre, &id, 1, 0);
            if ((size_t)id + 1 > tok->n_ids) tok->n_ids = (size_t)id + 1;
        }
    }
    if (!seen_a) return err_fmt(err, "%s.single: the template never places sequence A", path);
    return 0;
}

/* Parse one processor into its own prefix/suffix; Sequence nests them in order. */
static int parse_post(tokenizer_t *tok, json_t *j, const char *path, int depth, int32_t **pre, size_t *npre,
                      int32_t **suf, size_t *nsuf, err_t *err) {
    if (!j || json_is_null(j)) return 0;
    if (depth > 16) return err_fmt(err, "%s: Sequences nested too deeply", path);
    const char *type = get_type(j, path, err);
    if (!type) return -1;
    if (!strcmp(type, "ByteLevel")) return 0;  // offsets only
    if (!strcmp(type, "TemplateProcessing")) return parse_template(tok, j, path, pre, npre, suf, nsuf, err);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        int32_t cls, sep;
        if (get_pair_id(j, "cls", &cls, path, err) < 0 || get_pair_id(j, "sep", &sep, path, err) < 0) return -1;
        append_ids(pre, npre, &cls, 1, 0);
        append_ids(suf, nsuf, &sep, 1, 0);
        return 0;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *a = get_array(j, "processors", path, err);
        if (!a) return -1;
        for (size_t i = 0; i < json_array_size(a); i++) {
            char sub[512];
            subpath(sub, sizeof sub, path, "processors", i);
            int32_t *p2 = NULL, *s2 = NULL;
            size_t np2 = 0, ns2 = 0;
            int rc = parse_post(tok, json_array_get(a, i), sub, depth + 1, &p2, &np2, &s2, &ns2, err);
            if (rc == 0) {
                // A later processor wraps what the earlier ones produced.
                append_ids(pre, npre, p2, np2, 1);
                append_ids(suf, nsuf, s2, ns2, 0);
            }
            free(p2);
            free(s2);
            if (rc < 0) return -1;
        }
        return 0;
    }
    return reject(path, type, "unknown post-processor", err);
}

int tok_config_post_processor(tokenizer_t *tok, json_t *j, err_t *err) {
    return parse_post(tok, j, "post_processor", 0, &tok->prefix, &tok->n_prefix, &tok->suffix, &tok->n_suffix,
                      err);
}

/* ---------------------------------------------------------------- decoder ----------- */

/* Accept a null decoder, a known one, or a Sequence of them (nested at most 16 deep); decoders are
 * not used for encoding. Returns 0, or -1 with err set. */
static int check_decoder(json_t *j, const char *path, int depth, err_t *err) {
    if (!j || json_is_null(j)) return 0;
    if (depth > 16) return err_fmt(err, "%s: Sequences nested too deeply", path);
    const char *type = get_type(j, path, err);
    if (!type) return -1;
    static const char *known[] = {"BPEDecoder", "ByteLevel", "WordPiece", "Metaspace", "CTC",
                                  "Replace",    "Fuse",      "Strip",     "ByteFallback"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(type, known[i])) return 0;
    if (strcmp(type, "Sequence")) return reject(path, type, "unknown decoder", err);
    json_t *a = get_array(j, "decoders", path, err);
    if (!a) return -1;
    for (size_t i = 0; i < json_array_size(a); i++) {
        char sub[512];
        subpath(sub, sizeof sub, path, "decoders", i);
        if (check_decoder(json_array_get(a, i), sub, depth + 1, err) < 0) return -1;
    }
    return 0;
}

int tok_config_decoder(json_t *j, err_t *err) {
    return check_decoder(j, "decoder", 0, err);
}

/* ---------------------------------------------------------------- truncation/padding  */

/* Padding materialises ids; a length beyond any model's context is a broken file, not a
 * request for gigabytes. */
#define MAX_PAD (1 << 24)

/* Parse "direction" ("Left" or "Right", absent or null: Right) into *left. Returns 0, or -1 with
 * err set. */
static int get_direction(json_t *j, int *left, const char *path, err_t *err) {
    json_t *d = json_object_get(j, "direction");
    if (!d || json_is_null(d)) { *left = 0; return 0; }
    const char *s = json_string_value(d);
    if (s && !strcmp(s, "Left")) *left = 1;
    else if (s && !strcmp(s, "Right")) *left = 0;
    else return err_fmt(err, "%s.direction: expected \"Left\" or \"Right\"", path);
    return 0;
}

int tok_config_truncation_padding(tokenizer_t *tok, json_t *tr, json_t *pad, err_t *err) {
    if (tr && !json_is_null(tr)) {
        if (!json_is_object(tr)) return err_fmt(err, "truncation: expected an object or null");
        trunc_cfg_t *t = &tok->trunc;
        t->enabled = 1;
        if (get_size(tr, "max_length", &t->max_length, "truncation", err) < 0 ||
            get_direction(tr, &t->left, "truncation", err) < 0)
            return -1;
        if (json_object_get(tr, "stride") && get_size(tr, "stride", &t->stride, "truncation", err) < 0) return -1;
        const char *st = json_string_value(json_object_get(tr, "strategy"));
        if (!st || !strcmp(st, "LongestFirst") || !strcmp(st, "OnlyFirst")) t->only_second = 0;
        else if (!strcmp(st, "OnlySecond")) t->only_second = 1;
        else return err_fmt(err, "truncation.strategy: unknown strategy \"%s\"", st);
    }
    if (pad && !json_is_null(pad)) {
        if (!json_is_object(pad)) return err_fmt(err, "padding: expected an object or null");
        pad_cfg_t *p = &tok->pad;
        p->enabled = 1;
        json_t *s = json_object_get(pad, "strategy");
        if (json_is_string(s) && !strcmp(json_string_value(s), "BatchLongest")) p->fixed = 0;
        else if (json_is_object(s) && json_object_get(s, "Fixed")) {
            p->fixed = 1;
            if (get_size(s, "Fixed", &p->size, "padding.strategy", err) < 0) return -1;
            if (p->size > MAX_PAD) return err_fmt(err, "padding.strategy.Fixed: %zu is above %d ids", p->size, MAX_PAD);
        } else return err_fmt(err, "padding.strategy: expected \"BatchLongest\" or {\"Fixed\": n}");
        if (get_direction(pad, &p->left, "padding", err) < 0) return -1;
        json_t *m = json_object_get(pad, "pad_to_multiple_of");
        if (m && !json_is_null(m) && get_size(pad, "pad_to_multiple_of", &p->multiple, "padding", err) < 0) return -1;
        if (p->multiple > MAX_PAD)
            return err_fmt(err, "padding.pad_to_multiple_of: %zu is above %d ids", p->multiple, MAX_PAD);
        size_t id = 0;
        if (get_size(pad, "pad_id", &id, "padding", err) < 0) return -1;
        p->pad_id = (int32_t)id;
    }
    return 0;
}

/* ---------------------------------------------------------------- free -------------- */

void tok_config_free(tokenizer_t *tok) {
    for (size_t i = 0; i < tok->n_norm; i++) {
        tok_regex_free(&tok->norm[i].re);
        free(tok->norm[i].str);
    }
    free(tok->norm);
    for (size_t i = 0; i < tok->n_pre; i++) tok_regex_free(&tok->pre[i].re);
    free(tok->pre);
    free(tok->prefix);
    free(tok->suffix);
    tok->norm = NULL;
    tok->pre = NULL;
    tok->prefix = tok->suffix = NULL;
    tok->n_norm = tok->n_pre = tok->n_prefix = tok->n_suffix = 0;
}

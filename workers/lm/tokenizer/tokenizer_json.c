/* tokenizer_json.c: load a Hugging Face tokenizer.json (jansson) into a tokenizer_t: the BPE
 * model (vocab, merges, options) here; the other sections through tok_config.c and
 * added_tokens.c, in the order HF deserialises them (added tokens last, since their ids
 * depend on the model vocab and their matching on the normalizer).
 *
 * Merges are resolved to (left id, right id) -> (rank, merged id) exactly like HF's
 * BpeBuilder::build, including its quirks: "#version" lines are skipped before ranks are
 * counted, a repeated pair keeps its last rank, and the merged token is left + right with
 * continuing_subword_prefix cut from the right part.
 *
 * Deliberately absent: models other than BPE (WordPiece, WordLevel, Unigram) and BPE dropout,
 * which are rejected with the field named.
 */
#include <string.h>

#include "atomic_file.h"
#include "json_util.h"
#include "tok_internal.h"

/* ---------------------------------------------------------------- model ------------- */

/* Copy the optional string member model.key into *out (malloc'd, NULL when absent or null) and its
 * length into *out_len when non-NULL. Returns 0, or -1 with err set. */
static int opt_string(json_t *m, const char *key, char **out, size_t *out_len, err_t *err) {
    json_t *v = json_object_get(m, key);
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return err_fmt(err, "model.%s: expected a string or null", key);
    size_t n = json_string_length(v);
    *out = xmalloc(n + 1);
    memcpy(*out, json_string_value(v), n + 1);
    if (out_len) *out_len = n;
    return 0;
}

/* Read the optional boolean member model.key into *out (0 when absent or null). Returns 0, or -1
 * with err set. */
static int opt_bool(json_t *m, const char *key, int *out, err_t *err) {
    json_t *v = json_object_get(m, key);
    *out = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return err_fmt(err, "model.%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* One merge on its way to the table. */
typedef struct {
    const char *a, *c;   // left and right token (borrowed from the JSON)
    size_t al, cl;       // byte lengths of a and c
    size_t noff, nl;     // merged token in the batch buffer
    size_t i;            // index in model.merges, for errors
    uint64_t ha, hc, hn; // hashes of a, c and the merged token
} merge_q_t;

#define MERGE_BATCH 64

/* Resolve q[0..n) to ids and insert them, in order (a repeated pair keeps its last rank).
 * Hashes are computed and the vocab slots prefetched for the whole batch first: the lookups
 * are cache misses, and this lets them overlap. Returns 0 or -1 with err naming merges[i]. */
static int resolve_batch(bpe_model_t *b, merge_q_t *q, size_t n, const char *nbuf, uint32_t *rank, err_t *err) {
    const strmap_t *v = &b->vocab;
    for (size_t k = 0; k < n; k++) {
        q[k].ha = tok_hash(q[k].a, q[k].al);
        q[k].hc = tok_hash(q[k].c, q[k].cl);
        q[k].hn = tok_hash(nbuf + q[k].noff, q[k].nl);
        strmap_prefetch(v, q[k].ha);
        strmap_prefetch(v, q[k].hc);
        strmap_prefetch(v, q[k].hn);
    }
    int32_t ids[MERGE_BATCH][3];
    for (size_t k = 0; k < n; k++) {
        const merge_q_t *m = &q[k];
        ids[k][0] = strmap_get_h(v, m->a, m->al, m->ha);
        ids[k][1] = strmap_get_h(v, m->c, m->cl, m->hc);
        ids[k][2] = strmap_get_h(v, nbuf + m->noff, m->nl, m->hn);
        if (ids[k][0] < 0)
            return err_fmt(err, "model.merges[%zu]: token \"%.*s\" is not in model.vocab", m->i, (int)m->al, m->a);
        if (ids[k][1] < 0)
            return err_fmt(err, "model.merges[%zu]: token \"%.*s\" is not in model.vocab", m->i, (int)m->cl, m->c);
        if (ids[k][2] < 0)
            return err_fmt(err, "model.merges[%zu]: merged token \"%.*s\" is not in model.vocab", m->i, (int)m->nl,
                           nbuf + m->noff);
        pairmap_prefetch(&b->merges, ids[k][0], ids[k][1]);
    }
    for (size_t k = 0; k < n; k++) pairmap_put(&b->merges, ids[k][0], ids[k][1], (*rank)++, ids[k][2]);
    return 0;
}

/* Read model.merges ("left right" strings or ["left", "right"] pairs) into b->merges, as
 * HF's BpeBuilder::build does: "#version" lines are skipped before ranks are counted, and the
 * merged token is left + right with continuing_subword_prefix cut from the right part. */
static int load_merges(bpe_model_t *b, json_t *merges, err_t *err) {
    if (merges && !json_is_null(merges) && !json_is_array(merges))
        return err_fmt(err, "model.merges: expected an array");
    size_t nm = json_array_size(merges);
    pairmap_init(&b->merges, nm);
    merge_q_t q[MERGE_BATCH];
    size_t nq = 0, ncap = 4096, nlen = 0;
    char *nbuf = xmalloc(ncap);
    uint32_t rank = 0;
    int rc = 0;
    for (size_t i = 0; i <= nm && rc == 0; i++) {
        if (i == nm || nq == MERGE_BATCH) {
            rc = resolve_batch(b, q, nq, nbuf, &rank, err);
            nq = nlen = 0;
            if (i == nm || rc < 0) break;
        }
        json_t *e = json_array_get(merges, i);
        merge_q_t *m = &q[nq];
        m->i = i;
        if (i > 0 && json_is_string(e) != json_is_string(json_array_get(merges, 0))) {
            // HF reads merges as all strings or all pairs (an untagged enum), never a mix.
            rc = err_fmt(err, "model.merges[%zu]: mixes \"left right\" strings and [\"left\", \"right\"] pairs", i);
            break;
        }
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t n = json_string_length(e);
            if (n >= 8 && !memcmp(s, "#version", 8)) continue;
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                rc = err_fmt(err, "model.merges[%zu]: expected \"left right\" with exactly one space", i);
                break;
            }
            m->a = s;
            m->al = (size_t)(sp - s);
            m->c = sp + 1;
            m->cl = n - m->al - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            json_t *l = json_array_get(e, 0), *r = json_array_get(e, 1);
            m->a = json_string_value(l);
            m->al = json_string_length(l);
            m->c = json_string_value(r);
            m->cl = json_string_length(r);
        } else {
            rc = err_fmt(err, "model.merges[%zu]: expected \"left right\" or [\"left\", \"right\"]", i);
            break;
        }
        size_t cut = b->prefix_len;
        if (cut > m->cl || (cut < m->cl && ((unsigned char)m->c[cut] & 0xC0) == 0x80)) {
            rc = err_fmt(err, "model.merges[%zu]: cannot cut continuing_subword_prefix from \"%.*s\"", i, (int)m->cl,
                         m->c);
            break;
        }
        m->nl = m->al + m->cl - cut;
        if (nlen + m->nl > ncap) {
            while (nlen + m->nl > ncap) ncap *= 2;
            nbuf = xrealloc(nbuf, ncap);
        }
        m->noff = nlen;
        memcpy(nbuf + nlen, m->a, m->al);
        memcpy(nbuf + nlen + m->al, m->c + cut, m->cl - cut);
        nlen += m->nl;
        nq++;
    }
    free(nbuf);
    return rc;
}

/* Load the BPE model object m into tok->bpe: options, vocab, merges, byte-fallback ids and the
 * single-code-point tables. Returns 0, or -1 with err naming the field. */
static int load_bpe(tokenizer_t *tok, json_t *m, err_t *err) {
    static uint64_t next_uid = 1;
    bpe_model_t *b = &tok->bpe;
    b->uid = __atomic_fetch_add(&next_uid, 1, __ATOMIC_RELAXED);
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout)) {
        if (!json_is_number(dropout)) return err_fmt(err, "model.dropout: expected a number or null");
        if (json_number_value(dropout) > 0)
            return err_fmt(err, "model.dropout: BPE dropout is random and is not supported");
    }
    if (opt_string(m, "unk_token", &b->unk_token, NULL, err) < 0 ||
        opt_string(m, "continuing_subword_prefix", &b->prefix, &b->prefix_len, err) < 0 ||
        opt_string(m, "end_of_word_suffix", &b->suffix, &b->suffix_len, err) < 0 ||
        opt_bool(m, "fuse_unk", &b->fuse_unk, err) < 0 || opt_bool(m, "byte_fallback", &b->byte_fallback, err) < 0 ||
        opt_bool(m, "ignore_merges", &b->ignore_merges, err) < 0)
        return -1;

    json_t *vocab = json_object_get(m, "vocab");
    if (!json_is_object(vocab)) return err_fmt(err, "model.vocab: expected an object of token -> id");
    strmap_init(&b->vocab, json_object_size(vocab));
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(vocab, key, klen, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
            return err_fmt(err, "model.vocab[\"%.*s\"]: expected a non-negative integer id", (int)klen, key);
        int32_t id = (int32_t)json_integer_value(v);
        if (strmap_put(&b->vocab, key, klen, id) < 0) return err_fmt(err, "model.vocab: too large");
        if ((size_t)id + 1 > tok->n_ids) tok->n_ids = (size_t)id + 1;
    }
    b->vocab_len = b->vocab.n;
    b->unk_id = b->unk_token ? strmap_get(&b->vocab, b->unk_token, strlen(b->unk_token)) : -1;

    if (load_merges(b, json_object_get(m, "merges"), err) < 0) return -1;

    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_ids[i] = b->byte_fallback ? strmap_get(&b->vocab, name, 6) : -1;
    }
    if (!b->prefix && !b->suffix) {
        b->cp_id = xmalloc(BPE_CP_TABLE * sizeof *b->cp_id);
        for (uint32_t cp = 0; cp < BPE_CP_TABLE; cp++) {
            char u[4];
            size_t n = utf8_encode(cp, u);
            b->cp_id[cp] = strmap_get(&b->vocab, u, n);
        }
        // Every pair of neighbouring chars inside a vocab token: BPE can never merge across
        // a pair outside this set (see bpe_encode_word).
        pairmap_init(&b->bigrams, 1024);
        const strmap_t *vm = &b->vocab;
        for (size_t i = 0; i <= vm->mask; i++) {
            if (vm->slots[i].val < 0) continue;
            const char *t = vm->pool + vm->slots[i].off;
            size_t tl = vm->slots[i].len, k = 0, n;
            uint32_t prev = 0;
            for (int first = 1; k < tl; k += n, first = 0) {
                uint32_t cp = utf8_decode(t + k, &n);
                if (!first && !pairmap_get(&b->bigrams, (int32_t)prev, (int32_t)cp))
                    pairmap_put(&b->bigrams, (int32_t)prev, (int32_t)cp, 0, 0);
                prev = cp;
            }
        }
    }
    return 0;
}

/* Load the "model" object, which must be BPE (also when "type" is missing but merges exist).
 * Returns 0, or -1 with err set. */
static int load_model(tokenizer_t *tok, json_t *m, err_t *err) {
    if (!json_is_object(m)) return err_fmt(err, "model: expected an object");
    json_t *t = json_object_get(m, "type");
    const char *type = json_string_value(t);
    if (!type) {
        // Files written before "type" existed: HF guesses the model from its fields.
        if (t && !json_is_null(t)) return err_fmt(err, "model.type: expected a string");
        if (!json_object_get(m, "merges")) return err_fmt(err, "model.type: missing, and the model has no merges");
        type = "BPE";
    }
    if (strcmp(type, "BPE"))
        return err_fmt(err, "model.type: \"%s\" is not supported (only BPE); refusing rather than giving "
                            "different ids", type);
    return load_bpe(tok, m, err);
}

/* ---------------------------------------------------------------- public ------------ */

void tokenizer_no_truncation_padding(tokenizer_t *tok) {
    tok->trunc.enabled = 0;
    tok->pad.enabled = 0;
}

void tokenizer_free(tokenizer_t *tok) {
    if (!tok) return;
    bpe_model_t *b = &tok->bpe;
    strmap_free(&b->vocab);
    pairmap_free(&b->merges);
    free(b->unk_token);
    free(b->prefix);
    free(b->suffix);
    free(b->cp_id);
    pairmap_free(&b->bigrams);
    strmap_free(&tok->added);
    added_trie_free(&tok->raw_trie);
    added_trie_free(&tok->norm_trie);
    tok_regex_free(&tok->word_re);
    tok_config_free(tok);
    free(tok->name);
    free(tok);
}

tokenizer_t *tokenizer_load_buf(const char *json, size_t len, const char *name, err_t *err) {
    tok_bytechars();  // build the shared byte table before any encode thread can need it
    json_t *root = json_util_load_buf(json, len, name, err);
    if (!root) return NULL;
    tokenizer_t *tok = xcalloc(1, sizeof *tok);
    tok->name = xstrdup(name);
    int rc = -1;
    if (!json_is_object(root)) {
        err_fmt(err, "top level: expected an object");
        goto done;
    }
    json_t *ver = json_object_get(root, "version");
    if (ver && (!json_is_string(ver) || strcmp(json_string_value(ver), "1.0"))) {
        err_fmt(err, "version: expected \"1.0\"");
        goto done;
    }
    if (load_model(tok, json_object_get(root, "model"), err) < 0) goto done;
    if (tok_config_normalizer(tok, json_object_get(root, "normalizer"), err) < 0) goto done;
    if (tok_config_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer"), err) < 0) goto done;
    if (tok_config_post_processor(tok, json_object_get(root, "post_processor"), err) < 0) goto done;
    if (tok_config_decoder(json_object_get(root, "decoder"), err) < 0) goto done;
    if (added_tokens_load(tok, json_object_get(root, "added_tokens"), err) < 0) goto done;
    if (tok_config_truncation_padding(tok, json_object_get(root, "truncation"), json_object_get(root, "padding"),
                                      err) < 0)
        goto done;
    rc = 0;
done:
    json_decref(root);
    if (rc < 0) {
        err_prefix(err, "%s", name);
        tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

tokenizer_t *tokenizer_load(const char *path, err_t *err) {
    size_t len;
    char *buf = fs_read_all(path, FS_LIMIT_TOKENIZER, &len, err);
    if (!buf) return NULL;
    tokenizer_t *tok = tokenizer_load_buf(buf, len, path, err);
    free(buf);
    return tok;
}

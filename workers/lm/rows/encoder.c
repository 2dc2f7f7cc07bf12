/* encoder.c: tokenise a templated row and truncate it to --max-length.
 *
 * The sequence is built from separately tokenised pieces:
 *   special prefix (e.g. <bos>) | template prefix | [before_p | part p | after_p]... | suffix | special suffix
 * Fixed strings are tokenised once, in encoder_create; parts are tokenised per row. Tokenising
 * pieces separately can give different ids at a boundary than tokenising the joined string (a
 * BPE merge across "...: " and the text cannot happen); we accept that on purpose, because it is
 * what makes the labels survive truncation intact and the lengths exact. docs/templates.md says
 * so to users, and gives the budget arithmetic of trunc_budgets() below.
 *
 * It does not decode CSV fields (decode.c) or define templates (template.c).
 */
#include "rows.h"

#include <string.h>

#include "exit_codes.h"

struct encoder {
    const template_t *t;         // the template (not owned)
    const tokenizer_t *tok;      // the tokenizer (not owned)
    trunc_policy_t policy;       // how text is cut to max_length
    size_t max_length;           // every id counts, special ones included
    const int32_t *pre, *suf;    // (n_pre), (n_suf) special affixes, owned by the tokenizer
    size_t n_pre, n_suf;         // entries in pre, suf
    ids_t prefix, suffix;        // the template's prefix and suffix, tokenised
    ids_t before[N_PARTS];       // fixed string before each part, tokenised
    ids_t after[N_PARTS];        // fixed string after each part, tokenised
    size_t fixed0;               // n_pre + n_suf + |prefix| + |suffix|
    size_t per_block;            // sum of |before_p| + |after_p|: once per row (blocks) or per turn
};

int trunc_policy_parse(const char *s, trunc_policy_t *out, err_t *err) {
    if (strcmp(s, "balanced") == 0) *out = TRUNC_BALANCED;
    else if (strcmp(s, "keep_end") == 0) *out = TRUNC_KEEP_END;
    else if (strcmp(s, "tail") == 0) *out = TRUNC_TAIL;
    else return err_code(err, EXIT_USAGE, "--truncation %s: expected balanced, keep_end or tail", s);
    return 0;
}

const char *trunc_policy_name(trunc_policy_t p) {
    return p == TRUNC_KEEP_END ? "keep_end" : p == TRUNC_TAIL ? "tail" : "balanced";
}

/* The smaller of a and b. */
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

void trunc_budgets(size_t R, const size_t n[N_PARTS], size_t keep[N_PARTS]) {
    size_t P = min_sz(n[PART_PROMPT], R / 5);
    size_t rest = R - P, a = n[PART_A], b = n[PART_B], A, B;
    if (a + b <= rest) A = a, B = b;
    else if (a <= rest / 2) A = a, B = rest - a;
    else if (b <= rest / 2) B = b, A = rest - b;
    else A = rest - rest / 2, B = rest / 2;
    P += min_sz(R - P - A - B, n[PART_PROMPT] - P); // budget the responses left flows back
    keep[PART_PROMPT] = P;
    keep[PART_A] = A;
    keep[PART_B] = B;
}

/* Tokenise s[0..n) without special tokens. Empty strings (most fixed pieces) give no ids. */
static int encode_str(const tokenizer_t *tok, const char *s, size_t n, ids_t *out, err_t *err) {
    return n ? tokenizer_encode(tok, s, n, 0, out, err) : 0;
}

encoder_t *encoder_create(const template_t *tmpl, const tokenizer_t *tok, trunc_policy_t policy,
                          int max_length, err_t *err) {
    if (max_length < 1) {
        err_code(err, EXIT_USAGE, "--max-length must be at least 1");
        return NULL;
    }
    encoder_t *e = xcalloc(1, sizeof *e);
    e->t = tmpl;
    e->tok = tok;
    e->policy = policy;
    e->max_length = (size_t)max_length;
    tokenizer_special_affixes(tok, &e->pre, &e->n_pre, &e->suf, &e->n_suf);
    int rc = encode_str(tok, tmpl->prefix, strlen(tmpl->prefix), &e->prefix, err);
    if (rc == 0) rc = encode_str(tok, tmpl->suffix, strlen(tmpl->suffix), &e->suffix, err);
    for (int p = 0; p < N_PARTS && rc == 0; p++) {
        rc = encode_str(tok, tmpl->before[p], strlen(tmpl->before[p]), &e->before[p], err);
        if (rc == 0) rc = encode_str(tok, tmpl->after[p], strlen(tmpl->after[p]), &e->after[p], err);
    }
    if (rc < 0) {
        err_prefix(err, "template %s", tmpl->name);
        encoder_free(e);
        return NULL;
    }
    e->fixed0 = e->n_pre + e->n_suf + e->prefix.n + e->suffix.n;
    for (int p = 0; p < N_PARTS; p++) e->per_block += e->before[p].n + e->after[p].n;
    // TRUNC_TAIL may cut fixed strings, so only the special affixes must fit; the others need
    // room for the fixed strings of one block (or turn) plus at least one id of text.
    size_t need = policy == TRUNC_TAIL ? e->n_pre + e->n_suf + 1 : e->fixed0 + e->per_block + 1;
    if (need > e->max_length) {
        err_code(err, EXIT_USAGE, "--max-length %d is too small for template %s with truncation %s: "
                 "its fixed strings and special tokens take %zu ids, leaving none for text",
                 max_length, tmpl->name, trunc_policy_name(policy), need - 1);
        encoder_free(e);
        return NULL;
    }
    return e;
}

size_t encoder_fixed_ids(const encoder_t *e) {
    return e->fixed0 + e->per_block;
}

void encoder_free(encoder_t *e) {
    if (!e) return;
    ids_free(&e->prefix);
    ids_free(&e->suffix);
    for (int p = 0; p < N_PARTS; p++) {
        ids_free(&e->before[p]);
        ids_free(&e->after[p]);
    }
    free(e);
}

/* Append v[0..n) to out. */
static void push_all(ids_t *out, const int32_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) ids_push(out, v[i]);
}

/* One tokenised text piece of a row and the slice of it that is kept. */
typedef struct {
    ids_t ids;      // the piece's ids, untruncated
    size_t from;    // first kept id
    size_t kept;    // ids kept from `from`
} piece_t;

/* Spread a part's budget over its pieces (one per turn, in order): TRUNC_BALANCED keeps the
 * first `budget` ids of the part, TRUNC_KEEP_END its last. pieces are strided by `stride`. */
static void spread(piece_t *pc, size_t n, size_t stride, size_t budget, trunc_policy_t policy) {
    for (size_t k = 0; k < n; k++) {
        size_t i = policy == TRUNC_KEEP_END ? n - 1 - k : k;
        piece_t *q = &pc[i * stride];
        q->kept = min_sz(q->ids.n, budget);
        q->from = policy == TRUNC_KEEP_END ? q->ids.n - q->kept : 0;
        budget -= q->kept;
    }
}

int encoder_encode(const encoder_t *e, const row_parts_t *r, ids_t *out, encode_info_t *info,
                   err_t *err) {
    const template_t *t = e->t;
    encode_info_t inf;
    memset(&inf, 0, sizeof inf);
    // Blocks have one piece per part (its turns joined); turns mode one per (turn, part).
    size_t n_blocks = 1;
    if (t->mode == TPL_TURNS)
        for (int p = 0; p < N_PARTS; p++)
            if (r->part[p].n > n_blocks) n_blocks = r->part[p].n;
    piece_t *pc = xcalloc(n_blocks * N_PARTS, sizeof *pc);
    int rc = 0;
    char *joined = NULL;
    for (size_t bl = 0; bl < n_blocks && rc == 0; bl++) {
        for (int p = 0; p < N_PARTS && rc == 0; p++) {
            const turns_t *tu = &r->part[p];
            piece_t *q = &pc[bl * N_PARTS + p];
            if (t->mode == TPL_TURNS) {
                if (bl < tu->n) rc = encode_str(e->tok, tu->text[bl], tu->len[bl], &q->ids, err);
            } else {
                size_t jl = strlen(t->turn_join), n = 0;
                for (size_t i = 0; i < tu->n; i++) n += tu->len[i] + jl;
                joined = xrealloc(joined, n + 1);
                n = 0;
                for (size_t i = 0; i < tu->n; i++) {
                    if (i) memcpy(joined + n, t->turn_join, jl), n += jl;
                    memcpy(joined + n, tu->text[i], tu->len[i]), n += tu->len[i];
                }
                rc = encode_str(e->tok, joined, n, &q->ids, err);
            }
            q->kept = q->ids.n;
            inf.part_len[p] += q->ids.n;
        }
    }
    free(joined);
    if (rc < 0) goto out;

    inf.full_len = e->fixed0 + n_blocks * e->per_block;
    for (int p = 0; p < N_PARTS; p++) inf.full_len += inf.part_len[p];
    size_t first = 0, last = n_blocks; // blocks [first, last) are emitted
    inf.truncated = inf.full_len > e->max_length;

    if (inf.truncated && e->policy != TRUNC_TAIL) {
        // Only the turns that reach into the first (keep_end: last) max_length ids are
        // candidates: the turn where a plain cut would fall and those before (after) it. That
        // also bounds the labels, which encoder_create guarantees fit for at least one turn.
        size_t k = 0, cum = e->fixed0;
        while (k < n_blocks && cum < e->max_length) {
            size_t bl = e->policy == TRUNC_KEEP_END ? n_blocks - 1 - k : k;
            cum += e->per_block;
            for (int p = 0; p < N_PARTS; p++) cum += pc[bl * N_PARTS + p].ids.n;
            k++;
        }
        while (k > 1 && e->fixed0 + k * e->per_block >= e->max_length) k--;
        if (e->policy == TRUNC_KEEP_END) first = n_blocks - k;
        else last = k;
        size_t R = e->max_length - e->fixed0 - (last - first) * e->per_block, n[N_PARTS], keep[N_PARTS];
        for (int p = 0; p < N_PARTS; p++) {
            n[p] = 0;
            for (size_t bl = first; bl < last; bl++) n[p] += pc[bl * N_PARTS + p].ids.n;
        }
        trunc_budgets(R, n, keep);
        for (size_t bl = 0; bl < n_blocks; bl++)
            for (int p = 0; p < N_PARTS; p++) pc[bl * N_PARTS + p].kept = 0;
        for (int p = 0; p < N_PARTS; p++)
            spread(&pc[first * N_PARTS + p], last - first, N_PARTS, keep[p], e->policy);
        // Turns that lost all their text go too, labels included, from the cut side inwards.
        for (;;) {
            size_t bl = e->policy == TRUNC_KEEP_END ? first : last - 1;
            if (last - first <= 1) break;
            size_t kept = 0;
            for (int p = 0; p < N_PARTS; p++) kept += pc[bl * N_PARTS + p].kept;
            if (kept) break;
            if (e->policy == TRUNC_KEEP_END) first++;
            else last--;
        }
    }

    // Assemble the sequence.
    size_t start = out->n;
    push_all(out, e->pre, e->n_pre);
    push_all(out, e->prefix.data, e->prefix.n);
    for (size_t bl = first; bl < last; bl++) {
        for (int p = 0; p < N_PARTS; p++) {
            const piece_t *q = &pc[bl * N_PARTS + p];
            push_all(out, e->before[p].data, e->before[p].n);
            if (q->kept) push_all(out, q->ids.data + q->from, q->kept);
            push_all(out, e->after[p].data, e->after[p].n);
            inf.part_kept[p] += q->kept;
        }
    }
    push_all(out, e->suffix.data, e->suffix.n);
    if (e->policy == TRUNC_TAIL && inf.truncated) {
        // Cut the content (everything between the special affixes) and keep its start.
        out->n = start + e->max_length - e->n_suf;
        for (int p = 0; p < N_PARTS; p++) inf.part_kept[p] = 0;
    }
    push_all(out, e->suf, e->n_suf);
    size_t total = out->n - start;
    ASSERT(total <= e->max_length);
    if (!(e->policy == TRUNC_TAIL && inf.truncated)) {
        inf.fixed_len = total;
        for (int p = 0; p < N_PARTS; p++) inf.fixed_len -= inf.part_kept[p];
    }
out:
    for (size_t i = 0; i < n_blocks * N_PARTS; i++) ids_free(&pc[i].ids);
    free(pc);
    if (info) *info = inf;
    return rc;
}

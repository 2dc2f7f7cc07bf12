/* rows.h: the rows room's one header: competition CSV rows -> conversation parts -> template ->
 * token ids -> packed batches.
 *
 * A row of the LMSYS layout has three text columns, prompt, response_a and response_b, each a
 * JSON list of strings with one element per conversation turn. This room turns such a row into
 * the token ids one sequence-classification forward pass reads, in three steps, then batches:
 *   1. decode (rows/decode.c): each field becomes a turns_t, a list of UTF-8 strings;
 *   2. template (rows/template.c): a template_t says which fixed strings surround each part;
 *   3. encode (rows/encoder.c): the fixed strings and the parts are tokenised separately, each
 *      part is cut to its share of --max-length by a truncation policy, and the pieces are
 *      concatenated between the tokenizer's special affixes (Gemma's <bos>);
 *   4. batch (rows/batcher.c): encode every row on a thread pool, then sort rows by length and
 *      pack them into batches.
 * docs/templates.md documents every template string and the exact budget arithmetic.
 *
 * It deliberately does not read files (the caller owns the csv_table_t) or run models.
 * Everything here is re-entrant: an encoder_t is immutable after encoder_create, so rows can be
 * encoded from many threads at once.
 */
#ifndef LM_ROWS_H
#define LM_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include "check.h"
#include "csv_io.h"
#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------- decoding -------------- */

enum { PART_PROMPT = 0, PART_A = 1, PART_B = 2, N_PARTS = 3 };

/* The names of the three text columns, indexed by PART_*. */
extern const char *const rows_part_names[N_PARTS];

/* One text column of one row: its turns, in order. */
typedef struct {
    size_t n;         // turns
    char **text;      // (n) turn strings; may hold NUL bytes (from \u0000), so use len
    size_t *len;      // (n) byte length of each turn
} turns_t;

/* A decoded row: the three parts. */
typedef struct {
    turns_t part[N_PARTS]; // indexed by PART_*
} row_parts_t;

/* Decode one field. A field whose first non-blank byte is '[' must be a JSON list whose elements
 * are strings or null (null becomes the 4-byte string "null"). Lone UTF-16 surrogate escapes
 * (\ud83d not followed by a low surrogate) are replaced by U+FFFD first, as Python's
 * errors="replace" would. A field that parses as any other JSON value (a number, "a string",
 * {...}, null) is rejected; anything else is plain text and becomes a single turn, verbatim.
 * Returns 0, or -1 with err describing the problem (without row context). */
int rows_decode_field(const char *s, size_t len, turns_t *out, err_t *err);

/* Free every turn and the arrays, and zero *t. */
void turns_free(turns_t *t);
/* turns_free on each of the row's parts. */
void row_parts_free(row_parts_t *r);

/* Where the required columns are in a table. */
typedef struct {
    int id;              // column index of "id"
    int part[N_PARTS];   // column indices of prompt, response_a, response_b
} row_cols_t;

/* Find id, prompt, response_a and response_b in t's header (other columns are ignored).
 * Returns 0, or -1 with err (code EXIT_DATAERR) naming `file` and the missing column. */
int rows_find_cols(const csv_table_t *t, const char *file, row_cols_t *cols, err_t *err);

/* Decode row `row` of t. Returns 0, or -1 with err (code EXIT_DATAERR) naming file, line,
 * row id and column: "test.csv: line 7: id 1234: column 'prompt': ...". */
int rows_decode_row(const csv_table_t *t, const row_cols_t *cols, size_t row, const char *file,
                    row_parts_t *out, err_t *err);

/* ---------------------------------------------------------------- templates ------------- */

typedef enum {
    TPL_BLOCKS = 0,   // prefix, the whole prompt, the whole response_a, the whole response_b, suffix
    TPL_TURNS = 1,    // prefix, then for each turn i: prompt_i, response_a_i, response_b_i; suffix
} template_mode_t;

/* A template: fixed strings around each part. Each part string contains "{text}" exactly once;
 * `before` and `after` are the pieces either side of it. */
typedef struct {
    char *name;                  // built-in name, or the file path
    template_mode_t mode;        // how the turns of a part are laid out (TPL_*)
    char *prefix, *suffix;       // fixed strings at the very start and end
    char *before[N_PARTS];       // fixed string before each part's text
    char *after[N_PARTS];        // fixed string after each part's text
    char *turn_join;             // TPL_BLOCKS: joins the turns of one part (a part of its text)
} template_t;

/* Load a built-in template ("plain", "gemma-chat", "turns") or, when `name` is not one of them,
 * a JSON template file (see docs/templates.md). Returns 0, or -1 with err set: code EXIT_USAGE
 * for an unknown name that is not a readable file, EXIT_DATAERR for a malformed file. */
int template_load(template_t *t, const char *name, err_t *err);
/* Free the template's strings and zero *t. */
void template_free(template_t *t);

/* The names of the built-in templates, NULL-terminated. */
extern const char *const template_builtin_names[];

/* Render the full, untruncated text of a row (without tokenizer special tokens). Returns a
 * malloc'd buffer (free() it) and sets *len. */
char *template_render(const template_t *t, const row_parts_t *r, size_t *len);

/* ---------------------------------------------------------------- encoding -------------- */

typedef enum {
    TRUNC_BALANCED = 0, // per-part budgets; each part keeps its start (default)
    TRUNC_KEEP_END,     // the same budgets; each part keeps its end (the last turns)
    TRUNC_TAIL,         // the whole sequence is cut at max_length, keeping its start
} trunc_policy_t;

/* Parse "balanced", "keep_end" or "tail". Returns 0, or -1 with err set. */
int trunc_policy_parse(const char *s, trunc_policy_t *out, err_t *err);
/* The name trunc_policy_parse accepts for p (a static string). */
const char *trunc_policy_name(trunc_policy_t p);

/* A template bound to a tokenizer: the fixed strings are tokenised once here. */
typedef struct encoder encoder_t;

/* Create an encoder. max_length counts every id, special ones included. Returns NULL with err
 * (code EXIT_USAGE) when the template's fixed tokens and the special affixes leave no room for
 * text within max_length, or when the tokenizer fails on a fixed string. `tmpl` and `tok` must
 * outlive the encoder. */
encoder_t *encoder_create(const template_t *tmpl, const tokenizer_t *tok, trunc_policy_t policy,
                          int max_length, err_t *err);
/* Free the encoder and its tokenised fixed strings; NULL is a no-op. The template and tokenizer are
 * not freed. */
void encoder_free(encoder_t *e);

/* The ids every row spends on fixed text: the special affixes, the template's prefix and
 * suffix, and the before/after strings of one block (TPL_BLOCKS) or one turn (TPL_TURNS).
 * max_length minus this is what the longest row can keep of its own text. */
size_t encoder_fixed_ids(const encoder_t *e);

/* What encoding one row did, for statistics and tests. */
typedef struct {
    size_t full_len;           // ids the row would have without truncation
    size_t part_len[N_PARTS];  // ids of each part before truncation
    size_t part_kept[N_PARTS]; // ids of each part kept (0 when TRUNC_TAIL cut the row)
    size_t fixed_len;          // ids of fixed strings and affixes kept (0 when TRUNC_TAIL cut)
    int truncated;             // 1 when anything was cut
} encode_info_t;

/* Encode a row into out (appended; clear it first if needed). The result never exceeds
 * max_length ids. `info` may be NULL. Returns 0, or -1 with err set (tokenizer failures). */
int encoder_encode(const encoder_t *e, const row_parts_t *r, ids_t *out, encode_info_t *info,
                   err_t *err);

/* The budgets of TRUNC_BALANCED and TRUNC_KEEP_END: given the ids available to text (R) and
 * each part's length n[], write how many ids each part keeps to keep[]. Exposed for tests;
 * docs/templates.md gives the same arithmetic. Guarantees sum(keep) <= R and keep[i] <= n[i]. */
void trunc_budgets(size_t R, const size_t n[N_PARTS], size_t keep[N_PARTS]);

/* ---------------------------------------------------------------- batching -------------- */
/* Two pieces, both independent of models and tokenizers so that tests can drive them directly:
 *   - batch_plan_build: sort rows by token length, longest first, and pack them greedily into
 *     batches of at most batch_size sequences and batch_tokens ids. Longest first means the
 *     batch most likely to run out of device memory runs first (fail fast, before hours of work),
 *     and sequences of similar length share a batch.
 *   - batch_encoder_*: encode every row (text -> ids) on a pool of threads, started before the
 *     model is loaded so that tokenisation overlaps the load. Sorting by length needs every
 *     length, so rows are encoded up front rather than one batch ahead of the model.
 * Restoring input order is the caller's job: plan.order[k] is the input row of the k-th slot. */

typedef struct {
    size_t n_rows;       // rows planned
    size_t *order;       // (n_rows) input row indices, longest first (ties: input order)
    size_t n_batches;    // batches planned
    size_t *start;       // (n_batches + 1) batch b holds order[start[b] .. start[b+1])
} batch_plan_t;

/* Plan batches for rows with lens[0..n). Each batch has at most batch_size rows and, unless one
 * row alone is longer, at most batch_tokens ids in all; such a row gets a batch of its own.
 * Returns 0, or -1 with err set when batch_size < 1 or batch_tokens < 1. */
int batch_plan_build(batch_plan_t *plan, const size_t *lens, size_t n, int batch_size,
                     size_t batch_tokens, err_t *err);
/* Free the plan's arrays and zero *plan. */
void batch_plan_free(batch_plan_t *plan);

/* Encode row `row` into out (empty on entry). Called from several threads at once, each with a
 * different row. Returns 0, or -1 with err set. */
typedef int (*batch_encode_fn)(void *ctx, size_t row, ids_t *out, err_t *err);

typedef struct batch_encoder batch_encoder_t;

/* Start encoding rows 0..n_rows-1 with fn on `threads` threads (< 1: one per core). Returns at
 * once; the work proceeds in the background. */
batch_encoder_t *batch_encoder_start(size_t n_rows, int threads, batch_encode_fn fn, void *ctx);

/* Wait for every row. On success returns 0 and hands over the results: *rows is an array of
 * n_rows ids_t (free each with ids_free, then the array with free). On failure returns -1 with
 * err set to the error of the lowest-numbered failing row (so the report does not depend on
 * thread timing) and frees everything. be is freed either way. When busy_s is not NULL it gets
 * the seconds from start until the last thread finished (the pool's own time, whatever the
 * caller did meanwhile). */
int batch_encoder_wait(batch_encoder_t *be, ids_t **rows, double *busy_s, err_t *err);

/* Stop early (e.g. the model failed to load) and free everything. */
void batch_encoder_cancel(batch_encoder_t *be);

#endif

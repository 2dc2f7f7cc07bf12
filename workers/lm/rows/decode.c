/* decode.c: decode the text columns of competition CSV rows into turns.
 *
 * Each of prompt/response_a/response_b holds a JSON list of strings, one per turn, as the LMSYS
 * files do (["What is 2+2?", "And 3+3?"]). jansson does the parsing. Three deviations from plain
 * JSON are handled on purpose, because real files contain them:
 *   - null elements (a turn the model never answered) become the string "null", which is what
 *     Python's str(None)-style preprocessing of most competitors produced;
 *   - lone UTF-16 surrogate escapes (\ud83d without its pair, from truncated emoji) are replaced
 *     by U+FFFD, as Python's errors="replace" would, instead of failing the whole run;
 *   - a field that is not JSON at all (a plain string in a hand-made file) is one turn, verbatim.
 * A field that is valid JSON but not a list (42, "text", {...}) is rejected: it is more likely a
 * broken export than text, and guessing would silently change what the model reads.
 *
 * It does not apply templates or tokenise (template.c, encoder.c).
 */
#include "rows.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "exit_codes.h"

const char *const rows_part_names[N_PARTS] = {"prompt", "response_a", "response_b"};

/* Parse the 4 hex digits at s. Returns the value, or -1 when they are not all hex. */
static long hex4(const char *s) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Replace every \uXXXX escape that is a lone surrogate with \uFFFD (same length, so in place on
 * a copy). Escapes are recognised by walking backslash pairs, so "\\ud800" (an escaped backslash
 * then text) is left alone. Returns a malloc'd copy when something was replaced, else NULL. */
static char *fix_lone_surrogates(const char *s, size_t len) {
    char *copy = NULL;
    size_t i = 0;
    while (i + 1 < len) {
        if (s[i] != '\\') { i++; continue; }
        if (s[i + 1] != 'u' || i + 6 > len) { i += 2; continue; }
        long u = hex4(s + i + 2);
        if (u < 0xD800 || u > 0xDFFF) { i += 6; continue; }
        if (u <= 0xDBFF && i + 12 <= len && s[i + 6] == '\\' && s[i + 7] == 'u') {
            long lo = hex4(s + i + 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) { i += 12; continue; } // a valid pair
        }
        if (!copy) {
            copy = xmalloc(len + 1);
            memcpy(copy, s, len);
            copy[len] = '\0';
        }
        memcpy(copy + i + 2, "FFFD", 4);
        i += 6;
    }
    return copy;
}

/* A phrase for j's JSON type ("a list", "a number", ...) for messages; a static string. */
static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a JSON value";
}

/* Append a NUL-terminated copy of s[0..len) as a new turn of t. */
static void turns_push(turns_t *t, const char *s, size_t len) {
    t->text = xrealloc(t->text, (t->n + 1) * sizeof *t->text);
    t->len = xrealloc(t->len, (t->n + 1) * sizeof *t->len);
    char *c = xmalloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    t->text[t->n] = c;
    t->len[t->n] = len;
    t->n++;
}

int rows_decode_field(const char *s, size_t len, turns_t *out, err_t *err) {
    memset(out, 0, sizeof *out);
    size_t k = 0;
    while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r' || s[k] == '\n')) k++;

    char *fixed = fix_lone_surrogates(s, len);
    const char *src = fixed ? fixed : s;
    json_error_t je;
    json_t *j = json_loadb(src, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    free(fixed);

    if (k == len || s[k] != '[') {
        if (j) {
            int rc = err_fmt(err, "expected a JSON list of strings such as [\"text\"], found %s",
                             json_kind(j));
            json_decref(j);
            return rc;
        }
        turns_push(out, s, len); // plain text: one turn, verbatim
        return 0;
    }
    if (!j) return err_fmt(err, "invalid JSON list at character %d: %s", je.position + 1, je.text);
    if (!json_is_array(j)) { // cannot happen after '[', but keep the invariant explicit
        json_decref(j);
        return err_fmt(err, "expected a JSON list of strings");
    }
    size_t i;
    json_t *el;
    json_array_foreach(j, i, el) {
        if (json_is_string(el)) {
            turns_push(out, json_string_value(el), json_string_length(el));
        } else if (json_is_null(el)) {
            turns_push(out, "null", 4);
        } else {
            int rc = err_fmt(err, "list element %zu is %s; expected a string or null", i + 1,
                             json_kind(el));
            json_decref(j);
            turns_free(out);
            return rc;
        }
    }
    json_decref(j);
    return 0;
}

void turns_free(turns_t *t) {
    for (size_t i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
    free(t->len);
    memset(t, 0, sizeof *t);
}

void row_parts_free(row_parts_t *r) {
    for (int p = 0; p < N_PARTS; p++) turns_free(&r->part[p]);
}

int rows_find_cols(const csv_table_t *t, const char *file, row_cols_t *cols, err_t *err) {
    static const char *const req[1 + N_PARTS] = {"id", "prompt", "response_a", "response_b"};
    int idx[1 + N_PARTS];
    for (int c = 0; c < 1 + N_PARTS; c++) {
        idx[c] = csv_table_col(t, req[c]);
        if (idx[c] < 0) {
            char have[512] = "";
            size_t used = 0;
            for (size_t h = 0; h < t->n_cols && used < sizeof have - 1; h++) {
                int w = snprintf(have + used, sizeof have - used, "%s%s", h ? "," : "", t->header[h]);
                if (w < 0) break;
                used += (size_t)w;
            }
            return err_code(err, EXIT_DATAERR,
                            "%s: missing required column '%s' (the header has: %.400s); expected "
                            "id,prompt,response_a,response_b", file, req[c], have);
        }
    }
    cols->id = idx[0];
    for (int p = 0; p < N_PARTS; p++) cols->part[p] = idx[1 + p];
    return 0;
}

int rows_decode_row(const csv_table_t *t, const row_cols_t *cols, size_t row, const char *file,
                    row_parts_t *out, err_t *err) {
    memset(out, 0, sizeof *out);
    for (int p = 0; p < N_PARTS; p++) {
        size_t c = (size_t)cols->part[p];
        if (rows_decode_field(csv_cell(t, row, c), csv_cell_len(t, row, c), &out->part[p], err) < 0) {
            row_parts_free(out);
            err_prefix(err, "%s: line %zu: id %.64s: column '%s'", file, t->lines[row],
                       csv_cell(t, row, (size_t)cols->id), rows_part_names[p]);
            if (err) err->code = EXIT_DATAERR;
            return -1;
        }
    }
    return 0;
}

/* csv_io.c: libcsv-backed table reader with per-row line numbers, and a minimal-quoting writer.
 *
 * Line numbers: libcsv reports fields and row ends but not positions, so we feed it one physical
 * line at a time and note the current line when a row begins. A quoted field with embedded
 * newlines spans several physical lines; its row still starts where its first field started:
 * before feeding a line we note it as the start of the next row if libcsv has no row begun.
 *
 * Memory: fields live in large chunks owned by the table (one malloc per ~1 MB, not per cell),
 * which keeps parsing a 25k-row file at a few milliseconds.
 */
#include "csv_io.h"

#include <csv.h>

#include "atomic_file.h"

/* A chunk of field storage; chunks form a list owned by the table (csv_table_t.arena). */
typedef struct csv_chunk {
    struct csv_chunk *next; // the chunk filled before this one
    size_t used, cap;       // bytes used / available in data
    char data[];            // (cap) NUL-terminated fields, back to back
} csv_chunk_t;

#define CSV_CHUNK_BYTES (1u << 20)

/* Copy len bytes plus a NUL into the table's arena. */
static char *arena_copy(csv_table_t *t, const void *s, size_t len) {
    csv_chunk_t *c = t->arena;
    if (!c || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > CSV_CHUNK_BYTES ? len + 1 : CSV_CHUNK_BYTES;
        c = xmalloc(sizeof *c + cap);
        c->next = t->arena, c->used = 0, c->cap = cap;
        t->arena = c;
    }
    char *f = c->data + c->used;
    if (len) memcpy(f, s, len);
    f[len] = '\0';
    c->used += len + 1;
    return f;
}

typedef struct {
    csv_table_t *t;        // the table being filled
    size_t cap_rows;       // rows allocated in cells/lens/lines
    char **row;            // fields of the row being assembled
    size_t *row_lens;      // (row_cap) byte length of each field in row
    size_t row_n, row_cap;  // fields in row / allocated
    size_t line;           // current physical line (1-based)
    size_t row_line;       // line where the current row began (0: no row in progress)
    size_t next_row_line;  // line where a row beginning now would start
    int header_done;       // the first record (the header) has been stored
    const char *name;      // file name for messages
    err_t *err;            // where the first error goes
    int failed;  // an error was recorded; later callbacks are ignored
} csv_ctx_t;

/* libcsv field callback: copy the field into the arena and append it to the row being assembled. */
static void on_field(void *s, size_t len, void *data) {
    csv_ctx_t *c = data;
    if (c->failed) return;
    if (c->row_n == 0 && c->row_line == 0) c->row_line = c->next_row_line;
    if (c->row_n == c->row_cap) {
        c->row_cap = c->row_cap ? 2 * c->row_cap : 8;
        c->row = xrealloc(c->row, c->row_cap * sizeof *c->row);
        c->row_lens = xrealloc(c->row_lens, c->row_cap * sizeof *c->row_lens);
    }
    c->row[c->row_n] = arena_copy(c->t, s, len);
    c->row_lens[c->row_n++] = len;
}

/* Forget the row being assembled (its fields stay in the arena). */
static void drop_row(csv_ctx_t *c) {
    c->row_n = 0;
    c->row_line = 0;
}

/* libcsv record callback: the first record becomes the header; later ones must have as many fields
 * and are appended with their starting line. */
static void on_row(int term, void *data) {
    (void)term;
    csv_ctx_t *c = data;
    csv_table_t *t = c->t;
    if (c->failed) return drop_row(c);
    if (c->row_line == 0) c->row_line = c->next_row_line;
    if (!c->header_done) {
        t->n_cols = c->row_n;
        t->header = xmalloc((c->row_n ? c->row_n : 1) * sizeof *t->header);
        memcpy(t->header, c->row, c->row_n * sizeof *c->row);
        c->row_n = 0;
        c->row_line = 0;
        c->header_done = 1;
        return;
    }
    if (c->row_n != t->n_cols) {
        err_fmt(c->err, "%s: line %zu: expected %zu fields as in the header, found %zu", c->name,
                c->row_line, t->n_cols, c->row_n);
        c->failed = 1;
        return drop_row(c);
    }
    if (t->n_rows == c->cap_rows) {
        c->cap_rows = c->cap_rows ? 2 * c->cap_rows : 64;
        t->cells = xrealloc(t->cells, c->cap_rows * t->n_cols * sizeof *t->cells);
        t->lens = xrealloc(t->lens, c->cap_rows * t->n_cols * sizeof *t->lens);
        t->lines = xrealloc(t->lines, c->cap_rows * sizeof *t->lines);
    }
    memcpy(t->cells + t->n_rows * t->n_cols, c->row, t->n_cols * sizeof *c->row);
    memcpy(t->lens + t->n_rows * t->n_cols, c->row_lens, t->n_cols * sizeof *c->row_lens);
    t->lines[t->n_rows++] = c->row_line;
    c->row_n = 0;
    c->row_line = 0;
}

/* libcsv's space test: nothing is a space. By default libcsv trims unquoted blanks at both ends
 * of a field, so a response "  lead " would reach a worker as "lead". */
static int no_space(unsigned char c) {
    (void)c;
    return 0;
}

int csv_table_parse(csv_table_t *t, const char *data, size_t len, const char *name, err_t *err) {
    memset(t, 0, sizeof *t);
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        return err_fmt(err, "%s: csv_init failed", name);
    csv_set_space_func(&p, no_space);
    csv_ctx_t c = {.t = t, .line = 1, .name = name, .err = err};
    size_t off = 0;
    // Skip a UTF-8 byte order mark: Excel writes one, and it must not become part of "id".
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) off = 3;
    while (off < len && !c.failed) {
        const char *nl = memchr(data + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - data) + 1 : len;
        if (p.pstate == 0) c.next_row_line = c.line;  // libcsv's ROW_NOT_BEGUN
        if (csv_parse(&p, data + off, end - off, on_field, on_row, &c) != end - off) {
            err_fmt(err, "%s: line %zu: %s", name, c.line, csv_strerror(csv_error(&p)));
            c.failed = 1;
            break;
        }
        off = end;
        c.line++;
    }
    if (!c.failed && csv_fini(&p, on_field, on_row, &c) != 0) {
        err_fmt(err, "%s: line %zu: %s (unterminated quoted field?)", name,
                c.row_line ? c.row_line : c.line, csv_strerror(csv_error(&p)));
        c.failed = 1;
    }
    csv_free(&p);
    drop_row(&c);
    free(c.row), free(c.row_lens);
    if (!c.failed && !c.header_done) {
        err_fmt(err, "%s: empty file: expected a header row", name);
        c.failed = 1;
    }
    if (c.failed) {
        csv_table_free(t);
        return -1;
    }
    return 0;
}

int csv_table_read(csv_table_t *t, const char *path, err_t *err) {
    size_t len;
    char *data = fs_read_all(path, FS_LIMIT_CSV, &len, err);
    if (!data) {
        memset(t, 0, sizeof *t);
        return -1;
    }
    int rc = csv_table_parse(t, data, len, path, err);
    free(data);
    return rc;
}

void csv_table_truncate(csv_table_t *t, size_t n) {
    if (t->n_rows > n) t->n_rows = n;   // the arena keeps the rest until csv_table_free
}

void csv_table_free(csv_table_t *t) {
    for (csv_chunk_t *c = t->arena, *next; c; c = next) next = c->next, free(c);
    free(t->cells), free(t->lens), free(t->lines), free(t->header);
    memset(t, 0, sizeof *t);
}

int csv_table_col(const csv_table_t *t, const char *name) {
    for (size_t i = 0; i < t->n_cols; i++)
        if (strcmp(t->header[i], name) == 0) return (int)i;
    return -1;
}

int csv_write_field(FILE *f, const char *s, size_t len) {
    // Blanks at either end are quoted too: a reader that trims unquoted blanks (libcsv's
    // default) must still get the field byte for byte.
    int quote = len && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t');
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) return fwrite(s, 1, len, f) == len ? 0 : -1;
    if (fputc('"', f) == EOF) return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' && fputc('"', f) == EOF) return -1;
        if (fputc(s[i], f) == EOF) return -1;
    }
    return fputc('"', f) == EOF ? -1 : 0;
}

int csv_write_row(FILE *f, const char *const *fields, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i && fputc(',', f) == EOF) return -1;
        if (csv_write_field(f, fields[i], strlen(fields[i])) != 0) return -1;
    }
    return fputc('\n', f) == EOF ? -1 : 0;
}

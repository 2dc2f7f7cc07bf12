/* csv_io.h: read a whole CSV into memory with libcsv, and write fields with minimal quoting.
 *
 * The reader keeps, for every data row, the 1-based line where it starts, so that every error
 * about a row can name its line. It requires a header row and the same number of fields in
 * every row. Every field is kept byte for byte: blanks around an unquoted field are part of it
 * (libcsv would trim them by default). The writer quotes only when a field holds a comma, a
 * quote, CR or LF (pandas' QUOTE_MINIMAL), or begins or ends with a blank (so that a trimming
 * reader keeps it), so our CSVs look like the competition's.
 *
 * Cost: fields are copied into 1 MB chunks; a 25k-row LMSYS test.csv (~100 MB of text) reads in well under a
 * second. It is not meant for files larger than memory.
 */
#ifndef COMMON_CSV_IO_H
#define COMMON_CSV_IO_H

#include <stddef.h>
#include <stdio.h>
#include "check.h"

typedef struct {
    size_t n_cols;      // columns, from the header
    char **header;      // (n_cols) column names
    size_t n_rows;      // data rows (the header excluded)
    char **cells;       // (n_rows * n_cols) NUL-terminated fields, row-major
    size_t *lens;       // (n_rows * n_cols) byte length of each field
    size_t *lines;      // (n_rows) 1-based line number where each data row starts
    struct csv_chunk *arena; // storage of every field and header name (private)
} csv_table_t;

/* Parse CSV text (len bytes) into t. `name` is used in error messages. Returns 0, or -1 with
 * err naming the file and line. t is left zeroed on failure. */
int csv_table_parse(csv_table_t *t, const char *data, size_t len, const char *name, err_t *err);

/* Read and parse the file at path: a regular file of at most FS_LIMIT_CSV (4 GiB) bytes.
 * Returns 0, or -1 with err set. */
int csv_table_read(csv_table_t *t, const char *path, err_t *err);

/* Keep only the first n data rows of t (nothing changes when it has n or fewer). */
void csv_table_truncate(csv_table_t *t, size_t n);

/* Free everything t owns and zero it. Safe on a zeroed table. */
void csv_table_free(csv_table_t *t);

/* Index of the column called name, or -1. */
int csv_table_col(const csv_table_t *t, const char *name);

/* Cell (row, col). Both must be in range. */
static inline const char *csv_cell(const csv_table_t *t, size_t row, size_t col) {
    return t->cells[row * t->n_cols + col];
}
/* Byte length of cell (row, col). Both must be in range. */
static inline size_t csv_cell_len(const csv_table_t *t, size_t row, size_t col) {
    return t->lens[row * t->n_cols + col];
}

/* Write one field with minimal quoting (no separator). Returns 0 or -1 on a stdio error. */
int csv_write_field(FILE *f, const char *s, size_t len);

/* Write fields[0..n) as one row terminated by "\n". Returns 0 or -1 on a stdio error. */
int csv_write_row(FILE *f, const char *const *fields, size_t n);

#endif

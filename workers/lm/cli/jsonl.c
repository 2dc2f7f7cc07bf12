/* jsonl.c: JSON-lines framing for the inspection subcommands (see jsonl.h). */
#include "jsonl.h"

#include <string.h>
#include <sys/types.h>

#include "exit_codes.h"
#include "json_util.h"

void jsonl_reader_init(jsonl_reader_t *r, FILE *f, const char *name) {
    memset(r, 0, sizeof *r);
    r->in = f;
    r->name = name;
}

void jsonl_reader_free(jsonl_reader_t *r) {
    free(r->line);
    memset(r, 0, sizeof *r);
}

json_t *jsonl_next(jsonl_reader_t *r, int *eof, err_t *err) {
    ssize_t len;
    *eof = 0;
    while ((len = getline(&r->line, &r->cap, r->in)) >= 0) {
        r->lineno++;
        if (strspn(r->line, " \t\r\n") == (size_t)len) continue;  // blank line
        char where[1024];
        snprintf(where, sizeof where, "%s:%ld", r->name, r->lineno);
        json_t *j = json_util_load_buf(r->line, (size_t)len, where, err);
        if (j && !json_is_object(j)) {
            json_decref(j);
            err_fmt(err, "%s: expected a JSON object per line", where);
            return NULL;
        }
        return j;
    }
    *eof = 1;
    return NULL;
}

void jsonl_begin_object(FILE *f, const json_t *id) {
    fputc('{', f);
    if (!id) return;
    char *s = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(f, "\"id\":%s,", s ? s : "null");
    free(s);
}

int jsonl_each(FILE *f, const char *name, jsonl_fn_t fn, void *ctx, err_t *err) {
    jsonl_reader_t rd;
    jsonl_reader_init(&rd, f, name);
    int rc = EXIT_OK;
    for (;;) {
        int eof;
        json_t *j = jsonl_next(&rd, &eof, err);
        if (!j) {
            if (!eof) rc = EXIT_DATAERR;
            break;
        }
        rc = fn(j, rd.lineno, ctx, err);
        json_decref(j);
        if (rc != EXIT_OK) break;
    }
    jsonl_reader_free(&rd);
    return rc;
}

/* jsonl.h: the JSON-lines plumbing shared by `lm-worker tokenize` and `lm-worker logits`:
 * read one object per non-blank line of a stream (errors name "<stream>:<line>", the stream being
 * "stdin" or a file's path), and start an output object that echoes the input's optional "id". Parsing is jansson's; this only frames lines. */
#ifndef LM_JSONL_H
#define LM_JSONL_H

#include <jansson.h>
#include <stdio.h>
#include "check.h"

typedef struct {
    FILE *in;         // the stream read (stdin, or bench --ids's file)
    const char *name; // what errors call it: "stdin" or the file's path (borrowed)
    char *line;       // getline buffer
    size_t cap;       // bytes allocated in line
    long lineno;      // 1-based number of the line last read
} jsonl_reader_t;

/* Start reading f, named `name` in errors. Zero state; free with jsonl_reader_free. */
void jsonl_reader_init(jsonl_reader_t *r, FILE *f, const char *name);
/* Free the line buffer and zero *r; the stream is not closed. */
void jsonl_reader_free(jsonl_reader_t *r);

/* Parse the next non-blank line as a JSON object. Returns it (a new reference) with *eof = 0;
 * NULL with *eof = 1 at end of input; NULL with *eof = 0 and err = "<name>:N:col: ..." when the
 * line is not valid JSON or not an object. */
json_t *jsonl_next(jsonl_reader_t *r, int *eof, err_t *err);

/* What jsonl_each calls for each object: obj is borrowed (freed after the call; json_incref what
 * must outlive it), lineno its 1-based line. Returns 0 to go on, or an exit code to stop,
 * with err set. */
typedef int (*jsonl_fn_t)(json_t *obj, long lineno, void *ctx, err_t *err);

/* Call fn(obj, lineno, ctx, err) for every JSON object line of f (named `name` in errors), in
 * order. Returns EXIT_OK at the end of input, EXIT_DATAERR with err set ("<name>:N:col: ...") for
 * a line that is not a JSON object, or the first non-zero code fn returned. */
int jsonl_each(FILE *f, const char *name, jsonl_fn_t fn, void *ctx, err_t *err);

/* Write `{` and, when id is non-NULL, `"id":<id>,` to f: the start of every output line. */
void jsonl_begin_object(FILE *f, const json_t *id);

#endif

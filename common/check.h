/* check.h: error values, check macros and always-on asserts shared by every program.
 *
 * One error style: a function that can fail returns -1 (or NULL) and fills an err_t with one
 * human sentence that names the file, line/row and field, and err->code with the exit code it
 * maps to (exit_codes.h) where that is known. The caller decides; only a program's top level
 * (main and the subcommands) prints the message and turns it into an exit status.
 * ASSERT stays on in release builds: it guards invariants, not input. Host memory exhaustion
 * aborts (xmalloc): it is not recoverable in any of our programs.
 */
#ifndef COMMON_CHECK_H
#define COMMON_CHECK_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One error message, filled by the function that failed. Callers may prefix context with
 * err_prefix(). Zero-initialise before use. */
typedef struct {
    char msg[1024];   // "file.csv: line 12: column 'id': empty id"
    int code;         // optional: an exit code the error maps to (0 = unspecified)
} err_t;

/* Format msg into err (when err is non-NULL). Always returns -1 so callers can
 * `return err_fmt(err, ...)`. */
int err_fmt(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like err_fmt, and also sets err->code. Returns -1. */
int err_code(err_t *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepend "prefix: " to err->msg (when err is non-NULL). Returns -1. */
int err_prefix(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Abort with the expression and file:line when an invariant is broken. Always compiled in. */
#define ASSERT(expr)                                                                    \
    do {                                                                                \
        if (!(expr)) {                                                                  \
            fprintf(stderr, "assertion failed: %s at %s:%d\n", #expr, __FILE__, __LINE__); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* malloc/calloc/realloc that abort with file:line on exhaustion of host memory. Host memory
 * exhaustion is not recoverable in any of our programs; device memory is handled separately. */
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)

#endif

/* plan_fields.h: typed, position-aware access to the members of the plan's JSON. Private to the
 * plan module (plan.c, plan_fields.c, plan_runtime.c) and its tests; other modules go through
 * orch.h and planning.h (see orch.h for the header scheme).
 *
 * jansson keeps no source positions in its values, yet every plan error must name the JSON path
 * and the line:column of the offending key or value. The context below tracks the JSON path
 * being validated; when something is wrong, plan_locate walks the raw plan text along that path
 * to find the byte offset, using jansson itself (json_loadb with JSON_DECODE_ANY |
 * JSON_DISABLE_EOF_CHECK) to decode each key and to step over each sibling value. We only scan
 * whitespace, ':' and ',' by hand; no JSON is parsed outside jansson. Locating runs only on
 * the error path and never fails hard: when the text does not match the path (which cannot
 * happen for text jansson accepted), it points at the deepest container it reached.
 */
#ifndef ORCH_PLAN_FIELDS_H
#define ORCH_PLAN_FIELDS_H

#include <jansson.h>
#include <stddef.h>

#include "check.h"
#include "planning.h"

#define PLAN_MAX_DEPTH 8

typedef struct {
    const char *key;   // object member name (borrowed), or NULL for an array element
    int index;         // array index when key is NULL
} pseg_t;

typedef struct {
    const char *name;                // plan file name, for messages
    const char *text;                // the raw JSON text jansson parsed
    size_t len;                      // bytes in text
    const char *base_dir;            // directory relative paths resolve against
    pseg_t path[PLAN_MAX_DEPTH];     // (depth) JSON path of the member being validated
    int depth;                       // segments in path
    err_t *err;                      // where failures are reported (not owned)
} pctx_t;

/* Byte offset in text of the value at path (or of its key when at_key and the last segment is
 * an object member). Falls back to the deepest container found. Never reads out of bounds. */
size_t plan_locate(const char *text, size_t len, const pseg_t *path, int depth, int at_key);

/* 1-based line and column (in UTF-8 characters, as jansson counts them) of byte offset off. */
void plan_line_col(const char *text, size_t len, size_t off, int *line, int *col);

/* Push an object member `key` (not copied; must outlive its segment) onto the current path; the
 * path must be shallower than PLAN_MAX_DEPTH. */
void pctx_key(pctx_t *c, const char *key);
/* Push an array index onto the current path; the path must be shallower than PLAN_MAX_DEPTH. */
void pctx_index(pctx_t *c, int index);
/* Pop the last path segment; the path must not be empty. */
void pctx_pop(pctx_t *c);

/* Set err to "<name>:<line>:<col>: <path>: <message>" for the current path, pointing at the key
 * (at_key) or the value. Returns -1. */
int pctx_fail(pctx_t *c, int at_key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));


/* Reject members of obj not in `allowed` (NULL-terminated), at the key, with a "did you mean"
 * hint for a close name and, when the key is one of `elsewhere`, the hint `elsewhere_hint`.
 * Returns 0 or -1. */
int pf_check_keys(pctx_t *c, json_t *obj, const char *const *allowed, const char *const *elsewhere,
                  const char *elsewhere_hint);

/* The closest of names (NULL-terminated) to s when it is close enough to be a typo, else NULL. */
const char *pf_suggest(const char *s, const char *const *names);

/* Member `key` of obj, or NULL when absent or JSON null (null means "use the default"). */
json_t *pf_member(json_t *obj, const char *key);

/* Typed getters. Each leaves *out unchanged when the member is absent (or fails when required),
 * and fails with the member's path and position on a wrong type or value. Strings must be
 * non-empty and free of NUL bytes. Return 0 or -1. */
int pf_string(pctx_t *c, json_t *obj, const char *key, int required, char **out);
/* pf_string, then joined with c->base_dir unless absolute (*out replaced, the old value freed). */
int pf_path(pctx_t *c, json_t *obj, const char *key, int required, char **out);
/* An integer in [lo, hi]. */
int pf_int(pctx_t *c, json_t *obj, const char *key, long long lo, long long hi, int *out);
/* A finite number in [lo, hi] ((lo, hi] when lo_open); fails with "x is out of range [lo, hi]". */
int pf_number(pctx_t *c, json_t *obj, const char *key, double lo, int lo_open, double hi, double *out);
/* A string among names (NULL-terminated); *out receives its index. `noun` names the kind in errors. */
int pf_enum(pctx_t *c, json_t *obj, const char *key, const char *noun, const char *const *names,
            int *out);
/* A list of strings with at least min_n elements; empty strings allowed when allow_empty. */
int pf_string_list(pctx_t *c, json_t *obj, const char *key, int min_n, int allow_empty, char ***out,
                   int *n);

/* Check that v (at the current path) is a string that is one of names; set *out to its index.
 * Fails with "unknown <noun> 'x' (expected a, b or c)". */
int pf_enum_value(pctx_t *c, json_t *v, const char *noun, const char *const *names, int *out);

/* Join base and p unless p is absolute. Returns a malloc'd string. */
char *pf_join(const char *base, const char *p);

/* The JSON type of v as a word ("string", "number", ...), for messages. */
const char *pf_type_name(const json_t *v);

/* Free n strings of v and v itself; NULL v is a no-op. */
void pf_strv_free(char **v, int n);

/* Values plan.c accepts for `truncation` and the built-in `template` names (NULL-terminated);
 * they mirror lm-worker's lists, and test_plan checks that they agree. */
extern const char *const plan_truncations[];
extern const char *const plan_template_builtins[];

#endif

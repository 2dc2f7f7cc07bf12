/* json_util.h: thin helpers over jansson so that every JSON error names file:line:column. */
#ifndef COMMON_JSON_UTIL_H
#define COMMON_JSON_UTIL_H

#include <jansson.h>
#include "check.h"

/* Load the JSON file at path: a regular file of at most FS_LIMIT_JSON (64 MiB) bytes, read with
 * fs_read_all. Returns a new reference, or NULL with err = "path:line:col: msg" (or naming the
 * file when it cannot be read). */
json_t *json_util_load_file(const char *path, err_t *err);

/* Parse len bytes of JSON text; `name` is used in errors. Same contract as json_util_load_file. */
json_t *json_util_load_buf(const char *buf, size_t len, const char *name, err_t *err);

#endif

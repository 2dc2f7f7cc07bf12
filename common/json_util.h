/* json_util.h: thin helpers over jansson so that every JSON error names file:line:column. */
#ifndef COMMON_JSON_UTIL_H
#define COMMON_JSON_UTIL_H

#include <jansson.h>
#include "check.h"

/* Load the JSON file at path. Returns a new reference, or NULL with err = "path:line:col: msg". */
json_t *json_util_load_file(const char *path, err_t *err);

/* Parse len bytes of JSON text; `name` is used in errors. Same contract as json_util_load_file. */
json_t *json_util_load_buf(const char *buf, size_t len, const char *name, err_t *err);

#endif

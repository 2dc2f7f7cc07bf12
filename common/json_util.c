/* json_util.c: jansson loading with file:line:column errors. */
#include "json_util.h"

json_t *json_util_load_buf(const char *buf, size_t len, const char *name, err_t *err) {
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!j) err_fmt(err, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column, je.text);
    return j;
}

json_t *json_util_load_file(const char *path, err_t *err) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        if (je.line <= 0) err_fmt(err, "%s: cannot read: %s", path, je.text);
        else err_fmt(err, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    }
    return j;
}

/* json_util.c: jansson loading with file:line:column errors. */
#include "json_util.h"

#include "atomic_file.h"

/* json_loadb with flags; on failure err = "name:line:col: invalid JSON: ...". */
static json_t *load(const char *buf, size_t len, const char *name, size_t flags, err_t *err) {
    json_error_t je;
    json_t *j = json_loadb(buf, len, flags, &je);
    if (!j) err_fmt(err, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column, je.text);
    return j;
}

json_t *json_util_load_buf(const char *buf, size_t len, const char *name, err_t *err) {
    return load(buf, len, name, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, err);
}

json_t *json_util_load_file(const char *path, err_t *err) {
    size_t len;
    char *buf = fs_read_all(path, FS_LIMIT_JSON, &len, err);   // refuses /dev/zero, FIFOs, huge files
    if (!buf) return NULL;
    json_t *j = load(buf, len, path, JSON_REJECT_DUPLICATES, err);
    free(buf);
    return j;
}

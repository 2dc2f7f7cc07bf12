/* safetensors.c: safetensors header validation, sharded checkpoints and fp32 conversion (see
 * safetensors.h for the rules we enforce and why).
 *
 * Files are mmapped read-only (advised MADV_SEQUENTIAL; st_prefetch advises WILLNEED per tensor);
 * nothing is copied until st_to_f32 or a backend's weight_upload reads t->data. The JSON header is parsed with
 * jansson (duplicate keys rejected). Errors always name the file and, where there is one, the
 * tensor, because a user facing a broken 16 GB checkpoint needs to know which shard to fetch
 * again.
 */
#include "safetensors.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_util.h"

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_N_DTYPES] = {
    [ST_F32] = {"F32", 4},  [ST_BF16] = {"BF16", 2}, [ST_F16] = {"F16", 2},       [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8},  [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2},       [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype_t dt) { return dt < ST_N_DTYPES ? st_dtypes[dt].name : "?"; }
size_t st_dtype_size(st_dtype_t dt) { return dt < ST_N_DTYPES ? st_dtypes[dt].size : 0; }

/* Map a safetensors dtype name ("BF16") to *out. Returns 0, or -1 when unknown. */
static int dtype_parse(const char *s, st_dtype_t *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = (st_dtype_t)i;
            return 0;
        }
    return -1;
}

/* A tensor's header entry while validating one file. */
typedef struct {
    const char *name;    // tensor name (borrowed from the header JSON)
    uint64_t begin, end; // data_offsets: byte range [begin, end) inside the data section
} span_t;

/* qsort order of spans by begin, then end. */
static int span_cmp(const void *a, const void *b) {
    const span_t *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Read a non-negative JSON integer. */
static int json_uint(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *out = (uint64_t)json_integer_value(j);
    return 0;
}

/* Validate one tensor entry and fill t (name not set). data_len bounds the offsets. */
static int entry_parse(const json_t *v, const char *name, const char *tname, uint64_t data_len, st_tensor_t *t,
                       span_t *sp, err_t *err) {
    if (!json_is_object(v)) return err_fmt(err, "%s: tensor '%s': header entry is not an object", name, tname);
    const json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
                 *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return err_fmt(err, "%s: tensor '%s': missing or non-string \"dtype\"", name, tname);
    if (dtype_parse(json_string_value(jd), &t->dtype))
        return err_fmt(err, "%s: tensor '%s': unknown dtype \"%s\"", name, tname, json_string_value(jd));
    if (!json_is_array(js)) return err_fmt(err, "%s: tensor '%s': missing or non-array \"shape\"", name, tname);
    if (json_array_size(js) > ST_MAX_DIMS)
        return err_fmt(err, "%s: tensor '%s': %zu dimensions (at most %d supported)", name, tname,
                       json_array_size(js), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    uint64_t n = 1, esize = st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim;
        if (json_uint(json_array_get(js, (size_t)d), &dim))
            return err_fmt(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", name, tname, d);
        /* Every count must fit the data area, so any product above it is already an error. */
        if (dim != 0 && n > (data_len / esize) / dim)
            return err_fmt(err, "%s: tensor '%s': shape is larger than the file's %" PRIu64 " data bytes", name,
                           tname, data_len);
        n *= dim;
        t->shape[d] = (int64_t)dim;
    }
    t->n_elems = (int64_t)n;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || json_uint(json_array_get(jo, 0), &sp->begin) ||
        json_uint(json_array_get(jo, 1), &sp->end))
        return err_fmt(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end] non-negative integers", name,
                       tname);
    if (sp->begin > sp->end || sp->end > data_len)
        return err_fmt(err,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") are outside the data area "
                       "(%" PRIu64 " bytes)",
                       name, tname, sp->begin, sp->end, data_len);
    if (sp->end - sp->begin != n * esize)
        return err_fmt(err,
                       "%s: tensor '%s': data_offsets span %" PRIu64 " bytes but shape x %s needs %" PRIu64, name,
                       tname, sp->end - sp->begin, st_dtype_name(t->dtype), n * esize);
    sp->name = tname;
    return 0;
}

/* The reference implementation requires the tensors to tile the data area exactly. */
static int spans_check(span_t *sp, size_t n, uint64_t data_len, const char *name, err_t *err) {
    qsort(sp, n, sizeof *sp, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (sp[i].begin < at)
            return err_fmt(err, "%s: tensor '%s': data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s'", name,
                           sp[i].name, sp[i].begin, sp[i].end, sp[i - 1].name);
        if (sp[i].begin > at)
            return err_fmt(err, "%s: tensor '%s': %" PRIu64 " unused bytes before its data at %" PRIu64, name,
                           sp[i].name, sp[i].begin - at, sp[i].begin);
        at = sp[i].end;
    }
    if (at != data_len)
        return err_fmt(err, "%s: %" PRIu64 " bytes after the last tensor are not described by the header", name,
                       data_len - at);
    return 0;
}

int st_parse_buffer(st_set_t *set, const uint8_t *buf, size_t len, const char *name, int file, err_t *err) {
    if (len < 8) return err_fmt(err, "%s: file is %zu bytes, shorter than the 8-byte header size", name, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return err_fmt(err, "%s: header size %" PRIu64 " exceeds the %u-byte limit (corrupt or not safetensors)",
                       name, hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return err_fmt(err, "%s: header size %" PRIu64 " exceeds the file size %zu (truncated file?)", name, hlen,
                       len);
    if (hlen == 0 || buf[8] != '{') return err_fmt(err, "%s: header does not start with '{'", name);
    err_t jerr = {0};
    json_t *root = json_util_load_buf((const char *)buf + 8, (size_t)hlen, name, &jerr);
    if (!root) return err_fmt(err, "%s (safetensors header)", jerr.msg);
    uint64_t data_len = len - 8 - hlen;
    const uint8_t *data = buf + 8 + hlen;
    int rc = -1;
    size_t cap = json_object_size(root), ns = 0;
    span_t *sp = xcalloc(cap ? cap : 1, sizeof *sp);
    int first = set->n_tensors;
    if (!json_is_object(root)) {
        err_fmt(err, "%s: header is not a JSON object", name);
        goto done;
    }
    set->tensors = xrealloc(set->tensors, (size_t)(set->n_tensors + (int)cap + 1) * sizeof *set->tensors);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v)) {
                err_fmt(err, "%s: \"__metadata__\" is not an object", name);
                goto done;
            }
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) {
                err_fmt(err, "%s: \"__metadata__\" value for '%s' is not a string", name, mk);
                goto done;
            }
            continue;
        }
        st_tensor_t *t = &set->tensors[set->n_tensors];
        memset(t, 0, sizeof *t);
        if (entry_parse(v, name, key, data_len, t, &sp[ns], err)) goto done;
        t->data = data + sp[ns].begin;
        t->file = file;
        t->name = xstrdup(key);
        sp[ns].name = t->name;
        set->n_tensors++;
        ns++;
    }
    if (spans_check(sp, ns, data_len, name, err)) goto done;
    rc = 0;
done:
    if (rc) { // leave the set as it was before this file
        for (int i = first; i < set->n_tensors; i++) free(set->tensors[i].name);
        set->n_tensors = first;
    }
    free(sp);
    json_decref(root);
    return rc;
}

/* qsort order of tensors by name (strcmp). */
static int name_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor_t *)a)->name, ((const st_tensor_t *)b)->name);
}

int st_finish(st_set_t *set, err_t *err) {
    if (set->n_tensors > 1) qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, name_cmp);
    for (int i = 1; i < set->n_tensors; i++)
        if (strcmp(set->tensors[i - 1].name, set->tensors[i].name) == 0)
            return err_fmt(err, "tensor '%s' appears in both %s and %s", set->tensors[i].name,
                           set->files[set->tensors[i - 1].file].path, set->files[set->tensors[i].file].path);
    return 0;
}

/* Map path and parse it as file index set->n_files (not sorted yet). */
static int open_one(st_set_t *set, const char *path, err_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_fmt(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return err_fmt(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return err_fmt(err, "%s: cannot mmap %zu bytes: %s", path, size, strerror(errno));
        }
        /* Loading reads each tensor once, front to back: ask for large read-ahead and early
         * reclaim. Advice only; a kernel that refuses it loads as fast as before. */
        (void)madvise(map, size, MADV_SEQUENTIAL);
    }
    close(fd);
    int idx = set->n_files;
    set->files = xrealloc(set->files, (size_t)(idx + 1) * sizeof *set->files);
    set->files[idx] = (st_file_t){xstrdup(path), map, size};
    set->n_files++;
    static const uint8_t empty[1];
    return st_parse_buffer(set, map ? map : empty, size, path, idx, err);
}

int st_open_file(st_set_t *set, const char *path, err_t *err) {
    memset(set, 0, sizeof *set);
    if (open_one(set, path, err) || st_finish(set, err)) {
        st_close(set);
        return -1;
    }
    return 0;
}

/* Open the shards an index names and check that each tensor is where the index says. */
static int open_index(st_set_t *set, const char *dir, const char *index_path, err_t *err) {
    json_t *root = json_util_load_file(index_path, err);
    if (!root) return -1;
    int rc = -1;
    char path[4096];
    const json_t *wm = json_object_get(root, "weight_map");
    const char *key;
    json_t *v;
    if (!json_is_object(wm)) {
        err_fmt(err, "%s: missing \"weight_map\" object", index_path);
        goto done;
    }
    /* Open each shard once, in order of first mention. */
    json_object_foreach((json_t *)wm, key, v) {
        if (!json_is_string(v)) {
            err_fmt(err, "%s: weight_map['%s'] is not a string", index_path, key);
            goto done;
        }
        const char *shard = json_string_value(v);
        if (!*shard || strchr(shard, '/') || strcmp(shard, "..") == 0) {
            err_fmt(err, "%s: weight_map['%s']: shard name \"%s\" must be a plain file name", index_path, key, shard);
            goto done;
        }
        int seen = 0;
        snprintf(path, sizeof path, "%s/%s", dir, shard);
        for (int f = 0; f < set->n_files && !seen; f++) seen = strcmp(set->files[f].path, path) == 0;
        if (seen) continue;
        if (access(path, F_OK) != 0) {
            err_fmt(err, "%s: missing shard (listed in %s for tensor '%s')", path, index_path, key);
            goto done;
        }
        if (open_one(set, path, err)) goto done;
    }
    if (st_finish(set, err)) goto done;
    json_object_foreach((json_t *)wm, key, v) {
        const st_tensor_t *t = st_find(set, key);
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(v));
        if (!t || strcmp(set->files[t->file].path, path) != 0) {
            err_fmt(err, "%s: tensor '%s' is listed in %s but is not in that shard", path, key, index_path);
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int st_open_dir(st_set_t *set, const char *dir, err_t *err) {
    char index_path[4096], single[4096];
    memset(set, 0, sizeof *set);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    int rc;
    if (access(index_path, F_OK) == 0) rc = open_index(set, dir, index_path, err);
    else if (access(single, F_OK) == 0) rc = open_one(set, single, err) || st_finish(set, err) ? -1 : 0;
    else
        rc = err_fmt(err, "%s: no model.safetensors or model.safetensors.index.json (only safetensors "
                          "checkpoints are supported)", dir);
    if (rc) st_close(set);
    return rc;
}

void st_close(st_set_t *set) {
    for (int i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
    for (int f = 0; f < set->n_files; f++) {
        if (set->files[f].map) munmap(set->files[f].map, set->files[f].size);
        free(set->files[f].path);
    }
    free(set->tensors);
    free(set->files);
    memset(set, 0, sizeof *set);
}

void st_prefetch(const st_set_t *set, const st_tensor_t *t) {
    if (!t || !set->files[t->file].map) return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)t->data & ~(uintptr_t)(page - 1), hi = (uintptr_t)(t->data + t->n_elems *
                   (int64_t)st_dtype_size(t->dtype));
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_WILLNEED);
}

const st_tensor_t *st_find(const st_set_t *set, const char *name) {
    int lo = 0, hi = set->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(set->tensors[mid].name, name);
        if (c == 0) return &set->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0 && mant == 0) {
        bits = sign;
    } else if (exp == 0) { // subnormal: shift the leading 1 into the implicit position
        uint32_t e = 0;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e++;
        }
        bits = sign | ((113u - e) << 23) | ((mant & 0x3ffu) << 13);
    } else if (exp == 31) { // inf / nan
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int st_to_f32(const st_set_t *set, const st_tensor_t *t, float *out, err_t *err) {
    size_t n = (size_t)t->n_elems;
    switch (t->dtype) {
    case ST_F32:
        memcpy(out, t->data, n * sizeof(float)); // data may be unaligned; memcpy is always safe
        return 0;
    case ST_BF16:
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            out[i] = t->dtype == ST_BF16 ? st_bf16_to_f32(h) : st_f16_to_f32(h);
        }
        return 0;
    default:
        return err_fmt(err, "%s: tensor '%s': dtype %s is not supported (F32, BF16 or F16 only)",
                       set->files[t->file].path, t->name, st_dtype_name(t->dtype));
    }
}

/* safetensors.h: read-only access to safetensors checkpoints (one file, or shards listed by
 * model.safetensors.index.json), memory-mapped, with every header validated before use.
 *
 * A safetensors file is an 8-byte little-endian header size N, N bytes of JSON describing each
 * tensor (dtype, shape, [begin, end) offsets into the data that follows), then the data. We
 * validate like the reference implementation: the header fits in the file and under
 * ST_MAX_HEADER, each dtype is known, shapes are sane, byte sizes equal the element count times
 * the dtype size, and the tensors tile the data area exactly (no overlap, no gap, nothing left
 * over). Tensors are converted to fp32 on request (F32, BF16, F16).
 *
 * It deliberately does not know model names or shapes (weights.c does) and never writes files.
 */
#ifndef LM_SAFETENSORS_H
#define LM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"

#define ST_MAX_HEADER (100u * 1024u * 1024u) // bytes of JSON header we accept
#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_BF16, ST_F16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
               ST_F8_E4M3, ST_F8_E5M2, ST_N_DTYPES } st_dtype_t;

typedef struct {
    char *name;                    // tensor name, e.g. "model.layers.0.self_attn.q_proj.weight"
    st_dtype_t dtype;              // element type as stored
    int ndim;                      // entries in shape (0 for a scalar)
    int64_t shape[ST_MAX_DIMS];    // (ndim)
    int64_t n_elems;               // product of shape (1 for a scalar)
    const uint8_t *data;           // n_elems * dtype size bytes inside the mapping, maybe unaligned
    int file;                      // index into st_set_t.files
} st_tensor_t;

typedef struct {
    char *path;                    // as opened, for messages
    void *map;                     // mmap of the whole file (NULL for an in-memory buffer)
    size_t size;                   // file size in bytes
} st_file_t;

typedef struct {
    st_file_t *files;              // (n_files)
    int n_files;                   // entries in files
    st_tensor_t *tensors;          // (n_tensors) sorted by name
    int n_tensors;                 // entries in tensors
} st_set_t;

/* Parse a safetensors image of len bytes (a whole file), naming it `name` in errors, and append
 * its tensors to set as file index `file`. The tensors point into buf, which must outlive set.
 * Returns 0, or -1 with err naming the file and the tensor. Used directly by the fuzz target. */
int st_parse_buffer(st_set_t *set, const uint8_t *buf, size_t len, const char *name, int file, err_t *err);

/* Map and parse one .safetensors file. Returns 0, or -1 with err set. */
int st_open_file(st_set_t *set, const char *path, err_t *err);

/* Open a checkpoint directory: model.safetensors.index.json with its shards when present, else
 * model.safetensors. Every tensor the index lists must be in the shard it names; a missing shard
 * is named. Returns 0, or -1 with err set (set is left empty). */
int st_open_dir(st_set_t *set, const char *dir, err_t *err);

/* Sort tensors by name and reject duplicates across files. Called by st_open_*; exposed for the
 * fuzz target, which builds sets with st_parse_buffer. Returns 0, or -1 with err set. */
int st_finish(st_set_t *set, err_t *err);

/* Unmap files and free everything. Safe on a zeroed set. */
void st_close(st_set_t *set);

/* Ask the kernel to start reading tensor t's pages (madvise WILLNEED) so that they are in memory
 * by the time it is copied; advice only, no error. NULL t or an in-memory set: a no-op. */
void st_prefetch(const st_set_t *set, const st_tensor_t *t);

/* The tensor called name, or NULL. O(log n). */
const st_tensor_t *st_find(const st_set_t *set, const char *name);

/* "F32", "BF16", ... */
const char *st_dtype_name(st_dtype_t dt);
/* Bytes per element of dt, or 0 for a value outside st_dtype_t. */
size_t st_dtype_size(st_dtype_t dt);

/* Convert a tensor to fp32 into out (n_elems floats). Returns 0, or -1 with err naming the file
 * and tensor when its dtype is not F32, BF16 or F16. */
int st_to_f32(const st_set_t *set, const st_tensor_t *t, float *out, err_t *err);

/* fp16 / bf16 bit patterns to fp32 (exact). */
float st_f16_to_f32(uint16_t h);
/* (bf16 is the top 16 bits of an fp32, so this one is a shift.) */
float st_bf16_to_f32(uint16_t h);

#endif

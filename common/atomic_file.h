/* atomic_file.h: write a file so that readers see either nothing or the finished file.
 *
 * Data goes to "<path>.tmp.<pid>" in the same directory; commit fflushes, fsyncs, renames over
 * <path> and fsyncs the directory. abort (or a crash) leaves <path> untouched. This is how every
 * output of the project is written: worker CSVs, merged CSVs, submission.csv, report.json.
 */
#ifndef COMMON_ATOMIC_FILE_H
#define COMMON_ATOMIC_FILE_H

#include <stdio.h>
#include "check.h"

typedef struct {
    FILE *f;          // write here between open and commit
    char *path;       // final path
    char *tmp_path;   // "<path>.tmp.<pid>"
} atomic_file_t;

/* Open a temp file next to path for writing. Returns 0, or -1 with err set. */
int atomic_file_open(atomic_file_t *af, const char *path, err_t *err);

/* Flush, fsync, close and rename the temp file over path. Returns 0, or -1 with err set; on
 * failure the temp file is removed and path is untouched. af is freed either way. */
int atomic_file_commit(atomic_file_t *af, err_t *err);

/* Close and remove the temp file; path is untouched. Safe on a zeroed or committed af. */
void atomic_file_abort(atomic_file_t *af);

/* Write len bytes of data to path atomically (open, write, commit). Returns 0, or -1 with err
 * set (path untouched). */
int atomic_file_write(const char *path, const void *data, size_t len, err_t *err);

/* Create dir and its parents (mode 0777 & umask). Returns 0, or -1 with err set. */
int fs_mkdir_p(const char *dir, err_t *err);

/* Size limits for fs_read_all, per kind of file (docs/plan.md and docs/lm-worker.md list them). */
#define FS_LIMIT_TEXT ((size_t)16 << 20)       // plan.json, config.json, adapter_config.json: 16 MiB
#define FS_LIMIT_TOKENIZER ((size_t)64 << 20)  // tokenizer.json: 64 MiB
#define FS_LIMIT_JSON ((size_t)64 << 20)       // other JSON files (json_util_load_file): 64 MiB
#define FS_LIMIT_CSV ((size_t)4 << 30)         // any CSV (input, shards, worker outputs): 4 GiB

/* Read a whole regular file of at most max_bytes into a NUL-terminated buffer. Anything else
 * (/dev/zero, a FIFO, a directory) and larger files are refused before reading, naming the
 * file; it opens with O_NONBLOCK, so a FIFO cannot hang it. Returns the buffer (free() it) and
 * sets *len (when non-NULL), or NULL with err set. */
char *fs_read_all(const char *path, size_t max_bytes, size_t *len, err_t *err);

#endif

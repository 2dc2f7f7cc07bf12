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

/* Create dir and its parents (mode 0777 & umask). Returns 0, or -1 with err set. */
int fs_mkdir_p(const char *dir, err_t *err);

/* Read a whole file into a NUL-terminated buffer. Returns it (free() it) and sets *len, or
 * NULL with err set. */
char *fs_read_all(const char *path, size_t *len, err_t *err);

#endif

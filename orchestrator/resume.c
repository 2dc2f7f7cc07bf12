/* resume.c: remember validated outputs by resume key, so that a rerun (after a crash, a
 * Ctrl-C, or with one model added to the plan) skips every job whose shard, variant and model
 * settings are unchanged.
 *
 * The record is work_dir/done/<key>.csv: a hard link to the validated output when the
 * filesystem allows it (no copy of a large file), else a copy. Either way it appears atomically
 * (link or write to a temp name, then rename), so a crash never leaves a half record. Workers
 * replace their output by rename, never in place, so a later write to the output path cannot
 * change a linked record. Beside it, done/<job>.parts keeps what the key was made of
 * (fingerprint.h), so that the next run can say why the job reran. It deliberately does not expire records: deleting work_dir is the
 * way to start over.
 */
#include <unistd.h>

#include "atomic_file.h"
#include "planning.h"
#include "workdir.h"

char *resume_path(const plan_t *plan, const char *key) {
    return workdir_path(plan, WD_DONE, key, ".csv");
}

char *resume_parts_path(const plan_t *plan, const char *job_name) {
    return workdir_path(plan, WD_DONE, job_name, ".parts");
}

/* Copy src to dst atomically (temp file, fsync, rename). Returns 0, or -1 with err set. */
static int copy_file(const char *src, const char *dst, err_t *err) {
    size_t len;
    char *data = fs_read_all(src, FS_LIMIT_CSV, &len, err);
    if (!data) return -1;
    int rc = atomic_file_write(dst, data, len, err);
    free(data);
    return rc;
}

int resume_record(const plan_t *plan, const job_t *job, err_t *err) {
    char *dir = workdir_path(plan, WD_DONE, NULL, NULL);
    int rc = fs_mkdir_p(dir, err);
    free(dir);
    if (rc != 0) return -1;
    char *dst = resume_path(plan, job->key);
    if (strcmp(dst, job->output_path) == 0) {   // a reused job: its output is the record
        free(dst);
        return 0;
    }
    size_t n = strlen(dst) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.link.%ld", dst, (long)getpid());
    unlink(tmp);
    if (link(job->output_path, tmp) == 0) {
        if (rename(tmp, dst) != 0) {
            rc = err_fmt(err, "rename %s -> %s failed: %s", tmp, dst, strerror(errno));
            unlink(tmp);
        }
    } else {
        rc = copy_file(job->output_path, dst, err);   // EXDEV, EPERM (no hard links), ...
    }
    if (rc == 0 && job->parts) {
        char *parts = resume_parts_path(plan, job->name);
        rc = atomic_file_write(parts, job->parts, strlen(job->parts), err);
        free(parts);
    }
    if (rc != 0) err_prefix(err, "recording %s for resume", job->name);
    free(tmp);
    free(dst);
    return rc;
}

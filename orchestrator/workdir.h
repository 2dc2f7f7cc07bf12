/* workdir.h: the work directory: its layout (the one place that spells its paths), the marker
 * that says orchestrate made it, the lock that keeps a second run out, --fresh's clean-up, and
 * the check that the submission cannot land on the input, the plan or inside the work directory.
 *
 * Layout (docs/orchestrate.md, "The work directory"), under the base: work_dir itself, or
 * work_dir/limit-<N> for a `--limit N` run:
 *   shards/<digest>.csv        shard inputs            (stage.c)
 *   outputs/<model>/<job>.csv  worker outputs          (stage.c)
 *   logs/<job>.log             worker logs             (stage.c names them; attempt.c writes)
 *   done/<key>.csv             resume records          (resume.c)
 *   done/<job>.parts           what each record's key was made of, to say why a job reran
 *   models/<model>.csv         merged model outputs    (merge.c)
 *   report.json                the run's report        (main.c)
 *   report.html                its timeline, for a browser or notebook (report_html.c)
 * and, in work_dir itself only: .orchestrate-work (the marker) and .orchestrate.lock (the lock).
 *
 * It deliberately does not create the per-stage folders (stage.c does, when it needs them) or
 * decide what goes into the files.
 */
#ifndef ORCH_WORKDIR_H
#define ORCH_WORKDIR_H

#include "orch.h"

#define WD_SHARDS "shards"
#define WD_OUTPUTS "outputs"
#define WD_LOGS "logs"
#define WD_DONE "done"
#define WD_MODELS "models"
#define WD_REPORT "report.json"
#define WD_REPORT_HTML "report.html"
#define WD_MARKER ".orchestrate-work"
#define WD_LOCK ".orchestrate.lock"
#define WD_LIMIT_PREFIX "limit-"

typedef struct {
    int lock_fd;        // the lock file, held (flock LOCK_EX) until workdir_close; -1 when none
} workdir_t;

/* base/sub/<name><ext>, where base is plan->work_dir or, with plan->limit_rows,
 * work_dir/limit-<N>. sub, name and ext may be NULL (then left out). malloc'd. */
char *workdir_path(const plan_t *plan, const char *sub, const char *name, const char *ext);

/* base/outputs/<model>/<job>.csv: where job's worker writes. malloc'd. */
char *workdir_output_path(const plan_t *plan, const char *model, const char *job);

/* Refuse a plan whose output is the same file as its input or as the plan file (by device and
 * inode, so another spelling or a link does not hide it), or lies inside (or is) work_dir (by
 * real path and by inode of each existing ancestor). Errors name both keys. Call it after the
 * CLI overrides and before anything is deleted. Returns 0, or -1 with err set. */
int workdir_check_paths(const plan_t *plan, err_t *err);

/* Make work_dir ready for a run and hold it: create it if needed; refuse it when orchestrate
 * did not make it (no marker) and it is non-empty (with fresh) or holds an entry of the layout
 * (without: that entry is the user's, and orchestrate would write into it and later delete it);
 * write the marker; take an exclusive flock on the lock file (a second run fails at once naming
 * the PID that holds it) and write this PID there; with fresh, delete the layout's entries
 * (and every limit-<N> folder) and nothing else; for a --limit run, only those in its
 * limit-<N> folder. Returns 0, or -1 with err set (wd->lock_fd
 * is then -1). */
int workdir_open(workdir_t *wd, const plan_t *plan, int fresh, err_t *err);

/* Release the lock (closing its file, which stays behind with the last PID). A workdir_t that
 * was never opened must be zeroed with lock_fd = -1 first; then this is a no-op. */
void workdir_close(workdir_t *wd);

#endif

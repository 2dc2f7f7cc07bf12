/* workdir.c: the work directory's paths, marker, lock, --fresh clean-up and the submission's
 * path checks (see workdir.h). It owns no file contents: resume.c, stage.c, merge.c and
 * report.c write those at the paths it gives.
 */
#include "workdir.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "plan_fields.h"

/* The entries of the layout orchestrate owns in work_dir, besides limit-<N> folders and the
 * marker and lock files. */
static const char *const OWNED[] = {WD_SHARDS, WD_OUTPUTS, WD_LOGS, WD_DONE, WD_MODELS, WD_REPORT, WD_REPORT_HTML, NULL};

static const char MARKER_TEXT[] =
    "This folder is an orchestrate work directory. `orchestrate --fresh` deletes shards/,\n"
    "outputs/, logs/, done/, models/, limit-*/, report.json and report.html here, and nothing else.\n";

char *workdir_path(const plan_t *plan, const char *sub, const char *name, const char *ext) {
    char limit[48] = "";
    if (plan->limit_rows) snprintf(limit, sizeof limit, "/" WD_LIMIT_PREFIX "%zu", plan->limit_rows);
    size_t n = strlen(plan->work_dir) + strlen(limit) + (sub ? strlen(sub) + 1 : 0) +
               (name ? strlen(name) + 1 : 0) + (ext ? strlen(ext) : 0) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s%s%s%s%s%s", plan->work_dir, limit, sub ? "/" : "", sub ? sub : "", name ? "/" : "",
             name ? name : "", ext ? ext : "");
    return p;
}

char *workdir_output_path(const plan_t *plan, const char *model, const char *job) {
    char *dir = workdir_path(plan, WD_OUTPUTS, model, NULL);
    size_t n = strlen(dir) + strlen(job) + 6;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s.csv", dir, job);
    free(dir);
    return p;
}

/* ------------------------------------------------------------------ path checks */

/* 1 when a and b exist and are the same file (device and inode), else 0. */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The real path of p's deepest existing ancestor (p itself when it exists), with the rest of p
 * appended as written. malloc'd. */
static char *resolve_existing(const char *p) {
    char *copy = xstrdup(p);
    size_t len = strlen(copy);
    for (;;) {
        char *real = realpath(copy[0] ? copy : "/", NULL);
        if (real) {
            size_t n = strlen(real) + strlen(p + len) + 2;
            char *out = xmalloc(n);
            snprintf(out, n, "%s%s", strcmp(real, "/") == 0 && p[len] == '/' ? "" : real, p + len);
            free(real);
            free(copy);
            return out;
        }
        char *slash = strrchr(copy, '/');
        if (!slash) {   // a relative path with no existing ancestor: resolve against "."
            free(copy);
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd)) return xstrdup(p);
            char *joined = pf_join(cwd, p);
            char *out = resolve_existing(joined);
            free(joined);
            return out;
        }
        *slash = '\0';
        len = (size_t)(slash - copy);
    }
}

/* 1 when path is dir or lies below it: by real-path prefix, and by the device and inode of
 * each existing ancestor of path against dir's (a bind mount or a second link to the folder
 * has another path but the same inode). */
static int inside(const char *path, const char *dir) {
    char *p = resolve_existing(path), *d = resolve_existing(dir);
    size_t dl = strlen(d);
    int in = strncmp(p, d, dl) == 0 && (p[dl] == '/' || p[dl] == '\0');
    struct stat sd;
    if (!in && stat(dir, &sd) == 0) {
        for (char *slash = p + strlen(p); !in && slash; slash = strrchr(p, '/')) {
            *slash = '\0';
            struct stat sp;
            in = stat(p[0] ? p : "/", &sp) == 0 && sp.st_dev == sd.st_dev && sp.st_ino == sd.st_ino;
            if (!p[0]) break;
        }
    }
    free(p), free(d);
    return in;
}

int workdir_check_paths(const plan_t *plan, err_t *err) {
    if (same_file(plan->output, plan->input))
        return err_fmt(err, "%s: output '%s' and input '%s' are the same file: the run would delete its input "
                       "before reading it; write the submission elsewhere", plan->path, plan->output, plan->input);
    if (same_file(plan->output, plan->path))
        return err_fmt(err, "%s: output '%s' and the plan file are the same file: the run would overwrite the "
                       "plan; write the submission elsewhere", plan->path, plan->output);
    if (inside(plan->output, plan->work_dir))
        return err_fmt(err, "%s: output '%s' is inside work_dir '%s', which orchestrate fills with its own "
                       "files and --fresh clears; write the submission elsewhere", plan->path, plan->output,
                       plan->work_dir);
    return 0;
}

/* ------------------------------------------------------------------ marker, lock, --fresh */

/* 1 when name is an entry of the layout that orchestrate owns in work_dir, else 0. */
static int owned(const char *name) {
    for (int i = 0; OWNED[i]; i++)
        if (strcmp(name, OWNED[i]) == 0) return 1;
    size_t n = strlen(WD_LIMIT_PREFIX);
    if (strncmp(name, WD_LIMIT_PREFIX, n) != 0 || !name[n]) return 0;
    for (const char *c = name + n; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    return 1;
}

/* Without a marker, check that work_dir may be taken: with fresh it must be empty; without,
 * none of its entries may be one orchestrate would write into. Returns 0, or -1 with err
 * naming the folder and (when one is the reason) the entry. */
static int check_unmarked(const char *dir, int fresh, err_t *err) {
    DIR *d = opendir(dir);
    if (!d) return err_fmt(err, "work_dir %s: cannot open: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (fresh)
            rc = err_fmt(err, "--fresh: work_dir %s is not empty and has no %s marker, so orchestrate did not "
                         "make it (it holds '%s'); nothing was deleted. Use a new folder as work_dir",
                         dir, WD_MARKER, e->d_name);
        else if (owned(e->d_name))
            rc = err_fmt(err, "work_dir %s holds '%s', which orchestrate did not make (no %s marker) and would "
                         "write into; use a new folder as work_dir (a work_dir of an older orchestrate: delete "
                         "it, or create the marker file in it)", dir, e->d_name, WD_MARKER);
    }
    closedir(d);
    return rc;
}

/* nftw callback for --fresh: remove a file, or a directory after its contents (FTW_DP). Returns 0
 * (also when already gone), or -1 to stop the walk. */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc != 0 && errno != ENOENT ? -1 : 0;
}

/* --fresh: delete the owned entries of dir (the marker and the lock stay). Returns 0, or -1
 * with err set. */
static int discard_owned(const char *dir, err_t *err) {
    DIR *d = opendir(dir);
    if (!d) return err_fmt(err, "work_dir %s: cannot open: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (!owned(e->d_name)) continue;
        char *p = pf_join(dir, e->d_name);
        // FTW_PHYS: never follow a symlink out of the work directory.
        if (nftw(p, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
            rc = err_fmt(err, "%s: cannot remove: %s", p, strerror(errno));
        free(p);
    }
    closedir(d);
    return rc;
}

/* Write the marker into dir (atomically). Returns 0, or -1 with err set. */
static int write_marker(const char *dir, err_t *err) {
    char *p = pf_join(dir, WD_MARKER);
    int rc = atomic_file_write(p, MARKER_TEXT, strlen(MARKER_TEXT), err);
    free(p);
    return rc;
}

/* Take the lock file in dir: exclusive and non-blocking; write our PID into it. Returns the
 * open descriptor, or -1 with err naming the PID that holds it. */
static int take_lock(const char *dir, err_t *err) {
    char *p = pf_join(dir, WD_LOCK);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_fmt(err, "%s: cannot open the lock file: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            err_fmt(err, "work_dir %s is in use by another orchestrate run (PID %s); wait for it to end, or "
                    "give this run another --work-dir", dir, pid[0] ? pid : "unknown");
        else err_fmt(err, "%s: cannot lock: %s", p, strerror(e));
        free(p);
        return -1;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        err_fmt(err, "%s: cannot write: %s", p, strerror(errno));
        close(fd);
        free(p);
        return -1;
    }
    free(p);
    return fd;
}

int workdir_open(workdir_t *wd, const plan_t *plan, int fresh, err_t *err) {
    wd->lock_fd = -1;
    const char *dir = plan->work_dir;
    struct stat st;
    int existed = stat(dir, &st) == 0;
    if (existed && !S_ISDIR(st.st_mode)) return err_fmt(err, "work_dir %s is not a directory", dir);
    if (!existed && fs_mkdir_p(dir, err) != 0) return -1;
    char *marker = pf_join(dir, WD_MARKER);
    int marked = access(marker, F_OK) == 0;
    free(marker);
    if (!marked && existed && check_unmarked(dir, fresh, err) != 0) return -1;
    if (!marked && write_marker(dir, err) != 0) return -1;
    int fd = take_lock(dir, err);
    if (fd < 0) return -1;
    // --fresh clears the base: all of work_dir, or only limit-<N> for a --limit run.
    char *base = workdir_path(plan, NULL, NULL, NULL);
    int rc = fresh && access(base, F_OK) == 0 ? discard_owned(base, err) : 0;
    free(base);
    if (rc != 0) {
        close(fd);
        return -1;
    }
    wd->lock_fd = fd;
    return 0;
}

void workdir_close(workdir_t *wd) {
    if (wd->lock_fd >= 0) close(wd->lock_fd);
    wd->lock_fd = -1;
}

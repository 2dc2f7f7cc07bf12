/* plan_runtime.c: the parts of the plan settled at run time rather than read from plan.json:
 * where the lm-worker executable is, and the command line's --gpus, --work-dir and --limit
 * overrides.
 * Kept apart from plan.c so that plan_load_buf (and its fuzz target) never depends on this
 * process's executable or PATH. It deliberately does not re-validate the rest of the plan.
 */
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orch.h"
#include "plan_fields.h"

/* 1 when p exists and is a regular file (following links), else 0. */
static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/prog when it is an executable regular file (made absolute when possible), else NULL. */
static char *executable_in(const char *dir, const char *prog) {
    char *p = pf_join(dir[0] ? dir : ".", prog);
    if (is_file(p) && access(p, X_OK) == 0) {
        char *real = realpath(p, NULL);
        if (real) {
            free(p);
            p = xstrdup(real);
            free(real);
        }
        return p;
    }
    free(p);
    return NULL;
}

char *plan_find_lm_worker(char *exe_dir, size_t exe_dir_len) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(exe_dir, exe_dir_len, "?");
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(exe_dir, exe_dir_len, "%s", exe);
        char *found = executable_in(exe, "lm-worker");
        if (found) return found;
    }
    return plan_path_search(getenv("PATH"), "lm-worker");
}

char *plan_path_search(const char *path_var, const char *prog) {
    char *copy = xstrdup(path_var ? path_var : "");
    char *found = NULL;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save))
        found = executable_in(dir, prog);
    free(copy);
    return found;
}

int plan_resolve_lm_worker(plan_t *plan, err_t *err) {
    free(plan->lm_worker_path);
    plan->lm_worker_path = NULL;
    int first = -1;
    for (int i = plan->n_models - 1; i >= 0; i--)
        if (plan->models[i].is_lm_worker) first = i;
    if (first < 0) return 0;
    char exe_dir[PATH_MAX];
    plan->lm_worker_path = plan_find_lm_worker(exe_dir, sizeof exe_dir);
    if (plan->lm_worker_path) return 0;
    return err_fmt(err, "%s: models[%d] ('%s') uses worker \"lm-worker\", but no executable lm-worker "
                   "was found next to orchestrate (in %s) or on PATH; build it or put it on PATH",
                   plan->path, first, plan->models[first].name, exe_dir);
}

int plan_apply_gpus_override(plan_t *plan, const char *arg, err_t *err) {
    if (strcmp(arg, "cpu") == 0 || strcmp(arg, "auto") == 0) {
        free(plan->gpus);
        plan->gpus = NULL, plan->n_gpus = 0;
        plan->use_cpu = arg[0] == 'c';
        plan->gpus_auto = !plan->use_cpu;
        return 0;
    }
    size_t cap = strlen(arg) / 2 + 1;
    int *gpus = xcalloc(cap, sizeof *gpus), n = 0;
    const char *p = arg;
    for (;;) {
        char *end;
        errno = 0;
        long g = (*p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
        if (g < 0 || g > 1023 || errno || (*end != ',' && *end != '\0')) {
            free(gpus);
            return err_fmt(err, "--gpus '%s': expected cpu, auto or comma-separated GPU indices such as 0,1", arg);
        }
        for (int j = 0; j < n; j++) {
            if (gpus[j] == g) {
                free(gpus);
                return err_fmt(err, "--gpus '%s': GPU %ld is listed twice", arg, g);
            }
        }
        ASSERT((size_t)n < cap);
        gpus[n++] = (int)g;
        if (*end == '\0') break;
        p = end + 1;
    }
    free(plan->gpus);
    plan->gpus = gpus, plan->n_gpus = n;
    plan->use_cpu = 0, plan->gpus_auto = 0;
    return 0;
}

void plan_set_work_dir(plan_t *plan, const char *dir) {
    char cwd[PATH_MAX];
    free(plan->work_dir);
    plan->work_dir = dir[0] != '/' && getcwd(cwd, sizeof cwd) ? pf_join(cwd, dir) : xstrdup(dir);
}

void plan_apply_limit(plan_t *plan, size_t n) {
    ASSERT(n >= 1);
    plan->limit_rows = n;
    size_t len = strlen(plan->output);
    if (len > 4 && strcmp(plan->output + len - 4, ".csv") == 0) len -= 4;
    size_t cap = len + 48;
    char *out = xmalloc(cap);
    snprintf(out, cap, "%.*s.limit-%zu.csv", (int)len, plan->output, n);
    free(plan->output);
    plan->output = out;
}

/* preflight.c: the checks before the first stage (see preflight.h).
 *
 * Each check adds a problem naming its plan key and goes on, so that one run of `orchestrate`
 * (or `--dry-run`) lists everything that is wrong at once. `lm-worker check` runs synchronously
 * here (fork and exec, its stdout and stderr captured); it needs no supervision: it loads no
 * weights and takes about a second. It deliberately does not re-read or re-validate the input
 * (main.c did, naming the line and field), and never creates the work directory or touches the
 * output: writability is tested with a temporary file that is removed at once.
 */
#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "planning.h"
#include "plan_fields.h"
#include "spawn.h"
#include "workdir.h"

extern char **environ;

/* ------------------------------------------------------------------ running a check */

/* Append n bytes of p to the malloc'd NUL-terminated *buf of length *len. */
static void buf_append(char **buf, size_t *len, const char *p, size_t n) {
    *buf = xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

int preflight_capture(char *const *argv, char *const *envp, char **out, char **errout, int *status,
                       err_t *err) {
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) return err_fmt(err, "pipe: %s", strerror(errno));
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]), close(po[1]);
        return err_fmt(err, "pipe: %s", strerror(errno));
    }
    // fork + exec (<spawn.h> is shadowed by this directory's spawn.h). The child only calls
    // async-signal-safe functions.
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(127);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    int fork_errno = errno;
    close(po[1]), close(pe[1]);
    if (pid < 0) {
        close(po[0]), close(pe[0]);
        return err_fmt(err, "cannot start %s: %s", argv[0], strerror(fork_errno));
    }
    size_t n_out = 0, n_err = 0;
    *out = xcalloc(1, 1), *errout = xcalloc(1, 1);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char chunk[4096];
            ssize_t r = read(fds[i].fd, chunk, sizeof chunk);
            if (r > 0) {
                if (i == 0) buf_append(out, &n_out, chunk, (size_t)r);
                else buf_append(errout, &n_err, chunk, (size_t)r);
            } else if (r == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : -1;
    return 0;
}

/* The last non-empty line of s, copied (malloc'd), or NULL when there is none. */
static char *last_line(const char *s) {
    const char *end = s + strlen(s);
    while (end > s && (end[-1] == '\n' || end[-1] == '\r')) end--;
    const char *start = end;
    while (start > s && start[-1] != '\n') start--;
    if (start == end) return NULL;
    char *line = xmalloc((size_t)(end - start) + 1);
    memcpy(line, start, (size_t)(end - start));
    line[end - start] = '\0';
    return line;
}

int preflight_lm_check(const plan_t *plan, int m, const slot_t *slot, lm_check_t *out, err_t *err) {
    memset(out, 0, sizeof *out);
    out->status = -1;
    char *dummy_out = workdir_path(plan, WD_OUTPUTS, "preflight-never-written", ".csv");
    job_t job = {.model = m, .variant = TTA_IDENTITY, .shard = 0, .n_shards = 1,
                 .input_path = plan->input, .output_path = dummy_out, .slot = -1};
    int batch = plan->models[m].batch_size;
    char **argv = spawn_build_argv(plan, &job, slot, batch, 1, err);
    if (!argv) {
        free(dummy_out);
        out->stderr_txt = xstrdup("");
        return -1;
    }
    ASSERT(argv[1] && strcmp(argv[1], "run") == 0);
    free(argv[1]);
    argv[1] = xstrdup("check");
    char **env = spawn_build_env(plan, &job, slot, batch, environ);
    char *stdout_txt = NULL;
    int rc = preflight_capture(argv, env, &stdout_txt, &out->stderr_txt, &out->status, err);
    if (rc == 0) out->json = last_line(stdout_txt);
    else out->stderr_txt = xstrdup("");
    free(stdout_txt);
    spawn_strv_free(argv);
    spawn_strv_free(env);
    free(dummy_out);
    return rc;
}

void lm_check_free(lm_check_t *c) {
    free(c->json);
    free(c->stderr_txt);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ problems */

typedef struct {
    const plan_t *plan; // the plan checked
    FILE *f;            // where problems and notes go
    int problems;       // problems found so far
} pf_t;

/* Report a problem at plan key `key` ("output", "models[1].model"). */
static void problem(pf_t *p, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(pf_t *p, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(p->f, "orchestrate: preflight: %s: %s: ", p->plan->path, key);
    vfprintf(p->f, fmt, ap);
    fputc('\n', p->f);
    va_end(ap);
    p->problems++;
}

/* 1 when a file (or, with make_dir, a directory) can be created in the existing directory dir:
 * a temporary one is created and removed at once. Else 0 with the reason in why. */
static int dir_writable(const char *dir, int make_dir, char *why, size_t why_len) {
    size_t n = strlen(dir) + 32;
    char *tmpl = xmalloc(n);
    snprintf(tmpl, n, "%s/.orchestrate-preflight.XXXXXX", dir);
    int ok;
    if (make_dir) {
        ok = mkdtemp(tmpl) != NULL;
        if (ok) rmdir(tmpl);
    } else {
        int fd = mkstemp(tmpl);
        ok = fd >= 0;
        if (ok) close(fd), unlink(tmpl);
    }
    if (!ok) snprintf(why, why_len, "cannot create a %s in %s: %s", make_dir ? "directory" : "file", dir, strerror(errno));
    free(tmpl);
    return ok;
}

/* output: not a directory, and its directory exists and takes new files (the submission is
 * written beside it, then renamed). */
static void check_output(pf_t *p) {
    const char *out = p->plan->output;
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        problem(p, "output", "'%s' is a directory; give the submission's file name", out);
        return;
    }
    char *copy = xstrdup(out);
    const char *dir = dirname(copy);
    char why[PATH_MAX + 128];
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        problem(p, "output", "the directory %s of '%s' does not exist", dir, out);
    else if (!dir_writable(dir, 0, why, sizeof why))
        problem(p, "output", "'%s' could not be written: %s", out, why);
    free(copy);
}

/* work_dir: an existing directory that takes new files, or creatable (its nearest existing
 * ancestor takes new directories). Nothing is created. */
static void check_work_dir(pf_t *p, const char *key) {
    const char *wd = p->plan->work_dir;
    char why[PATH_MAX + 128];
    struct stat st;
    if (stat(wd, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) problem(p, key, "'%s' exists and is not a directory", wd);
        else if (!dir_writable(wd, 0, why, sizeof why)) problem(p, key, "'%s' is not writable: %s", wd, why);
        return;
    }
    char *anc = xstrdup(wd);
    for (;;) {
        char *slash = strrchr(anc, '/');
        if (!slash) {
            free(anc);
            anc = xstrdup(".");
            break;
        }
        if (slash == anc) slash[1] = '\0';
        else *slash = '\0';
        if (stat(anc, &st) == 0 || slash == anc) break;
    }
    if (stat(anc, &st) != 0 || !S_ISDIR(st.st_mode))
        problem(p, key, "cannot create '%s': %s is not a directory", wd, anc);
    else if (!dir_writable(anc, 1, why, sizeof why))
        problem(p, key, "cannot create '%s': %s", wd, why);
    free(anc);
}

/* ------------------------------------------------------------------ command workers */

/* The value of PATH in model m's env, else orchestrate's own. */
static const char *model_path_var(const plan_model_t *m) {
    for (int i = 0; i < m->n_env; i++)
        if (strncmp(m->env[i], "PATH=", 5) == 0) return m->env[i] + 5;
    const char *path = getenv("PATH");
    return path ? path : "/usr/local/bin:/usr/bin:/bin";
}

/* Why an existing path p cannot be executed ("" when it can). */
static void exec_problem(const char *p, char *why, size_t why_len) {
    struct stat st;
    why[0] = '\0';
    if (stat(p, &st) != 0) snprintf(why, why_len, "'%s' does not exist", p);
    else if (S_ISDIR(st.st_mode)) snprintf(why, why_len, "'%s' is a directory", p);
    else if (access(p, X_OK) != 0)
        snprintf(why, why_len, "'%s' is not executable; datasets under /kaggle/input lose exec bits: "
                 "chmod +x it, or copy it to /kaggle/working first", p);
}

char *preflight_resolve_program(const plan_t *plan, int mi, char *why, size_t why_len) {
    const plan_model_t *m = &plan->models[mi];
    const char *prog = m->command[0];
    why[0] = '\0';
    if (strchr(prog, '/')) {
        while (prog[0] == '.' && prog[1] == '/') prog += 2;
        char *p = pf_join(plan->base_dir ? plan->base_dir : ".", prog);
        exec_problem(p, why, why_len);
        if (!why[0]) return p;
        free(p);
        return NULL;
    }
    char *copy = xstrdup(model_path_var(m));
    char *found = NULL, first_bad[PATH_MAX + 256] = "";
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char *p = pf_join(dir[0] ? dir : ".", prog);
        struct stat st;
        char w[PATH_MAX + 256];
        if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
            exec_problem(p, w, sizeof w);
            if (!w[0]) found = p, p = NULL;
            else if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "%s", w);
        }
        free(p);
    }
    free(copy);
    if (!found) {
        if (first_bad[0]) snprintf(why, why_len, "'%s' was found on PATH but %s", prog, first_bad);
        else snprintf(why, why_len, "'%s' was not found on PATH (%s)", prog, model_path_var(m));
    }
    return found;
}

/* ------------------------------------------------------------------ lm-worker */

/* The string member key of j, or "?" when absent (a stand-in lm-worker may print less). */
static const char *jstr(json_t *j, const char *key) {
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "?";
}

/* The plan key of model m that `lm-worker check`'s --option comes from. */
static const char *option_key(const plan_model_t *m, const char *option) {
    static const char *const map[][2] = {
        {"--model", "model"},       {"--adapter", "adapter"}, {"--template", "template"},
        {"--truncation", "truncation"}, {"--max-length", "max_length"}, {"--dtype", "dtype"},
        {"--quant", "quant"},       {"--device", "gpus"},  {"--input", "input"},
    };
    if (strcmp(option, "--tokenizer") == 0) return m->tokenizer ? "tokenizer" : "model";
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(option, map[i][0]) == 0) return map[i][1];
    return m->n_extra_args ? "args" : "worker";
}

/* The labels in check's JSON must be the plan's, in order: the worker writes its checkpoint's
 * id2label as the output header, and orchestrate validates that header against the plan. */
static void check_labels(pf_t *p, int mi, json_t *j) {
    json_t *labels = json_object_get(j, "labels");
    if (!json_is_array(labels)) return;
    const plan_t *plan = p->plan;
    int same = (int)json_array_size(labels) == plan->n_labels;
    for (int l = 0; same && l < plan->n_labels; l++) {
        const char *s = json_string_value(json_array_get(labels, (size_t)l));
        same = s && strcmp(s, plan->labels[l]) == 0;
    }
    if (same) return;
    char got[512] = "", want[512] = "";
    for (size_t l = 0; l < json_array_size(labels); l++) {
        const char *s = json_string_value(json_array_get(labels, l));
        size_t n = strlen(got);
        snprintf(got + n, sizeof got - n, "%s%s", l ? "," : "", s ? s : "?");
    }
    for (int l = 0; l < plan->n_labels; l++) {
        size_t n = strlen(want);
        snprintf(want + n, sizeof want - n, "%s%s", l ? "," : "", plan->labels[l]);
    }
    char key[64];
    snprintf(key, sizeof key, "models[%d].model", mi);
    problem(p, key, "the checkpoint's labels (config.json id2label) are %s but the plan's labels are %s; "
            "set \"labels\" in the plan to match", got, want);
}

/* Run `lm-worker check` for model mi on slot and turn what it says into a problem at the plan
 * key of the option it names, or a one-line summary. */
static void check_lm_model(pf_t *p, int mi, const slot_t *slot) {
    const plan_model_t *m = &p->plan->models[mi];
    char key[64];
    lm_check_t c;
    err_t err = {0};
    if (preflight_lm_check(p->plan, mi, slot, &c, &err) != 0) {
        snprintf(key, sizeof key, "models[%d].worker", mi);
        problem(p, key, "lm-worker check: %s", err.msg);
        lm_check_free(&c);
        return;
    }
    json_t *j = c.json ? json_loads(c.json, 0, NULL) : NULL;
    if (c.status == 0 && json_is_object(j)) {
        fprintf(p->f, "orchestrate: preflight: models[%d] '%s': lm-worker check ok: %s, %lld layers, %lld "
                "labels; template %s takes %lld of max_length %lld ids; device %s\n", mi, m->name,
                jstr(j, "model_type"),
                (long long)json_integer_value(json_object_get(j, "layers")),
                (long long)json_array_size(json_object_get(j, "labels")),
                jstr(j, "template"),
                (long long)json_integer_value(json_object_get(j, "template_ids")),
                (long long)json_integer_value(json_object_get(j, "max_length")),
                jstr(j, "device"));
        check_labels(p, mi, j);
    } else if (json_is_object(j) && json_is_string(json_object_get(j, "error"))) {
        const char *opt = json_string_value(json_object_get(j, "option"));
        const char *k = option_key(m, opt ? opt : "");
        // The input and the device (chosen by `gpus`) are top-level settings: name the model too.
        char who[160] = "";
        if (strcmp(k, "input") == 0 || strcmp(k, "gpus") == 0) {
            snprintf(key, sizeof key, "%s", k);
            snprintf(who, sizeof who, "models[%d] '%s': ", mi, m->name);
        } else {
            snprintf(key, sizeof key, "models[%d].%s", mi, k);
        }
        // lm-worker names its option; say which plan key sets it when the names differ.
        int tok_hint = opt && strcmp(opt, "--tokenizer") == 0 && !m->tokenizer;
        problem(p, key, "%s%s (lm-worker check, exit %d)%s", who, jstr(j, "error"), c.status,
                tok_hint ? "; in the plan, set \"tokenizer\" for this model" : "");
    } else {
        char *line = last_line(c.stderr_txt);
        snprintf(key, sizeof key, "models[%d].%s", mi, m->n_extra_args ? "args" : "worker");
        problem(p, key, "lm-worker check (%s) exited with status %d: %s", p->plan->lm_worker_path, c.status,
                line ? line : "(no message)");
        free(line);
    }
    json_decref(j);
    lm_check_free(&c);
}

/* ------------------------------------------------------------------ all */

int preflight_paths(const plan_t *plan, const char *work_dir_key, FILE *f) {
    pf_t p = {.plan = plan, .f = f};
    check_output(&p);
    check_work_dir(&p, work_dir_key);
    return p.problems;
}

int preflight_model(const plan_t *plan, int mi, const slot_t *slot, FILE *f) {
    pf_t p = {.plan = plan, .f = f};
    const plan_model_t *m = &plan->models[mi];
    if (m->is_lm_worker) {
        check_lm_model(&p, mi, slot);
    } else if (!strchr(m->command[0], '{')) {  // else known only at spawn time
        char why[PATH_MAX + 512], key[64];
        char *prog = preflight_resolve_program(plan, mi, why, sizeof why);
        snprintf(key, sizeof key, "models[%d].command[0]", mi);
        if (!prog) problem(&p, key, "%s", why);
        free(prog);
    }
    return p.problems;
}

int preflight_run(const plan_t *plan, const slot_t *slots, int n_slots, const char *work_dir_key, FILE *f) {
    ASSERT(n_slots > 0);
    int problems = preflight_paths(plan, work_dir_key, f);
    for (int mi = 0; mi < plan->n_models; mi++) problems += preflight_model(plan, mi, &slots[0], f);
    return problems;
}

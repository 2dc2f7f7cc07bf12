/* spawn.c: argv and environment of one worker attempt (see spawn.h and docs/workers.md).
 *
 * Nothing here starts a process or touches the event loop; attempt.c does. Keeping the command
 * line and environment construction pure lets test_run check them directly, and keeps the
 * worker contract's variable list in one place.
 */
#include "spawn.h"

#include "executor_slurm.h"

#include <sched.h>
#include <stdio.h>
#include <unistd.h>

/* ------------------------------------------------------------- string vectors */

typedef struct {
    char **v;     // (n + 1) NULL-terminated
    size_t n, cap; // strings held; slots allocated in v
} strv_t;

/* Append owned (s takes it) and keep s->v NULL-terminated. */
static void strv_push(strv_t *s, char *owned) {
    if (s->n + 2 > s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = owned;
    s->v[s->n] = NULL;
}

/* Append a printf-formatted string. */
static void strv_pushf(strv_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void strv_pushf(strv_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    strv_push(s, buf);
}

void spawn_strv_free(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

/* ------------------------------------------------------------- placeholders */

const char *const spawn_placeholders[] = {"input", "output", "device", "batch_size", "max_length", "model", NULL};
#define N_PLACEHOLDERS 6
_Static_assert(sizeof spawn_placeholders / sizeof spawn_placeholders[0] == N_PLACEHOLDERS + 1,
               "N_PLACEHOLDERS must count spawn_placeholders");

/* Substitute every known {name} in tmpl (vals[i]: the value of spawn_placeholders[i]; NULL: not
 * available for this model, an error when used). Unknown {words} are kept as they are, so that a
 * command may carry literal braces (a JSON argument, say). Sets *used_input / *used_output
 * when {input} / {output} appear. Returns a malloc'ed string, or NULL with err set when a
 * placeholder has no value. */
static char *substitute(const char *tmpl, const char *const *vals, int *used_input, int *used_output,
                        err_t *err) {
    size_t cap = strlen(tmpl) + 64, n = 0;
    char *out = xmalloc(cap);
    for (const char *p = tmpl; *p;) {
        const char *val = NULL, *name = NULL;
        size_t skip = 0;
        if (*p == '{') {
            for (int i = 0; i < N_PLACEHOLDERS; i++) {
                size_t len = strlen(spawn_placeholders[i]);
                if (strncmp(p + 1, spawn_placeholders[i], len) == 0 && p[1 + len] == '}') {
                    name = spawn_placeholders[i];
                    val = vals[i];
                    skip = len + 2;
                    break;
                }
            }
        }
        if (name && !val) {
            free(out);
            err_fmt(err, "placeholder {%s} is used but the model sets no '%s'", name, name);
            return NULL;
        }
        const char *piece = name ? val : p;
        size_t plen = name ? strlen(val) : 1;
        if (n + plen + 1 > cap) {
            cap = 2 * (n + plen + 1);
            out = xrealloc(out, cap);
        }
        memcpy(out + n, piece, plen);
        n += plen;
        if (name && strcmp(name, "input") == 0) *used_input = 1;
        if (name && strcmp(name, "output") == 0) *used_output = 1;
        p += name ? skip : 1;
    }
    out[n] = '\0';
    return out;
}

/* ------------------------------------------------------------- argv */

/* A command worker's argv: `command` with the placeholders substituted, plus --input / --output
 * when no element names them. Returns a NULL-terminated array, or NULL with err set. */
static char **build_command_argv(const plan_model_t *m, const job_t *job, const slot_t *slot,
                                 int batch_size, err_t *err) {
    char bs[32], ml[32];
    snprintf(bs, sizeof bs, "%d", batch_size);
    snprintf(ml, sizeof ml, "%d", m->max_length);
    const char *const vals[N_PLACEHOLDERS] = {job->input_path, job->output_path, slot->device, bs, ml, m->model};
    int used_in = 0, used_out = 0;
    strv_t s = {0};
    for (int i = 0; i < m->n_command; i++) {
        char *arg = substitute(m->command[i], vals, &used_in, &used_out, err);
        if (!arg) {
            err_prefix(err, "models '%s': command[%d] '%s'", m->name, i, m->command[i]);
            spawn_strv_free(s.v);
            return NULL;
        }
        strv_push(&s, arg);
    }
    if (s.n == 0) {
        err_fmt(err, "models '%s': empty command", m->name);
        return NULL;
    }
    if (!used_in) strv_push(&s, xstrdup("--input")), strv_push(&s, xstrdup(job->input_path));
    if (!used_out) strv_push(&s, xstrdup("--output")), strv_push(&s, xstrdup(job->output_path));
    return s.v;
}

/* lm-worker's argv: `run` with the model's settings as options (unset ones are left to
 * lm-worker's defaults), then the model's `args`. Returns a NULL-terminated array, or NULL with
 * err set. */
static char **build_lm_worker_argv(const plan_t *plan, const plan_model_t *m, const job_t *job,
                                   const slot_t *slot, int batch_size, int cpu_threads,
                                   err_t *err) {
    if (!plan->lm_worker_path) {
        err_fmt(err, "models '%s': uses lm-worker but no lm-worker executable was found", m->name);
        return NULL;
    }
    if (!m->model) {
        err_fmt(err, "models '%s': lm-worker needs 'model' (a checkpoint directory)", m->name);
        return NULL;
    }
    strv_t s = {0};
    strv_push(&s, xstrdup(plan->lm_worker_path));
    strv_push(&s, xstrdup("run"));
    strv_push(&s, xstrdup("--model")), strv_push(&s, xstrdup(m->model));
    if (m->adapter) strv_push(&s, xstrdup("--adapter")), strv_push(&s, xstrdup(m->adapter));
    if (m->tokenizer) strv_push(&s, xstrdup("--tokenizer")), strv_push(&s, xstrdup(m->tokenizer));
    strv_push(&s, xstrdup("--input")), strv_push(&s, xstrdup(job->input_path));
    strv_push(&s, xstrdup("--output")), strv_push(&s, xstrdup(job->output_path));
    if (plan->deadline_s > 0) strv_push(&s, xstrdup("--partial-output")), strv_push(&s, job_partial_path(job));
    strv_push(&s, xstrdup("--device")), strv_push(&s, xstrdup(slot->gpu >= 0 ? "cuda" : "cpu"));
    strv_push(&s, xstrdup("--batch-size")), strv_pushf(&s, "%d", batch_size);
    if (m->max_length > 0) strv_push(&s, xstrdup("--max-length")), strv_pushf(&s, "%d", m->max_length);
    int threads = m->threads > 0 ? m->threads : (slot->gpu < 0 ? cpu_threads : 0);
    if (threads > 0) strv_push(&s, xstrdup("--threads")), strv_pushf(&s, "%d", threads);
    if (m->dtype) strv_push(&s, xstrdup("--dtype")), strv_push(&s, xstrdup(m->dtype));
    if (m->quant) strv_push(&s, xstrdup("--quant")), strv_push(&s, xstrdup(m->quant));
    if (m->template_name) strv_push(&s, xstrdup("--template")), strv_push(&s, xstrdup(m->template_name));
    if (m->truncation) strv_push(&s, xstrdup("--truncation")), strv_push(&s, xstrdup(m->truncation));
    for (int i = 0; i < m->n_extra_args; i++) strv_push(&s, xstrdup(m->extra_args[i]));
    return s.v;
}

char **spawn_build_argv(const plan_t *plan, const job_t *job, const slot_t *slot, int batch_size,
                        int cpu_threads, err_t *err) {
    ASSERT(job->model >= 0 && job->model < plan->n_models);
    const plan_model_t *m = &plan->models[job->model];
    if (m->is_lm_worker) return build_lm_worker_argv(plan, m, job, slot, batch_size, cpu_threads, err);
    return build_command_argv(m, job, slot, batch_size, err);
}

/* ------------------------------------------------------------- environment */

/* Length of the NAME part of "NAME=VALUE" (the whole string when there is no '='). */
static size_t env_name_len(const char *kv) {
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

char **spawn_build_env(const plan_t *plan, const job_t *job, const slot_t *slot, int batch_size,
                       char *const *inherited) {
    const plan_model_t *m = &plan->models[job->model];
    strv_t all = {0};
    for (char *const *e = inherited; e && *e; e++) strv_push(&all, xstrdup(*e));
    for (int i = 0; i < m->n_env; i++) strv_push(&all, xstrdup(m->env[i]));
    strv_pushf(&all, "ORCHESTRATE_INPUT=%s", job->input_path);
    strv_pushf(&all, "ORCHESTRATE_OUTPUT=%s", job->output_path);
    strv_pushf(&all, "ORCHESTRATE_DEVICE=%s", slot->device);
    strv_pushf(&all, "ORCHESTRATE_BATCH_SIZE=%d", batch_size);
    strv_pushf(&all, "ORCHESTRATE_MODEL=%s", m->name);
    // 0-based, like the job name's "s<k>of<n>": shard k of n.
    strv_pushf(&all, "ORCHESTRATE_SHARD=%d/%d", job->shard, job->n_shards);
    strv_pushf(&all, "ORCHESTRATE_VARIANT=%s", tta_name(job->variant));
    // Through Slurm there is no progress pipe (fd 3 does not cross srun), and Slurm sets
    // CUDA_VISIBLE_DEVICES for a step's GPU itself (executor_slurm.h).
    if (plan->executor == EXECUTOR_LOCAL) strv_pushf(&all, "ORCHESTRATE_PROGRESS_FD=%d", SPAWN_PROGRESS_FD);
    // The step's shim checks its GPU's memory with the plan's tolerance (executor_slurm.h).
    else strv_pushf(&all, SLURM_MEM_ENV "=%g %g", plan->mem_tolerance_mib, plan->mem_wait_s);
    if (plan->deadline_s > 0) {   // only under a deadline: without one nothing reads it
        char *partial = job_partial_path(job);
        strv_pushf(&all, "ORCHESTRATE_PARTIAL_OUTPUT=%s", partial);
        free(partial);
    }
    if (plan->executor == EXECUTOR_LOCAL || slot->gpu < 0)
        strv_pushf(&all, "CUDA_VISIBLE_DEVICES=%s", slot->cuda_visible);
    // NVML numbers GPUs in PCI bus order and CUDA, by default, fastest first; pinning the
    // order makes CUDA_VISIBLE_DEVICES name the GPU whose memory nvml.c watches.
    strv_push(&all, xstrdup("CUDA_DEVICE_ORDER=PCI_BUS_ID"));

    // Keep only the last definition of each name. O(n^2) in the environment size, which is a
    // few hundred entries at most.
    strv_t out = {0};
    for (size_t i = 0; i < all.n; i++) {
        size_t len = env_name_len(all.v[i]);
        int overridden = 0;
        for (size_t j = i + 1; j < all.n && !overridden; j++)
            overridden = env_name_len(all.v[j]) == len && strncmp(all.v[i], all.v[j], len) == 0;
        if (overridden) free(all.v[i]);
        else strv_push(&out, all.v[i]);
    }
    free(all.v);
    return out.v;
}

int spawn_cpu_threads(int n_workers) {
    cpu_set_t set;
    long cores = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
    if (cores <= 0) cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores <= 0) cores = 1;
    if (n_workers < 1) n_workers = 1;
    long t = cores / n_workers;
    return t < 1 ? 1 : (int)t;
}

/* ------------------------------------------------------------- display */

char *spawn_format_argv(char *const *argv) {
    size_t cap = 256, n = 0;
    char *out = xmalloc(cap);
    out[0] = '\0';
    for (char *const *a = argv; a && *a; a++) {
        int plain = **a != '\0';
        for (const char *c = *a; *c && plain; c++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%", *c) != NULL;
        size_t need = n + 4 * strlen(*a) + 4;
        if (need > cap) out = xrealloc(out, cap = 2 * need);
        if (a != argv) out[n++] = ' ';
        if (plain) {
            n += (size_t)sprintf(out + n, "%s", *a);
            continue;
        }
        out[n++] = '\'';
        for (const char *c = *a; *c; c++) {
            if (*c == '\'') memcpy(out + n, "'\\''", 4), n += 4;
            else out[n++] = *c;
        }
        out[n++] = '\'';
        out[n] = '\0';
    }
    return out;
}

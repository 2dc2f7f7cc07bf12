/* executor_slurm.c: Slurm job steps as the place attempts run (see executor_slurm.h): the
 * allocation check, slots from the allocation, the srun command line, the step marker and
 * scancel. It does NOT supervise processes (attempt.c) or classify outcomes (run.c). */
#include "executor_slurm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nvml.h"
#include "shim.h"
#include "spawn.h"

/* 1 when prog is an executable file in a directory of PATH. */
static int on_path(const char *prog) {
    char *p = plan_path_search(getenv("PATH"), prog);
    free(p);
    return p != NULL;
}

int slurm_check_allocation(err_t *err) {
    const char *job = getenv("SLURM_JOB_ID");
    if (!job || !*job)
        return err_fmt(err, "executor \"slurm\" needs a Slurm allocation (SLURM_JOB_ID is not set): run it "
                            "inside one, e.g. `salloc --nodes=1 --gres=gpu:2 --cpus-per-task=... orchestrate "
                            "--executor slurm --plan plan.json`, or from an sbatch script (docs/slurm.md)");
    if (!on_path("srun") || !on_path("scancel"))
        return err_fmt(err, "executor \"slurm\": srun/scancel not found on PATH (install the Slurm client)");
    return 0;
}

/* A positive integer environment variable, or 0. */
static int env_count(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return (*end == '\0' || *end == '(') && n > 0 && n < 100000 ? (int)n : 0;
}

/* The GPUs of the allocation (all nodes), or 0. */
static int allocation_gpus(void) {
    int per_node = env_count("SLURM_GPUS_ON_NODE");
    int nodes = env_count("SLURM_NNODES");
    if (per_node > 0) return per_node * (nodes > 0 ? nodes : 1);
    const char *list = getenv("SLURM_JOB_GPUS");  // "0,1" (indices on the first node)
    if (list && *list) {
        int n = 1;
        for (const char *p = list; *p; p++) n += *p == ',';
        return n * (nodes > 0 ? nodes : 1);
    }
    // salloc sets neither: ask the controller. The job's TRES holds "gres/gpu=N" (all nodes) when
    // the cluster accounts GPUs; TresPerNode holds "gres:gpu:N" (22.05) or "gres/gpu:[type:]N".
    const char *job = getenv("SLURM_JOB_ID");
    if (!job || !*job) return 0;  // --dry-run outside an allocation: nothing to ask
    char cmd[128];
    snprintf(cmd, sizeof cmd, "scontrol show job %ld 2>/dev/null", atol(job));
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    char line[4096];
    int total = 0, per_node_tres = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "gres/gpu=");
        if (p && total == 0) total = atoi(p + 9);
        p = strstr(line, "TresPerNode=");
        if (p && (p = strstr(p, "gpu")) && per_node_tres == 0) {
            size_t len = strcspn(p, " ,\n");        // "gpu:2" or "gpu:a100:2"
            const char *last = p;
            for (const char *q = p; q < p + len; q++)
                if (*q == ':') last = q + 1;
            per_node_tres = last > p ? atoi(last) : 1;
        }
    }
    pclose(f);
    return total > 0 ? total : per_node_tres * (nodes > 0 ? nodes : 1);
}

int slurm_slots(const plan_t *plan, slot_t **slots, int *n_slots, char *note, size_t note_len, err_t *err) {
    (void)err;
    note[0] = '\0';
    int n_cpu = plan->cpu_workers > 0 ? plan->cpu_workers : 1;
    int n_gpu = plan->use_cpu ? 0 : allocation_gpus();
    if (!plan->use_cpu && n_gpu == 0)
        snprintf(note, note_len, "the Slurm allocation has no GPU: running %d step(s) at a time on CPUs", n_cpu);
    int n = n_gpu > 0 ? n_gpu : n_cpu;
    *slots = xcalloc((size_t)n, sizeof **slots);
    for (int i = 0; i < n; i++) {
        slot_t *s = &(*slots)[i];
        s->gpu = n_gpu > 0 ? i : -1;  // a GPU of the allocation; Slurm picks which one per step
        snprintf(s->device, sizeof s->device, "%s", n_gpu > 0 ? "cuda:0" : "cpu");
        s->cuda_visible[0] = '\0';
    }
    *n_slots = n;
    return 0;
}

/* Append a copy of s to the vector v of *n entries (capacity grows as needed). */
static void push(char ***v, size_t *n, const char *s) {
    *v = xrealloc(*v, (*n + 2) * sizeof **v);
    (*v)[(*n)++] = xstrdup(s);
    (*v)[*n] = NULL;
}

char **slurm_step_argv(const plan_t *plan, const job_t *job, const slot_t *slot, int cpus,
                       const char *self, char *const *worker_argv) {
    char **v = NULL;
    size_t n = 0;
    char buf[256];
    push(&v, &n, "srun");
    push(&v, &n, "--ntasks=1");
    push(&v, &n, "--nodes=1");
    push(&v, &n, "--exclusive");
    push(&v, &n, "--kill-on-bad-exit=1");
    snprintf(buf, sizeof buf, "--job-name=orch-%s", job->name);
    push(&v, &n, buf);
    if (slot->gpu >= 0) push(&v, &n, "--gres=gpu:1");
    else {
        push(&v, &n, "--gres=none");  // without it a step gets every GPU of the allocation
        snprintf(buf, sizeof buf, "--cpus-per-task=%d", cpus > 0 ? cpus : 1);
        push(&v, &n, buf);
    }
    for (int i = 0; i < plan->n_srun_args; i++) push(&v, &n, plan->srun_args[i]);
    push(&v, &n, "--");
    push(&v, &n, self);
    push(&v, &n, SHIM_FLAG);
    push(&v, &n, "0");  // no parent to watch: on the node the shim's parent is slurmstepd
    for (char *const *a = worker_argv; *a; a++) push(&v, &n, *a);
    return v;
}

int slurm_parse_marker(const char *line, size_t len, char *step, size_t step_len, char *node, size_t node_len) {
    size_t ml = strlen(SLURM_STEP_MARKER);
    if (len <= ml || memcmp(line, SLURM_STEP_MARKER, ml) != 0) return 0;
    const char *p = line + ml, *end = line + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp) sp = end;
    snprintf(step, step_len, "%.*s", (int)(sp - p), p);
    snprintf(node, node_len, "%.*s", sp < end ? (int)(end - sp - 1) : 0, sp < end ? sp + 1 : "");
    return 1;
}

void slurm_print_marker(void) {
    const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID");
    if (!job || !step) return;
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    fprintf(stderr, SLURM_STEP_MARKER "%s.%s %s\n", job, step, host);
    fflush(stderr);
}

int slurm_progress_forwarder(void) {
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) != 0) {
        fprintf(stderr, "orchestrate --shim: pipe: %s (no progress lines)\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "orchestrate --shim: fork: %s (no progress lines)\n", strerror(errno));
        close(fd[0]), close(fd[1]);
        return -1;
    }
    if (pid > 0) {
        close(fd[0]);
        return fd[1];
    }
    // The forwarder: lines of at most 200 bytes (a progress line is far shorter; longer ones
    // are cut), each written with its prefix in one write() so that it cannot interleave with
    // the worker's own stderr lines.
    close(fd[1]);
    char out[256], buf[4096];
    size_t pl = strlen(SLURM_PROGRESS_MARKER), n = pl;
    memcpy(out, SLURM_PROGRESS_MARKER, pl);
    for (;;) {
        ssize_t r = read(fd[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] != '\n') {
                if (n < pl + 200) out[n++] = buf[i];
                continue;
            }
            out[n++] = '\n';
            ssize_t w = write(2, out, n);
            (void)w;  // stderr gone: the step is ending anyway
            n = pl;
        }
    }
    _exit(0);
}

int slurm_parse_mem(const char *line, size_t len, int *gpu, double *before, double *after, char *why,
                    size_t why_len) {
    size_t ml = strlen(SLURM_MEM_MARKER);
    if (len <= ml || len >= 512 || memcmp(line, SLURM_MEM_MARKER, ml) != 0) return 0;
    char tmp[512];
    memcpy(tmp, line + ml, len - ml);
    tmp[len - ml] = '\0';
    why[0] = '\0';
    *gpu = -1, *before = *after = 0;
    if (sscanf(tmp, "gpu=%d before=%lf after=%lf", gpu, before, after) == 3 && *gpu >= 0) return 1;
    *gpu = -1;
    snprintf(why, why_len, "%s", strncmp(tmp, "not done: ", 10) == 0 ? tmp + 10 : tmp);
    return 1;
}

/* Monotonic seconds. */
static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void slurm_mem_before(slurm_mem_t *m) {
    memset(m, 0, sizeof *m);
    m->gpu = -1;
    const char *gpus = getenv("SLURM_STEP_GPUS");  // the step's GPU, as NVML numbers it
    if (!gpus || !*gpus || strchr(gpus, ',')) {
        snprintf(m->why, sizeof m->why, "%s", !gpus || !*gpus ? "no GPU in this step" : "more than one GPU in this step");
        return;
    }
    char note[160] = "";
    nvml_t *n = nvml_open(note, sizeof note);
    if (!n) {
        snprintf(m->why, sizeof m->why, "%s", note);
        return;
    }
    int gpu = atoi(gpus);
    err_t err = {0};
    if (gpu < 0 || gpu >= nvml_device_count(n) || nvml_read_used(n, &gpu, 1, &m->before_mib, &err) != 0) {
        snprintf(m->why, sizeof m->why, "cannot read GPU %d: %.100s", gpu, err.msg[0] ? err.msg : "no such GPU");
        nvml_close(n);
        return;
    }
    m->gpu = gpu;
    m->nvml = n;
}

void slurm_mem_after(slurm_mem_t *m) {
    if (m->gpu < 0) {
        fprintf(stderr, SLURM_MEM_MARKER "not done: %s\n", m->why);
        return;
    }
    double tol = 64, wait_s = 10, after = 0;
    const char *cfg = getenv(SLURM_MEM_ENV);
    if (cfg) sscanf(cfg, "%lf %lf", &tol, &wait_s);
    double t0 = mono_s();
    err_t err = {0};
    int ok;
    while ((ok = nvml_read_used(m->nvml, &m->gpu, 1, &after, &err) == 0) && after > m->before_mib + tol &&
           mono_s() - t0 < wait_s) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (ok) fprintf(stderr, SLURM_MEM_MARKER "gpu=%d before=%.0f after=%.0f\n", m->gpu, m->before_mib, after);
    else fprintf(stderr, SLURM_MEM_MARKER "not done: cannot read GPU %d: %.100s\n", m->gpu, err.msg);
    nvml_close(m->nvml);
    m->nvml = NULL;
}

/* fake_worker.c: a worker that follows docs/workers.md without a model, for orchestrate's tests.
 *
 * It reads the input CSV (common/csv_io.h) and writes `id,winner_model_a,winner_model_b,
 * winner_tie` atomically (common/atomic_file.h). The probabilities are a deterministic function
 * of the row's id and of the byte lengths la, lb of its response_a and response_b cells:
 *     h  = FNV-1a(id) % 5
 *     wa = 1 + la % 17 + h + seed,  wb = 1 + lb % 17 + h + seed,  wt = 2 + la % 7 + seed % 3
 *     p  = (wa, wb, wt) / (wa + wb + wt)
 * wt depends on la only, so the function is not symmetric in a and b: a swap_ab job's output,
 * flipped back, differs from the identity job's, and a test can tell a missing swap or a
 * missing flip-back. --swap-columns exchanges the two columns itself, so a test can compute
 * the swap_ab reference without orchestrate.
 *
 * Misbehaviours, for the supervision tests (each is a flag):
 *   --crash-once MARKER  exit 1 when MARKER does not exist (creating it); succeed afterwards
 *   --hang               sleep forever after reading the input
 *   --grandchild-hang F  fork a child that sleeps forever (its pid written to F), then hang
 *   --ignore-term        ignore SIGTERM (the supervisor must escalate to SIGKILL)
 *   --linger-child F     fork a child that sleeps forever holding stdout/stderr (its pid written
 *                        to F), then do the work and exit 0
 *   --daemon F           like --linger-child, but the child calls setsid() first (a daemon that
 *                        left the worker's process group and session)
 *   --oom-above N        exit 75 while the batch size is above N
 *   --oom-text           with --oom-above: print "CUDA out of memory" and exit 1 instead
 *   --wrong-id           write a wrong id on the first row
 *   --nan                write NaN on the first row
 *   --index-column       write a leading unnamed row-number column, as pandas' to_csv does
 *                        without index=False
 *   --partial            write half the rows to a temp file next to the output, exit 1
 *   --partial-ok         write half the rows straight to the output path, exit 0
 *   --slow MS            sleep MS milliseconds per batch, writing progress lines
 *   --slow-while F       with --slow: only when file F exists (pass it as --slow-while=F, so that
 *                        resume does not fingerprint it): a rerun can be fast with the same key
 *   --bad-input          exit 65 with a message naming the input
 *   --exit N             exit N at once (after printing a line to stderr)
 *   --trace FILE         append "start <model> <shard> <variant> batch=<n> pid=<pid> cvd=<CUDA_VISIBLE_DEVICES>"
 *   --seed S             change the probabilities (a different "model")
 * With ORCHESTRATE_PARTIAL_OUTPUT set it also appends each finished batch's rows there (header
 * first, flushed per batch) and then reports the rows done, as docs/workers.md describes;
 * --no-partial makes it ignore ORCHESTRATE_PARTIAL_OUTPUT (a worker that did not opt in).
 * The batch size comes from --batch-size, else ORCHESTRATE_BATCH_SIZE, else 8.
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "csv_io.h"
#include "exit_codes.h"

typedef struct {
    const char *input, *output, *crash_once, *grandchild, *trace, *linger, *daemon, *slow_while;
    int batch, oom_above, seed, slow_ms, exit_code;
    int no_partial, hang, ignore_term, oom_text, wrong_id, nan, partial, partial_ok, bad_input, swap, index_col;
} opts_t;

static void hang_forever(void) {
    for (;;) pause();
}

static int parse(int argc, char **argv, opts_t *o) {
    memset(o, 0, sizeof *o);
    o->batch = -1;
    o->oom_above = -1;
    o->exit_code = -1;
    for (int i = 1; i < argc; i++) {
        // "--name=value" or "--name value". The first form keeps a file that the worker writes
        // (the trace) from being a command argument that names an existing file, which
        // orchestrate fingerprints for resume.
        char name[64];
        const char *a = argv[i], *eq = strchr(a, '=');
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int inline_v = eq && strncmp(a, "--", 2) == 0 && (size_t)(eq - a) < sizeof name;
        if (inline_v) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            a = name, v = eq + 1;
        }
#define VAL() (v ? (i += !inline_v, v) : (fprintf(stderr, "fake_worker: %s needs a value\n", a), exit(EXIT_USAGE), ""))
        if (!strcmp(a, "--input")) o->input = VAL();
        else if (!strcmp(a, "--output")) o->output = VAL();
        else if (!strcmp(a, "--batch-size")) o->batch = atoi(VAL());
        else if (!strcmp(a, "--crash-once")) o->crash_once = VAL();
        else if (!strcmp(a, "--grandchild-hang")) o->grandchild = VAL();
        else if (!strcmp(a, "--trace")) o->trace = VAL();
        else if (!strcmp(a, "--linger-child")) o->linger = VAL();
        else if (!strcmp(a, "--daemon")) o->daemon = VAL();
        else if (!strcmp(a, "--oom-above")) o->oom_above = atoi(VAL());
        else if (!strcmp(a, "--seed")) o->seed = atoi(VAL());
        else if (!strcmp(a, "--slow")) o->slow_ms = atoi(VAL());
        else if (!strcmp(a, "--slow-while")) o->slow_while = VAL();
        else if (!strcmp(a, "--exit")) o->exit_code = atoi(VAL());
        else if (!strcmp(a, "--hang")) o->hang = 1;
        else if (!strcmp(a, "--no-partial")) o->no_partial = 1;
        else if (!strcmp(a, "--ignore-term")) o->ignore_term = 1;
        else if (!strcmp(a, "--oom-text")) o->oom_text = 1;
        else if (!strcmp(a, "--wrong-id")) o->wrong_id = 1;
        else if (!strcmp(a, "--nan")) o->nan = 1;
        else if (!strcmp(a, "--index-column")) o->index_col = 1;
        else if (!strcmp(a, "--partial")) o->partial = 1;
        else if (!strcmp(a, "--partial-ok")) o->partial_ok = 1;
        else if (!strcmp(a, "--bad-input")) o->bad_input = 1;
        else if (!strcmp(a, "--swap-columns")) o->swap = 1;
        else {
            fprintf(stderr, "fake_worker: unknown argument '%s'\n", a);
            return -1;
        }
#undef VAL
    }
    if (!o->input) o->input = getenv("ORCHESTRATE_INPUT");
    if (!o->output) o->output = getenv("ORCHESTRATE_OUTPUT");
    if (o->batch < 0) o->batch = getenv("ORCHESTRATE_BATCH_SIZE") ? atoi(getenv("ORCHESTRATE_BATCH_SIZE")) : 8;
    if (o->slow_while && access(o->slow_while, F_OK) != 0) o->slow_ms = 0;
    if (!o->input || !o->output) {
        fprintf(stderr, "fake_worker: need --input and --output (or ORCHESTRATE_INPUT/OUTPUT)\n");
        return -1;
    }
    return 0;
}

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void trace(const opts_t *o) {
    if (!o->trace) return;
    int fd = open(o->trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[512];
    const char *m = getenv("ORCHESTRATE_MODEL"), *s = getenv("ORCHESTRATE_SHARD"), *v = getenv("ORCHESTRATE_VARIANT");
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID");
    char slurm[64] = "";
    if (job && step) snprintf(slurm, sizeof slurm, " step=%s.%s", job, step);  // under Slurm only
    int n = snprintf(line, sizeof line, "start %s %s %s batch=%d pid=%ld cvd=%s%s\n", m ? m : "-", s ? s : "-",
                     v ? v : "-", o->batch, (long)getpid(), cvd ? cvd : "(unset)", slurm);
    if (write(fd, line, (size_t)n) < 0) perror("fake_worker: trace");
    close(fd);
}

static void progress(int done, int total) {
    const char *fd_s = getenv("ORCHESTRATE_PROGRESS_FD");
    if (!fd_s) return;
    char line[64];
    int n = snprintf(line, sizeof line, "progress %d %d\n", done, total);
    if (write(atoi(fd_s), line, (size_t)n) < 0) { /* the supervisor may not listen: fine */ }
}

static void write_row(FILE *f, const char *id, const double p[3]) {
    csv_write_field(f, id, strlen(id));
    fprintf(f, ",%.9f,%.9f,%.9f\n", p[0], p[1], p[2]);
}

int main(int argc, char **argv) {
    opts_t o;
    if (parse(argc, argv, &o) != 0) return EXIT_USAGE;
    if (o.ignore_term) signal(SIGTERM, SIG_IGN);
    trace(&o);
    printf("fake_worker: input %s, batch size %d\n", o.input, o.batch);
    fflush(stdout);
    if (o.exit_code >= 0) {
        fprintf(stderr, "fake_worker: exiting with %d as asked\n", o.exit_code);
        return o.exit_code;
    }
    // O_EXCL: of workers started together, exactly one creates the marker and crashes.
    int marker_fd = o.crash_once ? open(o.crash_once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
    if (marker_fd >= 0) {
        close(marker_fd);
        fprintf(stderr, "fake_worker: crashing once, as asked\n");
        return 1;
    }
    if (o.bad_input) {
        fprintf(stderr, "fake_worker: %s: line 2: column 'prompt' is not a JSON list\n", o.input);
        return EXIT_DATAERR;
    }
    if (o.oom_above >= 0 && o.batch > o.oom_above) {
        if (o.oom_text) {
            fprintf(stderr, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (batch %d)\n", o.batch);
            return 1;
        }
        fprintf(stderr, "fake_worker: out of device memory at batch size %d\n", o.batch);
        return EXIT_OOM;
    }

    csv_table_t t;
    err_t err = {0};
    if (csv_table_read(&t, o.input, &err) != 0) {
        fprintf(stderr, "fake_worker: %s\n", err.msg);
        return EXIT_DATAERR;
    }
    if (o.grandchild) {
        pid_t pid = fork();
        if (pid == 0) hang_forever();
        FILE *f = fopen(o.grandchild, "we");
        if (f) fprintf(f, "%ld\n", (long)pid), fclose(f);
        hang_forever();
    }
    if (o.hang) hang_forever();
    const char *leave = o.linger ? o.linger : o.daemon;
    if (leave) {
        pid_t pid = fork();
        if (pid == 0) {
            if (o.daemon) setsid();
            hang_forever();
        }
        FILE *f = fopen(leave, "we");
        if (f) fprintf(f, "%ld\n", (long)pid), fclose(f);
    }

    int ca = csv_table_col(&t, "response_a"), cb = csv_table_col(&t, "response_b");
    if (o.swap) {
        int tmp = ca;
        ca = cb, cb = tmp;
    }
    size_t n = t.n_rows;
    size_t n_write = (o.partial || o.partial_ok) ? n / 2 : n;
    int batch = o.batch > 0 ? o.batch : 1;
    atomic_file_t af = {0};
    FILE *f = NULL;
    if (o.partial_ok) {
        f = fopen(o.output, "we");
        if (!f) {
            perror(o.output);
            return EXIT_IOERR;
        }
    } else if (atomic_file_open(&af, o.output, &err) != 0) {
        fprintf(stderr, "fake_worker: %s\n", err.msg);
        return EXIT_IOERR;
    } else {
        f = af.f;
    }
    fprintf(f, "%sid,winner_model_a,winner_model_b,winner_tie\n", o.index_col ? "," : "");
    const char *partial_path = o.no_partial ? NULL : getenv("ORCHESTRATE_PARTIAL_OUTPUT");
    FILE *partial = partial_path ? fopen(partial_path, "we") : NULL;
    if (partial) fputs("id,winner_model_a,winner_model_b,winner_tie\n", partial), fflush(partial);
    for (size_t r = 0; r < n_write; r++) {
        if (o.slow_ms > 0 && r % (size_t)batch == 0) {
            usleep((useconds_t)o.slow_ms * 1000);
            progress((int)r, (int)n);
        }
        const char *id = csv_cell(&t, r, 0);
        size_t la = ca >= 0 ? csv_cell_len(&t, r, (size_t)ca) : 0;
        size_t lb = cb >= 0 ? csv_cell_len(&t, r, (size_t)cb) : 0;
        double h = (double)(fnv1a(id) % 5);
        double wa = 1 + (double)(la % 17) + h + o.seed, wb = 1 + (double)(lb % 17) + h + o.seed;
        double wt = 2 + (double)(la % 7) + o.seed % 3;
        double s = wa + wb + wt, p[3] = {wa / s, wb / s, wt / s};
        if (r == 0 && o.nan) p[0] = NAN;
        char wrong[256];
        if (r == 0 && o.wrong_id) snprintf(wrong, sizeof wrong, "wrong-%s", id), id = wrong;
        if (o.index_col) fprintf(f, "%zu,", r);
        write_row(f, id, p);
        if (partial) {
            write_row(partial, id, p);
            if ((r + 1) % (size_t)batch == 0 || r + 1 == n_write) {   // a batch finished
                fflush(partial);
                progress((int)r + 1, (int)n);
            }
        }
    }
    if (partial) fclose(partial);
    progress((int)n_write, (int)n);
    if (o.partial) {
        fflush(f);
        fprintf(stderr, "fake_worker: giving up half way, as asked\n");
        _exit(1);  // leaves the temp file behind, as a crashing worker would
    }
    if (o.partial_ok) {
        fclose(f);
    } else if (atomic_file_commit(&af, &err) != 0) {
        fprintf(stderr, "fake_worker: %s\n", err.msg);
        return EXIT_IOERR;
    }
    printf("fake_worker: wrote %zu rows to %s\n", n_write, o.output);
    csv_table_free(&t);
    return 0;
}

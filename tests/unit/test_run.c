/* test_run.c: the running side on its own: spawn.c's argv/environment, and run_stage with
 * hand-built jobs driving tests/helpers/fake_worker through retries, OOM halving, timeouts,
 * fail-fast exit codes, exec failures, validation failures and SIGTERM.
 *
 * Like libuv's own tests, the test binary is also the shim: run_stage re-executes
 * /proc/self/exe as `--shim PPID CMD...`, so main() hands that mode to shim_main first.
 * Each run_stage test checks afterwards that no process of any worker group is left.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomic_file.h"
#include "clock_util.h"
#include "exit_codes.h"
#include "memcheck.h"
#include "nvml.h"
#include "orch.h"
#include "run.h"
#include "run_internal.h"
#include "shim.h"
#include "spawn.h"
#include "tinytest.h"

static char g_fake[4096];    // fake_worker path
static char g_tmp[256];      // per-test temp directory

/* ------------------------------------------------------------------ fixtures */

/* Write a 6-row input CSV in the competition layout. */
static void write_input(const char *path, char ***ids, size_t *n) {
    static const char *rows[] = {
        "101,\"[\"\"hi\"\"]\",\"[\"\"hello there\"\"]\",\"[\"\"hey\"\"]\"",
        "102,\"[\"\"q\"\"]\",\"[\"\"a, with comma\"\"]\",\"[\"\"b\"\"]\"",
        "103,\"[\"\"x\"\"]\",\"[\"\"multi\nline\"\"]\",\"[\"\"yy\"\"]\"",
        "104,\"[\"\"y\"\"]\",\"[null]\",\"[\"\"zzz zzz\"\"]\"",
        "105,\"[\"\"z\"\"]\",\"[\"\"\"\"]\",\"[\"\"\"\"]\"",
        "106,\"[\"\"w\"\"]\",\"[\"\"quote \"\"\"\" inside\"\"]\",\"[\"\"ok\"\"]\"",
    };
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fprintf(f, "id,prompt,response_a,response_b\n");
    for (size_t i = 0; i < 6; i++) fprintf(f, "%s\n", rows[i]);
    fclose(f);
    *n = 6;
    *ids = xcalloc(6, sizeof **ids);
    for (int i = 0; i < 6; i++) {
        char b[16];
        snprintf(b, sizeof b, "%d", 101 + i);
        (*ids)[i] = xstrdup(b);
    }
}

typedef struct {
    plan_t plan;
    job_t *jobs;
    int n_jobs;
    slot_t slots[4];
    int n_slots;
} fx_t;

static void mktmp(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_run.XXXXXX");
    ASSERT(mkdtemp(g_tmp));
}

/* A plan with one command model whose argv is fake_worker + extra (space-separated, JSON-safe
 * words), plus `model_json` extra members, and n_jobs jobs over the same 6-row input. */
static void fx_init(fx_t *fx, int n_jobs, int n_slots, const char *extra, const char *model_json) {
    memset(fx, 0, sizeof *fx);
    mktmp();
    char input[512], planjson[8192], args[2048] = "";
    snprintf(input, sizeof input, "%s/input.csv", g_tmp);
    char **ids;
    size_t n_ids;
    write_input(input, &ids, &n_ids);
    char *save = NULL, *copy = xstrdup(extra);
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        size_t l = strlen(args);
        snprintf(args + l, sizeof args - l, ", \"%s\"", w);
    }
    free(copy);
    snprintf(planjson, sizeof planjson,
             "{\"input\": \"%s\", \"output\": \"%s/sub.csv\", \"work_dir\": \"%s/work\", \"gpus\": \"cpu\",\n"
             " \"cpu_workers\": %d, \"kill_grace_s\": 0.5,\n"
             " \"models\": [{\"name\": \"m\", \"command\": [\"%s\"%s]%s%s}]}\n",
             input, g_tmp, g_tmp, n_slots, g_fake, args, model_json[0] ? ", " : "", model_json);
    err_t err = {0};
    char name[512];
    snprintf(name, sizeof name, "%s/plan.json", g_tmp);
    int rc = plan_load_buf(&fx->plan, planjson, strlen(planjson), name, &err);
    EXPECT_MSG(rc == 0, "%s\n%s", err.msg, planjson);
    ASSERT(rc == 0);
    fx->n_slots = n_slots;
    for (int s = 0; s < n_slots; s++) {
        fx->slots[s].gpu = -1;
        snprintf(fx->slots[s].device, sizeof fx->slots[s].device, "cpu");
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/work/outputs", g_tmp);
    fs_mkdir_p(dir, &err);
    fx->n_jobs = n_jobs;
    fx->jobs = xcalloc((size_t)n_jobs, sizeof *fx->jobs);
    for (int j = 0; j < n_jobs; j++) {
        job_t *job = &fx->jobs[j];
        snprintf(job->name, sizeof job->name, "m.identity.s%dof%d", j, n_jobs);
        job->model = 0;
        job->shard = j, job->n_shards = n_jobs;
        job->input_path = xstrdup(input);
        char p[700];
        snprintf(p, sizeof p, "%s/work/outputs/%s.csv", g_tmp, job->name);
        job->output_path = xstrdup(p);
        snprintf(p, sizeof p, "%s/work/logs/%s.log", g_tmp, job->name);
        job->log_path = xstrdup(p);
        snprintf(p, sizeof p, "key%d", j);
        job->key = xstrdup(p);
        job->n_rows = n_ids;
        job->ids = xcalloc(n_ids, sizeof *job->ids);
        for (size_t i = 0; i < n_ids; i++) job->ids[i] = xstrdup(ids[i]);
        job->cost = 100 + (size_t)j;  // later jobs are "longer": they must start first
        job->slot = -1;
    }
    for (size_t i = 0; i < n_ids; i++) free(ids[i]);
    free(ids);
}

/* Replace element i of model 0's command with a copy of arg. */
static void fx_set_arg(fx_t *fx, int i, const char *arg) {
    free(fx->plan.models[0].command[i]);
    fx->plan.models[0].command[i] = xstrdup(arg);
}

static void rm_rf(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static void fx_free(fx_t *fx) {
    for (int j = 0; j < fx->n_jobs; j++) {
        job_t *job = &fx->jobs[j];
        for (size_t i = 0; i < job->n_rows; i++) free(job->ids[i]);
        free(job->ids), free(job->input_path), free(job->output_path), free(job->log_path), free(job->key);
    }
    free(fx->jobs);
    plan_free(&fx->plan);
    rm_rf(g_tmp);
}

/* State and process group of pid from /proc/<pid>/stat. Returns 0, or -1 when it is gone. */
static int proc_stat(pid_t pid, char *state, long *pgrp) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');  // the command name may hold spaces and parentheses
    long ppid;
    if (!p || sscanf(p + 1, " %c %ld %ld", state, &ppid, pgrp) != 3) return -1;
    return 0;
}

/* 1 when pid is alive. A zombie is dead: it waits for its new parent (init) to reap it, which
 * in a container may take a while or never happen. */
static int pid_alive(pid_t pid) {
    char st;
    long pg;
    return proc_stat(pid, &st, &pg) == 0 && st != 'Z';
}

/* 1 when a live process is in process group pg. */
static int group_alive(pid_t pg) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int alive = 0;
    while (d && !alive && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        char st;
        long pgrp;
        if (*end == '\0' && pid > 0 && proc_stat((pid_t)pid, &st, &pgrp) == 0)
            alive = pgrp == pg && st != 'Z';
    }
    if (d) closedir(d);
    return alive;
}

/* Wait up to 2 s for alive(id) to turn 0: SIGKILL is delivered asynchronously, so a grandchild
 * (not our child: we cannot wait for it) may still be on its way out when run_stage returns. */
static int gone_within_2s(int (*alive)(pid_t), pid_t id) {
    for (int i = 0; i < 200; i++) {
        if (!alive(id)) return 1;
        usleep(10000);
    }
    return 0;
}

/* Run the fixture's stage. Checks that no worker process group survived. */
static int fx_run(fx_t *fx, err_t *err, double *seconds) {
    run_ctx_t *ctx = run_ctx_create(&fx->plan, 1, err);
    ASSERT(ctx);
    double t0 = clock_mono_s();
    int rc = run_stage(ctx, fx->jobs, fx->n_jobs, fx->slots, fx->n_slots, err);
    if (seconds) *seconds = clock_mono_s() - t0;
    for (int i = 0; i < ctx->n_pgids; i++)
        EXPECT_MSG(gone_within_2s(group_alive, ctx->pgids[i]), "process group %ld still has a live process",
                   (long)ctx->pgids[i]);
    run_ctx_destroy(ctx);
    return rc;
}

static int file_exists(const char *p) {
    return access(p, F_OK) == 0;
}

static char *slurp(const char *p) {
    err_t err = {0};
    char *s = fs_read_all(p, FS_LIMIT_CSV, NULL, &err);
    return s ? s : xstrdup("");
}

/* ------------------------------------------------------------------ spawn.c */

TEST(test_argv_substitution) {
    fx_t fx;
    fx_init(&fx, 1, 1, "--bs={batch_size} {device} --in {input} x{max_length}y JSON", "\"batch_size\": 12");
    // plan.c rejects unknown placeholders; spawn.c must still leave other braces alone.
    fx_set_arg(&fx, 6, "{unknown}");
    err_t err = {0};
    char **argv = spawn_build_argv(&fx.plan, &fx.jobs[0], &fx.slots[0], 6, 1, &err);
    ASSERT(argv);
    EXPECT(strcmp(argv[0], g_fake) == 0);
    EXPECT(strcmp(argv[1], "--bs=6") == 0);
    EXPECT(strcmp(argv[2], "cpu") == 0);
    EXPECT(strcmp(argv[4], fx.jobs[0].input_path) == 0);
    EXPECT(strcmp(argv[5], "x1024y") == 0);
    EXPECT(strcmp(argv[6], "{unknown}") == 0);  // not ours: kept as written
    // {output} was never named, so it is appended; {input} was, so it is not.
    EXPECT(strcmp(argv[7], "--output") == 0);
    EXPECT(strcmp(argv[8], fx.jobs[0].output_path) == 0);
    EXPECT(argv[9] == NULL);
    char *line = spawn_format_argv(argv);
    EXPECT_STR_CONTAINS(line, "'{unknown}'");
    free(line);
    spawn_strv_free(argv);
    fx_free(&fx);
}

TEST(test_argv_model_placeholder_needs_model) {
    fx_t fx;
    // plan.c already refuses this; spawn.c must not trust that and pass NULL on.
    fx_init(&fx, 1, 1, "MODEL", "");
    fx_set_arg(&fx, 1, "--model={model}");
    err_t err = {0};
    char **argv = spawn_build_argv(&fx.plan, &fx.jobs[0], &fx.slots[0], 8, 1, &err);
    EXPECT(argv == NULL);
    EXPECT_STR_CONTAINS(err.msg, "{model}");
    spawn_strv_free(argv);
    fx_free(&fx);
}

TEST(test_argv_lm_worker) {
    fx_t fx;
    fx_init(&fx, 1, 1, "", "");
    plan_model_t *m = &fx.plan.models[0];
    m->is_lm_worker = 1;
    m->model = xstrdup("/ckpt");
    m->dtype = xstrdup("bf16");
    fx.plan.lm_worker_path = xstrdup("/bin/lm-worker");
    err_t err = {0};
    char **argv = spawn_build_argv(&fx.plan, &fx.jobs[0], &fx.slots[0], 4, 3, &err);
    ASSERT(argv);
    char *line = spawn_format_argv(argv);
    EXPECT_STR_CONTAINS(line, "/bin/lm-worker run --model /ckpt --input ");
    EXPECT_STR_CONTAINS(line, "--device cpu --batch-size 4 --max-length 1024 --threads 3 --dtype bf16");
    free(line);
    spawn_strv_free(argv);
    // On a GPU slot, --threads is left to lm-worker and the device is cuda.
    slot_t gpu = {.gpu = 2, .device = "cuda:0", .cuda_visible = "2"};
    argv = spawn_build_argv(&fx.plan, &fx.jobs[0], &gpu, 4, 3, &err);
    line = spawn_format_argv(argv);
    EXPECT_STR_CONTAINS(line, "--device cuda --batch-size 4");
    EXPECT(strstr(line, "--threads") == NULL);
    free(line);
    spawn_strv_free(argv);
    fx_free(&fx);
}

static const char *env_get(char **env, const char *name) {
    size_t n = strlen(name);
    const char *found = NULL;
    for (char **e = env; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
            EXPECT_MSG(found == NULL, "%s defined twice", name);
            found = *e + n + 1;
        }
    return found;
}

TEST(test_env) {
    fx_t fx;
    fx_init(&fx, 2, 1, "", "\"env\": {\"HOME\": \"/custom\", \"EXTRA\": \"1\"}");
    char *inherited[] = {"HOME=/root", "CUDA_VISIBLE_DEVICES=0,1,2", "PATH=/bin", NULL};
    slot_t gpu = {.gpu = 3, .device = "cuda:0", .cuda_visible = "3"};
    char **env = spawn_build_env(&fx.plan, &fx.jobs[1], &gpu, 16, inherited);
    EXPECT(strcmp(env_get(env, "HOME"), "/custom") == 0);   // the model's env wins over ours
    EXPECT(strcmp(env_get(env, "PATH"), "/bin") == 0);
    EXPECT(strcmp(env_get(env, "EXTRA"), "1") == 0);
    EXPECT(strcmp(env_get(env, "CUDA_VISIBLE_DEVICES"), "3") == 0);  // the slot wins
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_SHARD"), "1/2") == 0);
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_BATCH_SIZE"), "16") == 0);
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_MODEL"), "m") == 0);
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_DEVICE"), "cuda:0") == 0);
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_PROGRESS_FD"), "3") == 0);
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_INPUT"), fx.jobs[1].input_path) == 0);
    EXPECT(strcmp(env_get(env, "ORCHESTRATE_OUTPUT"), fx.jobs[1].output_path) == 0);
    spawn_strv_free(env);
    EXPECT(spawn_cpu_threads(1000000) == 1);
    EXPECT(spawn_cpu_threads(1) >= 1);
    fx_free(&fx);
}

/* ------------------------------------------------------------------ run_stage */

TEST(test_run_happy) {
    fx_t fx;
    fx_init(&fx, 3, 2, "--trace {output}.trace", "");
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT_MSG(rc == 0, "%s", err.msg);
    for (int j = 0; j < fx.n_jobs; j++) {
        job_t *job = &fx.jobs[j];
        EXPECT(job->status == JOB_DONE);
        EXPECT(job->attempts == 1 && job->exit_codes[0] == 0 && job->batch_sizes[0] == 8);
        EXPECT(job->rows_done == job->n_rows);
        EXPECT(job->t_end >= job->t_start && job->t_start > 0);
        EXPECT(file_exists(job->output_path));
        EXPECT(job->slot >= 0 && job->slot < 2);
        char *log = slurp(job->log_path);
        EXPECT_STR_CONTAINS(log, "attempt 1, batch_size 8");
        EXPECT_STR_CONTAINS(log, "fake_worker: wrote 6 rows");
        EXPECT_STR_CONTAINS(log, "output accepted");
        free(log);
        char rec[700];
        snprintf(rec, sizeof rec, "%s/work/done/%s.csv", g_tmp, job->key);
        EXPECT_MSG(file_exists(rec), "no resume record %s", rec);
    }
    // Longest first: the costliest job (the last) starts first, on slot 0.
    EXPECT(fx.jobs[2].slot == 0);
    fx_free(&fx);
}

TEST(test_run_retry_after_crash) {
    fx_t fx;
    fx_init(&fx, 1, 1, "--crash-once MARKER", "\"retries\": 1");
    // The marker lives in the temp dir; patch the argv element.
    plan_model_t *m = &fx.plan.models[0];
    char marker[600];
    snprintf(marker, sizeof marker, "%s/crashed", g_tmp);
    free(m->command[2]);
    m->command[2] = xstrdup(marker);
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT_MSG(rc == 0, "%s", err.msg);
    EXPECT(fx.jobs[0].attempts == 2);
    EXPECT(fx.jobs[0].exit_codes[0] == 1 && fx.jobs[0].exit_codes[1] == 0);
    char *log = slurp(fx.jobs[0].log_path);
    EXPECT_STR_CONTAINS(log, "crashing once");
    EXPECT_STR_CONTAINS(log, "attempt 2, batch_size 8");
    free(log);
    fx_free(&fx);
}

TEST(test_run_oom_halving) {
    fx_t fx;
    // retries 0: the halvings must not consume retries.
    fx_init(&fx, 1, 1, "--batch-size {batch_size} --oom-above 2", "\"batch_size\": 16, \"retries\": 0");
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT_MSG(rc == 0, "%s", err.msg);
    job_t *job = &fx.jobs[0];
    EXPECT(job->attempts == 4);
    int want[] = {16, 8, 4, 2};
    for (int k = 0; k < 4 && k < job->attempts; k++) {
        EXPECT(job->batch_sizes[k] == want[k]);
        EXPECT(job->exit_codes[k] == (k < 3 ? EXIT_OOM : 0));
    }
    fx_free(&fx);
}

TEST(test_run_oom_text_and_floor) {
    fx_t fx;
    // A command worker printing "CUDA out of memory" and exiting 1 counts as OOM. At batch
    // size 1 an OOM is an ordinary failure: retries 1 allows one more attempt, then it fails.
    fx_init(&fx, 1, 1, "--batch-size {batch_size} --oom-above 0 --oom-text", "\"batch_size\": 2, \"retries\": 1");
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT(rc == -1 && err.code == 1);
    job_t *job = &fx.jobs[0];
    EXPECT(job->status == JOB_FAILED);
    EXPECT(job->attempts == 3);
    EXPECT(job->batch_sizes[0] == 2 && job->batch_sizes[1] == 1 && job->batch_sizes[2] == 1);
    EXPECT_STR_CONTAINS(err.msg, "CUDA out of memory");
    EXPECT_STR_CONTAINS(err.msg, "after 3 attempt(s)");
    fx_free(&fx);
}

TEST(test_run_bad_input_fails_fast) {
    fx_t fx;
    // Job 0 reports bad input; job 1 would hang for ever on the other slot. The run must stop
    // at once (no retry), stop job 1's worker, and quote the worker's message.
    fx_init(&fx, 2, 2, "--bad-input", "\"retries\": 3");
    plan_model_t *m = &fx.plan.models[0];
    (void)m;
    // Make job 1 hang: it gets its own command through a second model.
    fx.plan.models = xrealloc(fx.plan.models, 2 * sizeof *fx.plan.models);
    fx.plan.n_models = 2;
    plan_model_t *h = &fx.plan.models[1];
    memset(h, 0, sizeof *h);
    h->name = xstrdup("hang");
    h->n_command = 2;
    h->command = xcalloc(3, sizeof *h->command);
    h->command[0] = xstrdup(g_fake);
    h->command[1] = xstrdup("--hang");
    h->batch_size = 8;
    h->retries = 3;
    h->settings_key = xstrdup("h");
    fx.jobs[1].model = 1;
    fx.jobs[1].cost = 1000;  // starts first
    err_t err = {0};
    double secs = 0;
    int rc = fx_run(&fx, &err, &secs);
    EXPECT(rc == -1 && err.code == 1);
    EXPECT_STR_CONTAINS(err.msg, "bad input (exit 65)");
    EXPECT_STR_CONTAINS(err.msg, "column 'prompt' is not a JSON list");
    EXPECT(fx.jobs[0].attempts == 1 && fx.jobs[0].status == JOB_FAILED);
    EXPECT(fx.jobs[1].status == JOB_PENDING);  // stopped, not judged
    EXPECT(fx.jobs[1].exit_codes[0] == -SIGTERM);
    EXPECT_MSG(secs < 5, "took %.1f s", secs);
    fx_free(&fx);
}

TEST(test_run_timeout_kills_group) {
    fx_t fx;
    // The worker ignores SIGTERM and leaves a hanging grandchild: the timeout must end in
    // SIGKILL to the whole group (fx_run checks that no group member survived).
    fx_init(&fx, 1, 1, "--ignore-term --grandchild-hang GC", "\"timeout_s\": 0.5, \"retries\": 1");
    char gc[600];
    snprintf(gc, sizeof gc, "%s/grandchild.pid", g_tmp);
    fx_set_arg(&fx, 3, gc);
    err_t err = {0};
    double secs = 0;
    int rc = fx_run(&fx, &err, &secs);
    EXPECT(rc == -1 && err.code == 1);
    job_t *job = &fx.jobs[0];
    EXPECT(job->attempts == 2);
    EXPECT(job->timed_out[0] == 1 && job->timed_out[1] == 1);
    EXPECT(job->exit_codes[0] == -SIGKILL);
    EXPECT_STR_CONTAINS(err.msg, "(timeout)");
    char *pid = slurp(gc);
    long gpid = atol(pid);
    free(pid);
    EXPECT(gpid > 0);
    if (gpid > 0) EXPECT(gone_within_2s(pid_alive, (pid_t)gpid));
    EXPECT_MSG(secs < 8, "took %.1f s", secs);  // 2 x (0.5 s timeout + 0.5 s grace), plus slack for loaded CI
    char *log = slurp(job->log_path);
    EXPECT_STR_CONTAINS(log, "SIGTERM to process group");
    EXPECT_STR_CONTAINS(log, "SIGKILL to process group");
    free(log);
    fx_free(&fx);
}

TEST(test_run_exec_failure) {
    fx_t fx;
    fx_init(&fx, 1, 1, "", "\"retries\": 3");
    fx_set_arg(&fx, 0, "no-such-worker-command");
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT(rc == -1);
    EXPECT(fx.jobs[0].attempts == 1);  // a configuration error is not retried
    EXPECT(fx.jobs[0].exit_codes[0] == SHIM_EXIT_NOT_FOUND);
    EXPECT_STR_CONTAINS(err.msg, "no-such-worker-command");
    EXPECT_STR_CONTAINS(err.msg, "could not be started");
    fx_free(&fx);
}

static void check_validation_failure(const char *flag, const char *expect) {
    fx_t fx;
    fx_init(&fx, 1, 1, flag, "\"retries\": 1");
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT(rc == -1);
    job_t *job = &fx.jobs[0];
    EXPECT(job->attempts == 2 && job->exit_codes[0] == 0 && job->exit_codes[1] == 0);
    EXPECT_STR_CONTAINS(err.msg, "output rejected");
    EXPECT_STR_CONTAINS(err.msg, expect);
    EXPECT(!file_exists(job->output_path));
    char *log = slurp(job->log_path);
    EXPECT_STR_CONTAINS(log, expect);
    free(log);
    // Nothing left next to the output: no partial file, no temp file.
    char dir[600];
    snprintf(dir, sizeof dir, "%s/work/outputs", g_tmp);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        EXPECT_MSG(e->d_name[0] == '.', "left behind: %s", e->d_name);
    if (d) closedir(d);
    fx_free(&fx);
}

TEST(test_run_validation_failures) {
    check_validation_failure("--wrong-id", "line 2");
    check_validation_failure("--nan", "line 2");
    check_validation_failure("--partial-ok", "");
}

TEST(test_run_partial_temp_removed) {
    fx_t fx;
    fx_init(&fx, 1, 1, "--partial", "\"retries\": 1");
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT(rc == -1);
    EXPECT(fx.jobs[0].attempts == 2);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/work/outputs", g_tmp);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        EXPECT_MSG(e->d_name[0] == '.', "left behind: %s", e->d_name);
    if (d) closedir(d);
    fx_free(&fx);
}

TEST(test_run_sigterm) {
    fx_t fx;
    fx_init(&fx, 3, 2, "--hang", "");
    // A child process sends us SIGTERM while the workers hang.
    pid_t self = getpid(), killer = fork();
    if (killer == 0) {
        usleep(400 * 1000);
        kill(self, SIGTERM);
        _exit(0);
    }
    err_t err = {0};
    double secs = 0;
    int rc = fx_run(&fx, &err, &secs);
    waitpid(killer, NULL, 0);
    EXPECT(rc == -1 && err.code == 143);
    EXPECT_STR_CONTAINS(err.msg, "interrupted");
    EXPECT_MSG(secs < 5, "took %.1f s", secs);  // the workers hang: only the stop ends the stage
    for (int j = 0; j < 3; j++) EXPECT(fx.jobs[j].status == JOB_PENDING);
    fx_free(&fx);
}

TEST(test_run_progress_and_reused) {
    fx_t fx;
    fx_init(&fx, 2, 1, "--slow 30 --batch-size 2", "");
    fx.jobs[0].status = JOB_REUSED;  // must not run
    err_t err = {0};
    int rc = fx_run(&fx, &err, NULL);
    EXPECT_MSG(rc == 0, "%s", err.msg);
    EXPECT(fx.jobs[0].attempts == 0 && fx.jobs[0].status == JOB_REUSED);
    EXPECT(fx.jobs[1].attempts == 1 && fx.jobs[1].status == JOB_DONE);
    EXPECT(!file_exists(fx.jobs[0].log_path));
    fx_free(&fx);
}

TEST(test_memcheck_kills_ours) {
    // A process in one of this run's worker groups holds GPU memory after a stage: with
    // on_leak "kill" it is killed, memory is read again, and the stage passes.
    fx_t fx;
    fx_init(&fx, 1, 1, "", "");
    pid_t holder = fork();
    if (holder == 0) {
        setsid();
        for (;;) pause();
    }
    ASSERT(holder > 0);
    for (int i = 0; i < 200 && getpgid(holder) != holder; i++) usleep(10000);  // until setsid ran
    char path[600];
    snprintf(path, sizeof path, "%s/nvml.txt", g_tmp);
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fprintf(f, "# baseline, after the stage (leak, held by the holder), after the kill\n");
    fprintf(f, "1000 50\n1500 50 pids=%ld\n1010 50\n", (long)holder);
    fclose(f);
    setenv("ORCHESTRATE_FAKE_NVML", path, 1);
    char note[256];
    nvml_t *nv = nvml_open(note, sizeof note);
    EXPECT_MSG(nv != NULL, "%s", note);
    unsetenv("ORCHESTRATE_FAKE_NVML");
    if (!nv) {
        kill(holder, SIGKILL), waitpid(holder, NULL, 0);
        fx_free(&fx);
        return;
    }
    EXPECT(nvml_device_count(nv) == 2 && nvml_is_fake(nv));
    fx.plan.mem_leak = MEM_LEAK_KILL;
    fx.plan.mem_wait_s = 0;
    fx.plan.mem_tolerance_mib = 64;
    slot_t gpu = {.gpu = 0, .device = "cuda:0", .cuda_visible = "0"};
    err_t err = {0};
    memcheck_t mc;
    EXPECT(memcheck_init(&mc, nv, &gpu, 1, &err) == 0);
    run_ctx_t *ctx = run_ctx_create(&fx.plan, 1, &err);
    ASSERT(ctx);
    // Pretend the run started the holder's group.
    ctx->pgids = xrealloc(ctx->pgids, sizeof *ctx->pgids);
    ctx->pgids[0] = holder;
    ctx->n_pgids = ctx->cap_pgids = 1;
    EXPECT(run_ctx_owns_pid(ctx, holder) == 1);
    EXPECT(run_ctx_owns_pid(ctx, getpid()) == 0);
    memcheck_gpu_t out[1];
    int rc = memcheck_stage(&mc, &fx.plan, ctx, "m", out, &err);
    EXPECT_MSG(rc == 0, "%s", err.msg);
    EXPECT(out[0].killed == 1 && out[0].leaked == 0);
    EXPECT(out[0].baseline_mib == 1000 && out[0].after_mib == 1010);
    EXPECT(out[0].n_holders == 1 && out[0].holders[0] == holder);
    int status = 0;
    EXPECT(waitpid(holder, &status, 0) == holder && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    run_ctx_destroy(ctx);
    memcheck_free(&mc);
    nvml_close(nv);
    fx_free(&fx);
}

/* Before the first test: find the fake worker; skip (77) when it is not built. */
static int setup(void) {
    snprintf(g_fake, sizeof g_fake, "%s/fake_worker", tt_dir("ORCH_BINARY_DIR"));
    if (access(g_fake, X_OK) != 0) {
        fprintf(stderr, "skipped: %s not built\n", g_fake);
        return 77;
    }
    return 0;
}

TEST_RUNNER(run_tests, setup, NULL,
            test_argv_substitution, test_argv_model_placeholder_needs_model, test_argv_lm_worker, test_env,
            test_run_happy, test_run_retry_after_crash, test_run_oom_halving, test_run_oom_text_and_floor,
            test_run_bad_input_fails_fast, test_run_timeout_kills_group, test_run_exec_failure,
            test_run_validation_failures, test_run_partial_temp_removed, test_run_sigterm,
            test_run_progress_and_reused, test_memcheck_kills_ours)

/* The binary doubles as orchestrate's spawn shim (run_ctx re-runs its own executable). */
int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], SHIM_FLAG) == 0) return shim_main(argc - 2, argv + 2);
    return run_tests(argc, argv);
}

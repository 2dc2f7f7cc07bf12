/* test_shard.c: the digest (XXH3-128 against xxhsum -H2, streaming, old-format resume keys),
 * shard_assign (every row in exactly one shard, balance on the LMSYS sample, more shards than
 * rows, rows without text), stage_jobs_build (job names and paths, swap_ab shard files,
 * content-named shards shared between models, input errors) and resume (reuse, invalidation, stale outputs).
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "digest.h"
#include "orch.h"
#include "planning.h"
#include "tinytest.h"

static char tmpdir[256];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* The digest of len bytes at data, fed in one piece. */
static void digest_of(const void *data, size_t len, char out[DIGEST_HEX_LEN + 1]) {
    digest_t d;
    digest_init(&d);
    digest_update(&d, data, len);
    digest_hex(&d, out);
}

TEST(test_digest_vectors) {
    // XXH3-128 by an independent implementation: `printf %s TEXT | xxhsum -H2` (Debian's xxhash
    // 0.8.1, the reference CLI). "" is also the xxHash project's documented empty-input value.
    static const struct {
        const char *text, *hex;
    } vec[] = {{"", "99aa06d3014798d86001c324468d497f"},
               {"a", "a96faf705af16834e6c632b61e964e1f"},
               {"abc", "06b05ab6733a618578af5f94892f3950"},
               {"Nobody inspects the spammish repetition", "a32c6f55b80b5f449f1a957522431b91"}};
    char got[DIGEST_HEX_LEN + 1];
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        digest_of(vec[i].text, strlen(vec[i].text), got);
        EXPECT_MSG(strcmp(got, vec[i].hex) == 0, "'%s': %s, xxhsum -H2 says %s", vec[i].text, got, vec[i].hex);
    }
    // Streaming in odd chunks gives the one-shot digest, which xxhsum -H2 agrees with:
    // python3 -c "import sys; sys.stdout.buffer.write(bytes((i*131+7)&255 for i in range(1000)))" | xxhsum -H2
    char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 131 + 7);
    char one[DIGEST_HEX_LEN + 1], parts[DIGEST_HEX_LEN + 1];
    digest_of(buf, sizeof buf, one);
    digest_t d;
    digest_init(&d);
    for (size_t off = 0, step = 1; off < sizeof buf; off += step, step = step * 3 % 37 + 1)
        digest_update(&d, buf + off, off + step > sizeof buf ? sizeof buf - off : step);
    digest_hex(&d, parts);
    EXPECT(strcmp(one, parts) == 0);
    EXPECT(strcmp(one, "622239c5c47a6910571d5cbfef44331b") == 0);
    // Fields are framed: "ab"+"c" differs from "a"+"bc", and NULL from "".
    char h1[33], h2[33], h3[33], h4[33];
    digest_init(&d), digest_field(&d, "x", "ab"), digest_field(&d, "x", "c"), digest_hex(&d, h1);
    digest_init(&d), digest_field(&d, "x", "a"), digest_field(&d, "x", "bc"), digest_hex(&d, h2);
    digest_init(&d), digest_field(&d, "x", NULL), digest_hex(&d, h3);
    digest_init(&d), digest_field(&d, "x", ""), digest_hex(&d, h4);
    EXPECT(strcmp(h1, h2) != 0 && strcmp(h3, h4) != 0);
}

/* Check shard_assign(t, n): ranges, row counts, and the max/min text ratio (when rows >= n). */
static double check_assign(const csv_table_t *t, int n) {
    int *shard_of = malloc(t->n_rows * sizeof *shard_of);
    shard_assign(t, n, shard_of);
    size_t *cost = calloc((size_t)n, sizeof *cost), *rows = calloc((size_t)n, sizeof *rows), total = 0;
    int in_range = 1;
    for (size_t r = 0; r < t->n_rows; r++) {
        if (shard_of[r] < 0 || shard_of[r] >= n) {
            in_range = 0;
            continue;
        }
        cost[shard_of[r]] += shard_row_cost(t, r);
        rows[shard_of[r]]++;
        total++;
    }
    EXPECT(in_range && total == t->n_rows);
    size_t lo = (size_t)-1, hi = 0;
    for (int k = 0; k < n; k++) {
        if (cost[k] < lo) lo = cost[k];
        if (cost[k] > hi) hi = cost[k];
        if ((size_t)n <= t->n_rows) EXPECT(rows[k] >= 1);
        else EXPECT(rows[k] <= 1);
    }
    free(shard_of), free(cost), free(rows);
    return lo ? (double)hi / (double)lo : 1e9;
}

/* Hex digest of the stamp of path. */
static void stamp_hex(const char *path, char out[DIGEST_HEX_LEN + 1]) {
    digest_t d;
    digest_init(&d);
    digest_path_stamp(&d, "p", path);
    digest_hex(&d, out);
}

/* A path stamp changes when a file inside the directory changes size or mtime, or appears. */
TEST(test_digest_path_stamp) {
    char dir[] = "/tmp/test_stamp.XXXXXX", file[64], a[DIGEST_HEX_LEN + 1], b[DIGEST_HEX_LEN + 1];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/w.safetensors", dir);
    FILE *f = fopen(file, "w");
    fputs("12345", f);
    fclose(f);
    struct timespec t[2] = {{1000, 0}, {1000, 0}};
    EXPECT(utimensat(AT_FDCWD, file, t, 0) == 0);
    stamp_hex(dir, a);
    stamp_hex(dir, b);
    EXPECT(strcmp(a, b) == 0);
    t[1].tv_sec = 2000;  // same size, new mtime: retrained in place
    EXPECT(utimensat(AT_FDCWD, file, t, 0) == 0);
    stamp_hex(dir, b);
    EXPECT(strcmp(a, b) != 0);
    stamp_hex(file, a);  // a single file is stamped too
    stamp_hex("/nonexistent/path", b);
    EXPECT(strcmp(a, b) != 0);
    unlink(file);
    rmdir(dir);
}

TEST(test_shard_balance_lmsys) {
    char path[600];
    snprintf(path, sizeof path, "%s/data/lmsys-sample.csv", tt_dir("ORCH_FIXTURES"));
    csv_table_t t;
    err_t err = {0};
    EXPECT_MSG(csv_table_read(&t, path, &err) == 0, "%s", err.msg);
    if (t.n_rows == 0) return;
    const int ns[] = {1, 2, 3, 4, 8};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        double ratio = check_assign(&t, ns[i]);
        fprintf(stderr, "  %d shards: max/min text ratio %.4f\n", ns[i], ratio);
        EXPECT_MSG(ratio < 1.05, "%d shards: ratio %.4f", ns[i], ratio);
    }
    check_assign(&t, (int)t.n_rows + 100);   // more shards than rows: at most one row each
    // Deterministic: the same input gives the same assignment.
    int *a = malloc(t.n_rows * sizeof *a), *b = malloc(t.n_rows * sizeof *b);
    shard_assign(&t, 3, a);
    shard_assign(&t, 3, b);
    EXPECT(memcmp(a, b, t.n_rows * sizeof *a) == 0);
    free(a), free(b);
    csv_table_free(&t);
}

TEST(test_shard_rows_without_text) {
    // Only ids: every cost is 0, so rows are spread by count (4, 3, 3), not piled on shard 0.
    const char *text = "id\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
    csv_table_t t;
    err_t err = {0};
    EXPECT(csv_table_parse(&t, text, strlen(text), "ids.csv", &err) == 0);
    int shard_of[10], count[3] = {0};
    shard_assign(&t, 3, shard_of);
    for (int r = 0; r < 10; r++) count[shard_of[r]]++;
    EXPECT(count[0] == 4 && count[1] == 3 && count[2] == 3);
    csv_table_free(&t);
}

static int load_plan(plan_t *plan, const char *models_json) {
    char text[2048], name[300];
    snprintf(text, sizeof text, "{\"input\": \"in.csv\", \"output\": \"out.csv\", \"work_dir\": \"w\", \"models\": %s}",
             models_json);
    snprintf(name, sizeof name, "%s/plan.json", tmpdir);
    err_t err = {0};
    int rc = plan_load_buf(plan, text, strlen(text), name, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    return rc;
}

static const char *INPUT = "id,prompt,response_a,response_b,extra\n"
                           "1,p1,a1,b1,x\n"
                           "2,\"p, 2\",a2,b2,y\n"
                           "3,p3,\"a\"\"3\",bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb3,z\n";

TEST(test_stage_jobs_build) {
    plan_t plan;
    if (load_plan(&plan, "[{\"name\": \"m\", \"command\": [\"w\"], \"tta\": [\"identity\", \"swap_ab\"]},"
                         " {\"name\": \"n\", \"command\": [\"w\", \"other\"]}]") != 0) {
        EXPECT(0);
        return;
    }
    csv_table_t in;
    err_t err = {0};
    EXPECT(csv_table_parse(&in, INPUT, strlen(INPUT), "in.csv", &err) == 0);
    job_t *jobs, *jobs_n;
    int n_jobs, n_jobs_n;
    EXPECT_MSG(stage_jobs_build(&plan, &in, 0, 2, &jobs, &n_jobs, &err) == 0, "%s", err.msg);
    EXPECT(n_jobs == 4);
    if (n_jobs != 4) return;
    EXPECT(strcmp(jobs[0].name, "m.identity.s0of2") == 0 && strcmp(jobs[3].name, "m.swap_ab.s1of2") == 0);
    size_t rows[2] = {0, 0};
    for (int j = 0; j < 4; j++) {
        job_t *job = &jobs[j];
        EXPECT(job->model == 0 && job->n_shards == 2 && job->shard == j % 2);
        EXPECT(job->variant == (j < 2 ? TTA_IDENTITY : TTA_SWAP_AB));
        EXPECT(job->status == JOB_PENDING && job->slot == -1 && job->batch_size == 8 && job->attempts == 0);
        EXPECT(strlen(job->key) == 32);
        char want[700];
        snprintf(want, sizeof want, "%s/w/outputs/m/%s.csv", tmpdir, job->name);
        EXPECT(strcmp(job->output_path, want) == 0);
        snprintf(want, sizeof want, "%s/w/logs/%s.log", tmpdir, job->name);
        EXPECT(strcmp(job->log_path, want) == 0);
        snprintf(want, sizeof want, "%s/w/shards/", tmpdir);
        EXPECT(strncmp(job->input_path, want, strlen(want)) == 0 && exists(job->input_path));
        for (int k = 0; k < j; k++) EXPECT(strcmp(jobs[k].key, job->key) != 0);
        rows[j / 2] += job->n_rows;
        // The shard file holds exactly the job's ids, in input order, with every column.
        csv_table_t s;
        EXPECT(csv_table_read(&s, job->input_path, &err) == 0);
        EXPECT(s.n_rows == job->n_rows && s.n_cols == 5 && strcmp(s.header[4], "extra") == 0);
        size_t cost = 0;
        for (size_t r = 0; r < s.n_rows; r++) {
            EXPECT(strcmp(csv_cell(&s, r, 0), job->ids[r]) == 0);
            if (r) EXPECT(atoi(job->ids[r - 1]) < atoi(job->ids[r]));
            int src = atoi(job->ids[r]) - 1;
            const char *a = csv_cell(&in, (size_t)src, 2), *b = csv_cell(&in, (size_t)src, 3);
            EXPECT(strcmp(csv_cell(&s, r, 2), job->variant == TTA_SWAP_AB ? b : a) == 0);
            EXPECT(strcmp(csv_cell(&s, r, 3), job->variant == TTA_SWAP_AB ? a : b) == 0);
            EXPECT(strcmp(csv_cell(&s, r, 1), csv_cell(&in, (size_t)src, 1)) == 0);
            EXPECT(strcmp(csv_cell(&s, r, 4), csv_cell(&in, (size_t)src, 4)) == 0);
            cost += shard_row_cost(&in, (size_t)src);
        }
        EXPECT(cost == job->cost);
        csv_table_free(&s);
    }
    EXPECT(rows[0] == 3 && rows[1] == 3);
    // The long row 3 sits alone in its shard: balance by text, not by row count.
    EXPECT(jobs[0].n_rows + jobs[1].n_rows == 3 && (jobs[0].n_rows == 1 || jobs[1].n_rows == 1));
    // Model n has other settings: other keys, but the same (content-named) identity shard files.
    EXPECT(stage_jobs_build(&plan, &in, 1, 2, &jobs_n, &n_jobs_n, &err) == 0);
    EXPECT(n_jobs_n == 2);
    for (int j = 0; j < n_jobs_n && n_jobs_n == 2; j++) {
        EXPECT(strcmp(jobs_n[j].input_path, jobs[j].input_path) == 0);
        EXPECT(strcmp(jobs_n[j].key, jobs[j].key) != 0);
        EXPECT(jobs_n[j].model == 1 && strstr(jobs_n[j].output_path, "/w/outputs/n/n.identity.s"));
    }
    stage_jobs_free(jobs_n, n_jobs_n);
    // More slots than rows: one shard per row. Fewer than one: a single shard.
    EXPECT(stage_jobs_build(&plan, &in, 1, 7, &jobs_n, &n_jobs_n, &err) == 0);
    EXPECT(n_jobs_n == 3 && jobs_n[0].n_shards == 3 && jobs_n[0].n_rows == 1);
    stage_jobs_free(jobs_n, n_jobs_n);
    EXPECT(stage_jobs_build(&plan, &in, 1, 0, &jobs_n, &n_jobs_n, &err) == 0);
    EXPECT(n_jobs_n == 1 && jobs_n[0].n_rows == 3 && strcmp(jobs_n[0].name, "n.identity.s0of1") == 0);
    stage_jobs_free(jobs_n, n_jobs_n);
    stage_jobs_free(jobs, n_jobs);
    csv_table_free(&in);
    plan_free(&plan);
}

/* Expect stage_jobs_build (model 0, 2 slots) to fail on input text with expect in the message. */
static void expect_input_error(const char *models_json, const char *input, const char *expect) {
    plan_t plan;
    if (load_plan(&plan, models_json) != 0) {
        EXPECT(0);
        return;
    }
    csv_table_t in;
    err_t err = {0};
    EXPECT(csv_table_parse(&in, input, strlen(input), "in.csv", &err) == 0);
    job_t *jobs = (job_t *)1;
    int n = 5;
    EXPECT(stage_jobs_build(&plan, &in, 0, 2, &jobs, &n, &err) == -1);
    EXPECT(jobs == NULL && n == 0);
    char want[800];
    snprintf(want, sizeof want, "%s/in.csv: %s", tmpdir, expect);
    EXPECT_MSG(strstr(err.msg, want) != NULL, "\n    want \"%s\"\n    got  \"%s\"", want, err.msg);
    csv_table_free(&in);
    plan_free(&plan);
}

TEST(test_stage_input_errors) {
    const char *id = "[{\"name\": \"m\", \"command\": [\"w\"]}]";
    const char *swap = "[{\"name\": \"m\", \"command\": [\"w\"]}, {\"name\": \"s\", \"command\": [\"w\"], \"tta\": [\"swap_ab\"]}]";
    expect_input_error(id, "text,id\nx,1\n", "line 1: the first column must be 'id', not 'text'");
    expect_input_error(id, "id,text\n1,a\n2,b\n\"3\",\"c\nc\"\n1,d\n", "line 6: duplicate id '1' (first at line 2)");
    expect_input_error(id, "id,text\n1,a\n,b\n", "line 3: empty id");
    expect_input_error(id, "id,text\n", "no data rows");
    expect_input_error(swap, "id,prompt,response_a\n1,p,a\n",
                       "models[1] ('s') asks for tta swap_ab, which exchanges columns response_a and response_b, "
                       "but the input has no column 'response_b'");
}

TEST(test_resume) {
    plan_t plan;
    const char *models = "[{\"name\": \"m\", \"command\": [\"w\"]}]";
    if (load_plan(&plan, models) != 0) {
        EXPECT(0);
        return;
    }
    csv_table_t in;
    err_t err = {0};
    EXPECT(csv_table_parse(&in, INPUT, strlen(INPUT), "in.csv", &err) == 0);
    job_t *jobs;
    int n;
    EXPECT(stage_jobs_build(&plan, &in, 0, 1, &jobs, &n, &err) == 0);
    if (n != 1) return;
    // A valid record under the key the old digest (two XXH64 seeds, before XXH3-128) gave this
    // very job is never taken for a match: the job runs again.
    EXPECT(strcmp(jobs[0].key, "9e5a79baa22a0b7fd84b4415f156bcc2") != 0);
    EXPECT(jobs[0].status == JOB_PENDING);
    char *old_done = resume_path(&plan, "9e5a79baa22a0b7fd84b4415f156bcc2"), *slash = strrchr(old_done, '/');
    *slash = '\0';
    EXPECT(fs_mkdir_p(old_done, &err) == 0);
    *slash = '/';
    write_file(old_done, "id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n2,0,1,0\n3,0,0,1\n");
    stage_jobs_free(jobs, n);
    EXPECT(stage_jobs_build(&plan, &in, 0, 1, &jobs, &n, &err) == 0);
    EXPECT(n == 1 && jobs[0].status == JOB_PENDING);
    free(old_done);
    // Play the worker, then record.
    write_file(jobs[0].output_path, "id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n2,0,1,0\n3,0,0,1\n");
    EXPECT(validate_output(&plan, &jobs[0], &err) == 0);
    EXPECT_MSG(resume_record(&plan, &jobs[0], &err) == 0, "%s", err.msg);
    char *done = resume_path(&plan, jobs[0].key);
    EXPECT(exists(done));
    char *key = xstrdup(jobs[0].key), *out = xstrdup(jobs[0].output_path);
    stage_jobs_free(jobs, n);
    // The same stage again: reused, pointing at the record.
    EXPECT(stage_jobs_build(&plan, &in, 0, 1, &jobs, &n, &err) == 0);
    EXPECT(jobs[0].status == JOB_REUSED && strcmp(jobs[0].key, key) == 0 && strcmp(jobs[0].output_path, done) == 0);
    EXPECT(jobs[0].rows_done == 3);
    EXPECT(resume_record(&plan, &jobs[0], &err) == 0);   // recording a reused job is a no-op
    stage_jobs_free(jobs, n);
    // With --work-dir elsewhere nothing is found, and nothing was cached from the old one.
    char *old_wd = xstrdup(plan.work_dir), other[600];
    snprintf(other, sizeof other, "%s/w2", tmpdir);
    plan_set_work_dir(&plan, other);
    EXPECT(stage_jobs_build(&plan, &in, 0, 1, &jobs, &n, &err) == 0);
    EXPECT(jobs[0].status == JOB_PENDING && strstr(jobs[0].output_path, "/w2/outputs/m/"));
    stage_jobs_free(jobs, n);
    plan_set_work_dir(&plan, old_wd);
    free(old_wd);
    // A setting that changes outputs changes the key: not reused.
    plan_t plan2;
    EXPECT(load_plan(&plan2, "[{\"name\": \"m\", \"command\": [\"w\"], \"max_length\": 77}]") == 0);
    EXPECT(stage_jobs_build(&plan2, &in, 0, 1, &jobs, &n, &err) == 0);
    EXPECT(jobs[0].status == JOB_PENDING && strcmp(jobs[0].key, key) != 0);
    stage_jobs_free(jobs, n);
    plan_free(&plan2);
    // A stale output of a pending job is removed; a record that no longer validates is ignored.
    write_file(out, "stale");
    write_file(done, "id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n");
    EXPECT(stage_jobs_build(&plan, &in, 0, 1, &jobs, &n, &err) == 0);
    EXPECT(jobs[0].status == JOB_PENDING && strcmp(jobs[0].output_path, out) == 0);
    EXPECT(!exists(out));
    // Recording again replaces the bad record.
    write_file(jobs[0].output_path, "id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n2,0,1,0\n3,0,0,1\n");
    EXPECT(resume_record(&plan, &jobs[0], &err) == 0);
    stage_jobs_free(jobs, n);
    EXPECT(stage_jobs_build(&plan, &in, 0, 1, &jobs, &n, &err) == 0);
    EXPECT(jobs[0].status == JOB_REUSED);
    stage_jobs_free(jobs, n);
    free(key), free(out), free(done);
    csv_table_free(&in);
    plan_free(&plan);
}

/* Before the first test: the temp dir (its real path). */
static int setup(void) {
    tt_mkdtemp(tmpdir, sizeof tmpdir, "test_shard");
    return 0;
}

/* After the last test: remove the temp dir. */
static int teardown(void) { return tt_rm_tree(tmpdir); }

TEST_MAIN_WITH(setup, teardown,
               test_digest_vectors, test_digest_path_stamp, test_shard_balance_lmsys,
               test_shard_rows_without_text, test_stage_jobs_build, test_stage_input_errors, test_resume)

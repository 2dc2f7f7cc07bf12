/* test_merge.c: merge_model (shards in any order, swap_ab flipped back, variants averaged,
 * models/<name>.csv in input order) and merge_ensemble (mean, geometric and logit_mean against
 * values computed independently in Python, weights normalised, clamping), their errors, and
 * the speed of validating and merging a 25k-row, 2-model, 2-variant run (bench_merge_25k, run
 * apart: ctest -L bench).
 */
#include <sys/stat.h>
#include <unistd.h>

#include "clock_util.h"
#include "orch.h"
#include "tinytest.h"

static char tmpdir[256];

/* Before the first test: the temp dir. */
static int setup(void) {
    tt_mkdtemp(tmpdir, sizeof tmpdir, "test_merge");
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static char *tmp_path(const char *name) {
    char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
    sprintf(p, "%s/%s", tmpdir, name);
    return p;
}

/* Two models over ids r1..r3: m1 (identity + swap_ab, weight 1) and m2 (identity, weight 3). */
static int load_plan(plan_t *plan, double w1, double w2) {
    char text[1024], name[300];
    snprintf(text, sizeof text,
             "{\"input\": \"in.csv\", \"output\": \"out.csv\", \"work_dir\": \"work\",\n"
             " \"models\": [{\"name\": \"m1\", \"command\": [\"w\"], \"tta\": [\"identity\", \"swap_ab\"], \"weight\": %g},\n"
             "            {\"name\": \"m2\", \"command\": [\"w2\"], \"weight\": %g}]}", w1, w2);
    snprintf(name, sizeof name, "%s/plan.json", tmpdir);
    err_t err = {0};
    int rc = plan_load_buf(plan, text, strlen(text), name, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc;
}

static const char *INPUT = "id,prompt,response_a,response_b\nr1,p,a,b\nr2,p,a,b\nr3,p,a,b\n";

static char *ids_r1r3[] = {"r3", "r1"}, *ids_r2[] = {"r2"}, *ids_all[] = {"r1", "r2", "r3"};

static job_t make_job(const char *name, int model, tta_t v, char **ids, size_t n, const char *file, const char *text) {
    job_t j;
    memset(&j, 0, sizeof j);
    snprintf(j.name, sizeof j.name, "%s", name);
    j.model = model, j.variant = v, j.ids = ids, j.n_rows = n, j.status = JOB_DONE;
    j.output_path = tmp_path(file);
    write_file(j.output_path, text);
    return j;
}

/* The jobs of both models. Shards are listed out of input order, rows within files too. */
static void make_jobs(job_t *jobs) {
    const char *H = "id,winner_model_a,winner_model_b,winner_tie\n";
    char t[512];
    snprintf(t, sizeof t, "%sr1,0.6,0.3,0.1\nr3,0.3,0.3,0.4\n", H);
    jobs[0] = make_job("m1.identity.s0of2", 0, TTA_IDENTITY, ids_r1r3, 2, "a.csv", t);
    snprintf(t, sizeof t, "%sr3,0.25,0.35,0.4\nr2,0.5,0.2,0.3\nr1,0.2,0.7,0.1\n", H);
    jobs[1] = make_job("m1.swap_ab.s0of1", 0, TTA_SWAP_AB, ids_all, 3, "b.csv", t);
    snprintf(t, sizeof t, "%sr2,0.1,0.8,0.1\n", H);
    jobs[2] = make_job("m1.identity.s1of2", 0, TTA_IDENTITY, ids_r2, 1, "c.csv", t);
    snprintf(t, sizeof t, "%sr3,1e-9,0.999999999,0\nr1,0.2,0.5,0.3\nr2,0.7,0.2,0.1\n", H);
    jobs[3] = make_job("m2.identity.s0of1", 1, TTA_IDENTITY, ids_all, 3, "d.csv", t);
}

static void free_jobs(job_t *jobs, int n) {
    for (int i = 0; i < n; i++) free(jobs[i].output_path);
}

/* What each merge test starts from: the two-model plan, INPUT parsed and make_jobs' jobs. */
typedef struct {
    plan_t plan;     // load_plan's two models
    csv_table_t in;  // INPUT
    job_t jobs[4];   // make_jobs' jobs, outputs written
} mfx_t;

/* Set up f with model weights w1, w2. Returns 0, or -1 (a failed EXPECT) when the plan does not
 * load. */
static int mfx_init(mfx_t *f, double w1, double w2) {
    if (load_plan(&f->plan, w1, w2) != 0) {
        EXPECT(0);
        return -1;
    }
    err_t err = {0};
    EXPECT(csv_table_parse(&f->in, INPUT, strlen(INPUT), "in.csv", &err) == 0);
    make_jobs(f->jobs);
    return 0;
}

/* Free what mfx_init made. */
static void mfx_free(mfx_t *f) {
    free_jobs(f->jobs, 4);
    csv_table_free(&f->in);
    plan_free(&f->plan);
}

TEST(test_merge_model_flip_and_average) {
    mfx_t f;
    if (mfx_init(&f, 1, 3) != 0) return;
    err_t err = {0};
    double p1[9], p2[9];
    EXPECT_MSG(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p1, NULL, &err) == 0, "%s", err.msg);
    // r1: identity (0.6,0.3,0.1); swap_ab (0.2,0.7,0.1) flipped to (0.7,0.2,0.1); mean.
    const double want1[9] = {0.65, 0.25, 0.1, 0.15, 0.65, 0.2, 0.325, 0.275, 0.4};
    for (int i = 0; i < 9; i++) EXPECT_NEAR(p1[i], want1[i], 1e-12, 0);
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p2, NULL, &err) == 0);   // m1's jobs are skipped
    EXPECT_NEAR(p2[0], 0.2, 1e-12, 0);
    EXPECT_NEAR(p2[7], 0.999999999, 1e-12, 0);
    // work_dir/models/m1.csv: header, input order, values that parse back.
    char *path = tmp_path("work/models/m1.csv");
    csv_table_t out;
    EXPECT(csv_table_read(&out, path, &err) == 0);
    EXPECT(out.n_rows == 3 && out.n_cols == 4 && strcmp(out.header[0], "id") == 0 &&
           strcmp(out.header[3], "winner_tie") == 0);
    for (size_t r = 0; r < out.n_rows; r++) {
        EXPECT(strcmp(csv_cell(&out, r, 0), ids_all[r]) == 0);
        for (int l = 0; l < 3; l++) EXPECT_NEAR(atof(csv_cell(&out, r, (size_t)l + 1)), want1[r * 3 + (size_t)l], 1e-9, 0);
    }
    csv_table_free(&out);
    free(path);
    mfx_free(&f);
}

/* Expected ensembles of m1 and m2 (weights 0.25, 0.75) from an independent Python script. */
static const char *const WANT[3][9] = {
    {"0.3125", "0.4375", "0.25", "0.5625", "0.3125", "0.125", "0.0812500007", "0.818749999", "0.1"},
    {"0.30492412", "0.450642622", "0.244433259", "0.571892185", "0.303622114", "0.124485701", "4.68426834e-06",
     "0.999990234", "5.08128883e-06"},
    {"0.292861861", "0.458537109", "0.24860103", "0.551409585", "0.310905784", "0.137684631", "5.86316979e-06",
     "0.999987961", "6.17556402e-06"},
};

static void check_ensemble(ensemble_method_t method, double w1, double w2) {
    mfx_t f;
    if (mfx_init(&f, w1, w2) != 0) return;
    f.plan.ensemble = method;
    csv_table_t out;
    err_t err = {0};
    double p1[9], p2[9];
    EXPECT(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p1, NULL, &err) == 0);
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p2, NULL, &err) == 0);
    double *probs[2] = {p1, p2};
    char *sub = tmp_path("deep/er/submission.csv");   // parent directories are created
    EXPECT_MSG(merge_ensemble(&f.plan, &f.in, probs, NULL, sub, NULL, &err) == 0, "%s", err.msg);
    EXPECT(csv_table_read(&out, sub, &err) == 0);
    EXPECT(out.n_rows == 3 && out.n_cols == 4);
    for (size_t r = 0; r < out.n_rows && out.n_cols == 4; r++) {
        EXPECT(strcmp(csv_cell(&out, r, 0), ids_all[r]) == 0);
        double sum = 0;
        for (size_t l = 0; l < 3; l++) {
            double got = atof(csv_cell(&out, r, l + 1)), want = atof(WANT[method][r * 3 + l]);
            EXPECT_NEAR(got, want, 1e-12, 1e-7);
            sum += got;
        }
        EXPECT_NEAR(sum, 1, 1e-8, 0);
    }
    csv_table_free(&out);
    free(sub);
    mfx_free(&f);
}

TEST(test_ensemble_methods) {
    check_ensemble(ENSEMBLE_MEAN, 1, 3);
    check_ensemble(ENSEMBLE_LOGIT_MEAN, 1, 3);
    check_ensemble(ENSEMBLE_GEOMETRIC, 1, 3);
    // Weights are normalised: (2, 6) and (0.1, 0.3) are (0.25, 0.75).
    check_ensemble(ENSEMBLE_MEAN, 2, 6);
    check_ensemble(ENSEMBLE_GEOMETRIC, 0.1, 0.3);
}

TEST(test_merge_errors) {
    mfx_t f;
    if (mfx_init(&f, 1, 1) != 0) return;
    err_t err = {0};
    double p[9];
    // Without the second identity shard, r2 has no identity output.
    EXPECT(merge_model(&f.plan, &f.in, 0, f.jobs, 2, p, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "model 'm1': id 'r2'");
    EXPECT_STR_CONTAINS(err.msg, "line 3) has no identity output");
    // A job that did not finish cannot be merged.
    f.jobs[2].status = JOB_FAILED;
    EXPECT(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "m1.identity.s1of2 did not finish");
    f.jobs[2].status = JOB_REUSED;
    EXPECT(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p, NULL, &err) == 0);
    // Two outputs for the same (row, variant).
    job_t dup[5];
    memcpy(dup, f.jobs, sizeof f.jobs);
    dup[4] = f.jobs[2];
    EXPECT(merge_model(&f.plan, &f.in, 0, dup, 5, p, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "has two identity outputs");
    // An output that changed after validation is checked again.
    write_file(f.jobs[2].output_path, "id,winner_model_a,winner_model_b,winner_tie\nr2,0.5,0.6,0.1\n");
    EXPECT(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "c.csv: line 2: id 'r2': probabilities sum to 1.2");
    mfx_free(&f);
}

/* Under a deadline: jobs that did not finish are left out; a row gets the variants that covered
 * it, the ensemble renormalises the weights over the models that covered a row, and a row no
 * model covered gets the fallback. Expected values computed by hand from make_jobs' files. */
TEST(test_merge_partial_coverage) {
    mfx_t f;
    if (mfx_init(&f, 1, 3) != 0) return;
    err_t err = {0};
    double p1[9], p2[9];
    unsigned char c1[3], c2[3];
    coverage_t cov1 = {.covered = c1}, cov2 = {.covered = c2};
    // m1's first identity shard (r1, r3) was cut: r1 and r3 have swap_ab only (flipped back).
    f.jobs[0].status = JOB_CUT;
    EXPECT_MSG(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p1, &cov1, &err) == 0, "%s", err.msg);
    const double want1[9] = {0.7, 0.2, 0.1, 0.15, 0.65, 0.2, 0.35, 0.25, 0.4};
    for (int i = 0; i < 9; i++) EXPECT_NEAR(p1[i], want1[i], 1e-12, 0);
    EXPECT(cov1.rows == 3 && cov1.variant_rows[0] == 1 && cov1.variant_rows[1] == 3);
    EXPECT(c1[0] && c1[1] && c1[2]);
    // m1 with its swap_ab job cut too: only r2 is covered; models/m1.csv is not written.
    char *mpath = tmp_path("work/models/m1.csv");
    unlink(mpath);
    f.jobs[1].status = JOB_SKIPPED;
    EXPECT(merge_model(&f.plan, &f.in, 0, f.jobs, 4, p1, &cov1, &err) == 0);
    EXPECT(cov1.rows == 1 && !c1[0] && c1[1] && !c1[2] && cov1.variant_rows[1] == 0);
    EXPECT(access(mpath, F_OK) != 0);
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p2, &cov2, &err) == 0);
    EXPECT(cov2.rows == 3);
    // Ensemble (weights 1, 3): r2 has both models, r1 and r3 only m2 (weight renormalised to 1).
    double *probs[2] = {p1, p2};
    const unsigned char *covered[2] = {c1, c2};
    char *sub = tmp_path("partial.csv");
    size_t n_fb = 99;
    EXPECT_MSG(merge_ensemble(&f.plan, &f.in, probs, covered, sub, &n_fb, &err) == 0, "%s", err.msg);
    EXPECT(n_fb == 0);
    const double want[9] = {0.2, 0.5, 0.3, 0.25 * 0.1 + 0.75 * 0.7, 0.25 * 0.8 + 0.75 * 0.2, 0.25 * 0.1 + 0.75 * 0.1,
                            1e-9, 0.999999999, 0};
    csv_table_t out;
    EXPECT(csv_table_read(&out, sub, &err) == 0);
    for (size_t r = 0; r < 3 && out.n_rows == 3; r++)
        for (size_t l = 0; l < 3; l++) EXPECT_NEAR(atof(csv_cell(&out, r, l + 1)), want[r * 3 + l], 1e-9, 0);
    csv_table_free(&out);
    // No model covers r1 and r3: they get the fallback (uniform by default).
    f.jobs[3].status = JOB_CUT;
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p2, &cov2, &err) == 0);
    EXPECT(cov2.rows == 0);
    EXPECT(merge_ensemble(&f.plan, &f.in, probs, covered, sub, &n_fb, &err) == 0);
    EXPECT(n_fb == 2);
    EXPECT(csv_table_read(&out, sub, &err) == 0);
    EXPECT(out.n_rows == 3);
    for (size_t l = 0; l < 3 && out.n_rows == 3; l++) {
        EXPECT_NEAR(atof(csv_cell(&out, 0, l + 1)), 1.0 / 3, 1e-9, 0);
        EXPECT_NEAR(atof(csv_cell(&out, 1, l + 1)), l == 1 ? 0.8 : 0.1, 1e-9, 0);   // m1 alone: r2
        EXPECT_NEAR(atof(csv_cell(&out, 2, l + 1)), 1.0 / 3, 1e-9, 0);
    }
    csv_table_free(&out);
    free(sub), free(mpath);
    mfx_free(&f);
}

/* A cut job's partial output: the rows before the last newline count (a row the killed worker
 * did not finish is dropped), validated like an output; a bad one is left out whole and counted. */
TEST(test_merge_partial_output) {
    mfx_t f;
    if (mfx_init(&f, 1, 1) != 0) return;
    err_t err = {0};
    double p[9];
    unsigned char c[3];
    coverage_t cov = {.covered = c};
    // m2's only job was cut after writing r2 (complete) and half of r1.
    f.jobs[3].status = JOB_CUT;
    char *partial = job_partial_path(&f.jobs[3]);
    write_file(partial, "id,winner_model_a,winner_model_b,winner_tie\nr2,0.7,0.2,0.1\nr1,0.2,0.5");
    EXPECT_MSG(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p, &cov, &err) == 0, "%s", err.msg);
    EXPECT(cov.rows == 1 && cov.partial_rows == 1 && !c[0] && c[1] && !c[2] && cov.partial_rejected == 0);
    EXPECT_NEAR(p[3], 0.7, 1e-12, 0);
    EXPECT_NEAR(p[4], 0.2, 1e-12, 0);
    // Only a header (no batch finished), and no file at all: no rows, no complaint.
    write_file(partial, "id,winner_model_a,winner_model_b,winner_tie\n");
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p, &cov, &err) == 0);
    EXPECT(cov.rows == 0 && cov.partial_rejected == 0);
    unlink(partial);
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p, &cov, &err) == 0);
    EXPECT(cov.rows == 0 && cov.partial_rejected == 0);
    // A bad row (out of range) rejects the whole file, naming it.
    write_file(partial, "id,winner_model_a,winner_model_b,winner_tie\nr2,0.7,0.2,0.1\nr3,1.5,0,0\n");
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p, &cov, &err) == 0);
    EXPECT(cov.rows == 0 && cov.partial_rejected == 1);
    EXPECT_STR_CONTAINS(cov.partial_error, ".partial: line 3: column 2 'winner_model_a': value '1.5' is not in [0, 1]");
    // An id of another shard is rejected too.
    write_file(partial, "id,winner_model_a,winner_model_b,winner_tie\nzz,0.7,0.2,0.1\n");
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p, &cov, &err) == 0);
    EXPECT(cov.partial_rejected == 1);
    EXPECT_STR_CONTAINS(cov.partial_error, "id 'zz' is not one of this job's 3 ids");
    // Without a deadline (cov NULL) a cut job cannot be merged.
    EXPECT(merge_model(&f.plan, &f.in, 1, f.jobs, 4, p, NULL, &err) == -1);
    unlink(partial);
    free(partial);
    mfx_free(&f);
}

TEST(bench_merge_25k) {
    // 25k rows, 2 models x 2 variants x 2 shards: validate all 8 outputs, merge, ensemble.
    const size_t R = 25000;
    char text[1024], name[300];
    snprintf(text, sizeof text,
             "{\"input\": \"big.csv\", \"output\": \"big-sub.csv\", \"work_dir\": \"bigwork\",\n"
             " \"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"tta\": [\"identity\", \"swap_ab\"]},\n"
             "            {\"name\": \"b\", \"command\": [\"w\", \"b\"], \"tta\": [\"identity\", \"swap_ab\"], \"weight\": 2}]}");
    snprintf(name, sizeof name, "%s/plan.json", tmpdir);
    plan_t plan;
    err_t err = {0};
    if (plan_load_buf(&plan, text, strlen(text), name, &err) != 0) {
        EXPECT_MSG(0, "%s", err.msg);
        return;
    }
    size_t cap = R * 64 + 64, len = 0;
    char *csv = malloc(cap);
    len += (size_t)sprintf(csv, "id,prompt,response_a,response_b\n");
    for (size_t r = 0; r < R; r++)
        len += (size_t)sprintf(csv + len, "%zu,prompt %zu,%.*s,b\n", 1000000 + r * 7, r, (int)(r % 40), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    csv_table_t in;
    EXPECT(csv_table_parse(&in, csv, len, "big.csv", &err) == 0);
    free(csv);
    job_t *jobs[2];
    int n_jobs[2];
    for (int m = 0; m < 2; m++) {
        EXPECT_MSG(stage_jobs_build(&plan, &in, m, 2, &jobs[m], &n_jobs[m], &err) == 0, "%s", err.msg);
        for (int j = 0; j < n_jobs[m]; j++) {   // play the worker: a valid output per job
            FILE *f = fopen(jobs[m][j].output_path, "w");
            fputs("id,winner_model_a,winner_model_b,winner_tie\n", f);
            for (size_t i = jobs[m][j].n_rows; i-- > 0;) {   // reversed: order must not matter
                double a = (double)(i % 10) / 20.0 + 0.1 * m;
                fprintf(f, "%s,%.6f,%.6f,%.6f\n", jobs[m][j].ids[i], a, 0.5 - a / 2, 0.5 - a / 2);
            }
            fclose(f);
            jobs[m][j].status = JOB_DONE;
        }
    }
    double t0 = clock_mono_s();
    for (int m = 0; m < 2; m++)
        for (int j = 0; j < n_jobs[m]; j++) EXPECT_MSG(validate_output(&plan, &jobs[m][j], &err) == 0, "%s", err.msg);
    double t1 = clock_mono_s();
    double *probs[2] = {malloc(R * 3 * sizeof(double)), malloc(R * 3 * sizeof(double))};
    for (int m = 0; m < 2; m++) EXPECT_MSG(merge_model(&plan, &in, m, jobs[m], n_jobs[m], probs[m], NULL, &err) == 0, "%s", err.msg);
    EXPECT(merge_ensemble(&plan, &in, probs, NULL, plan.output, NULL, &err) == 0);
    double t2 = clock_mono_s();
    fprintf(stderr, "  25k rows: validate 8 outputs %.1f ms, merge 2 models + ensemble %.1f ms\n", (t1 - t0) * 1e3,
            (t2 - t1) * 1e3);
    EXPECT(t2 - t0 < 1.0);
    csv_table_t out;
    EXPECT(csv_table_read(&out, plan.output, &err) == 0);
    EXPECT(out.n_rows == R && strcmp(csv_cell(&out, 0, 0), "1000000") == 0 && strcmp(csv_cell(&out, R - 1, 0), csv_cell(&in, R - 1, 0)) == 0);
    csv_table_free(&out);
    for (int m = 0; m < 2; m++) stage_jobs_free(jobs[m], n_jobs[m]), free(probs[m]);
    csv_table_free(&in);
    plan_free(&plan);
}

/* After the last test: remove the temp dir. */
static int teardown(void) { return tt_rm_tree(tmpdir); }

TEST_MAIN_WITH(setup, teardown,
               test_merge_model_flip_and_average, test_ensemble_methods, test_merge_errors,
               test_merge_partial_coverage, test_merge_partial_output, bench_merge_25k)

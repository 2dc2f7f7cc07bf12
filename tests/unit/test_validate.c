/* test_validate.c: validate_output — a good file (quoted ids, CRLF, blanks, tolerance) passes,
 * and each kind of bad output fails with a message naming the file, the line and the column:
 * header, unknown / repeated / missing ids, non-numbers, non-finite and out-of-range values,
 * row sums, unreadable and malformed files. Also the speed on 25k rows (bench_validate_25k,
 * run apart: ctest -L bench).
 */
#include <unistd.h>

#include "clock_util.h"
#include "orch.h"
#include "tinytest.h"

static char tmpdir[256];
static char out_path[512];
static plan_t plan;

static char *IDS[] = {"1", "a,b", "3"};

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static job_t job_for(char **ids, size_t n) {
    job_t j;
    memset(&j, 0, sizeof j);
    snprintf(j.name, sizeof j.name, "m.identity.s0of1");
    j.ids = ids, j.n_rows = n, j.output_path = out_path;
    return j;
}

/* Write text as the job's output and expect validation to fail with "<out_path>: <expect>". */
static void expect_invalid(const char *text, const char *expect) {
    write_file(out_path, text);
    job_t j = job_for(IDS, 3);
    err_t err = {0};
    int rc = validate_output(&plan, &j, &err);
    char want[1200];
    snprintf(want, sizeof want, "%s: %s", out_path, expect);
    EXPECT_MSG(rc == -1 && strstr(err.msg, want), "\n    want \"%s\"\n    got  \"%s\"", want, rc ? err.msg : "(valid)");
}

static void expect_valid(const char *text) {
    write_file(out_path, text);
    job_t j = job_for(IDS, 3);
    err_t err = {0};
    EXPECT_MSG(validate_output(&plan, &j, &err) == 0, "%s", err.msg);
}

#define H "id,winner_model_a,winner_model_b,winner_tie\n"

TEST(test_valid_outputs) {
    expect_valid(H "1,0.2,0.3,0.5\n\"a,b\",1,0,0\n3,0.3333333,0.3333333,0.3333334\n");
    expect_valid(H "3,0.1,0.1,0.8\n1,1e-3,0.999,0\n\"a,b\",0.5,0.5,0\n");             // any order
    expect_valid("id,winner_model_a,winner_model_b,winner_tie\r\n1,0.2,0.3,0.5\r\n\"a,b\",1,0,0\r\n3,0,0,1\r\n");
    expect_valid(H "1, 0.2 ,0.3,0.5\n\"a,b\",1,0,0\n3,0.5,0.5,0.0009\n");            // blanks; sum 1.0009
}

TEST(test_header_errors) {
    expect_invalid("id,winner_model_b,winner_model_a,winner_tie\n1,0.2,0.3,0.5\n",
                   "line 1: header is 'id,winner_model_b,winner_model_a,winner_tie' but must be "
                   "'id,winner_model_a,winner_model_b,winner_tie'");
    expect_invalid("id,winner_model_a,winner_model_b\n1,0.5,0.5\n", "line 1: header is 'id,winner_model_a,winner_model_b'");
    expect_invalid("row_id,winner_model_a,winner_model_b,winner_tie\n", "line 1: header is 'row_id,");
    expect_invalid(H "1,0.2,0.3,0.5,0\n", "line 2: expected 4 fields as in the header, found 5");
    expect_invalid("", "empty file");
}

TEST(test_id_errors) {
    expect_invalid(H "1,0.2,0.3,0.5\n\"a,b\",1,0,0\n4,0,0,1\n", "line 4: id '4' is not one of this job's 3 ids");
    expect_invalid(H "1,0.2,0.3,0.5\n\"a,b\",1,0,0\n1,0,0,1\n", "line 4: id '1' appears twice (first at line 2)");
    expect_invalid(H "1,0.2,0.3,0.5\n3,0,0,1\n", "id 'a,b' is missing (1 of the job's 3 ids are missing)");
    expect_invalid(H, "id '1' is missing (3 of the job's 3 ids are missing)");
    expect_invalid(H "a,0.2,0.3,0.5\n", "line 2: id 'a' is not one of this job's 3 ids");
}

TEST(test_value_errors) {
    expect_invalid(H "1,0.2,abc,0.5\n", "line 2: column 3 'winner_model_b': value 'abc' is not a number");
    expect_invalid(H "1,0.2,,0.8\n", "line 2: column 3 'winner_model_b': value '' is not a number");
    expect_invalid(H "1,0.5x,0.0,0.5\n", "line 2: column 2 'winner_model_a': value '0.5x' is not a number");
    expect_invalid(H "1,0.5,0.0,0.5\n\"a,b\",nan,0,1\n", "line 3: column 2 'winner_model_a': value 'nan' is not finite");
    expect_invalid(H "1,0.5,0.0,inf\n", "line 2: column 4 'winner_tie': value 'inf' is not finite");
    expect_invalid(H "1,1.5,-0.5,0\n", "line 2: column 2 'winner_model_a': value '1.5' is not in [0, 1]");
    expect_invalid(H "1,0.5,-0.1,0.6\n", "line 2: column 3 'winner_model_b': value '-0.1' is not in [0, 1]");
    expect_invalid(H "1,0.5,0.3,0.1\n", "line 2: id '1': probabilities sum to 0.9, not 1 (tolerance 0.001)");
    expect_invalid(H "1,0.5,0.5,0.0011\n", "line 2: id '1': probabilities sum to 1.0011");
}

TEST(test_missing_file) {
    job_t j = job_for(IDS, 3);
    char path[600];
    snprintf(path, sizeof path, "%s/none.csv", tmpdir);
    j.output_path = path;
    err_t err = {0};
    EXPECT(validate_output(&plan, &j, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, path);
    EXPECT_STR_CONTAINS(err.msg, "cannot open");
}

TEST(test_custom_labels) {
    plan_t p2;
    err_t err = {0};
    const char *text = "{\"input\": \"i\", \"output\": \"o\", \"labels\": [\"yes\", \"no\"], \"models\": [{\"name\": \"m\", \"command\": [\"w\"]}]}";
    EXPECT(plan_load_buf(&p2, text, strlen(text), "p.json", &err) == 0);
    write_file(out_path, "id,yes,no\n1,0.25,0.75\n");
    job_t j = job_for(IDS, 1);
    EXPECT_MSG(validate_output(&p2, &j, &err) == 0, "%s", err.msg);
    write_file(out_path, H "1,0.2,0.3,0.5\n");
    EXPECT(validate_output(&p2, &j, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "but must be 'id,yes,no'");
    plan_free(&p2);
}

TEST(bench_validate_25k) {
    const size_t R = 25000;
    char **ids = malloc(R * sizeof *ids);
    FILE *f = fopen(out_path, "w");
    fputs(H, f);
    for (size_t i = 0; i < R; i++) {
        ids[i] = malloc(16);
        snprintf(ids[i], 16, "%zu", 30000000 + i * 13);
        fprintf(f, "%s,%.9g,%.9g,%.9g\n", ids[i], 0.25, 0.5, 0.25);
    }
    fclose(f);
    job_t j = job_for(ids, R);
    err_t err = {0};
    double t0 = clock_mono_s();
    EXPECT_MSG(validate_output(&plan, &j, &err) == 0, "%s", err.msg);
    double ms = (clock_mono_s() - t0) * 1e3;
    fprintf(stderr, "  validate 25k rows: %.1f ms\n", ms);
    EXPECT(ms < 250);   // a few ms in a release build; generous for sanitizer builds
    for (size_t i = 0; i < R; i++) free(ids[i]);
    free(ids);
}

/* Before the first test: the temp dir and a one-model plan. */
static int setup(void) {
    tt_mkdtemp(tmpdir, sizeof tmpdir, "test_validate");
    snprintf(out_path, sizeof out_path, "%s/out.csv", tmpdir);
    err_t err = {0};
    const char *text = "{\"input\": \"i\", \"output\": \"o\", \"models\": [{\"name\": \"m\", \"command\": [\"w\"]}]}";
    if (plan_load_buf(&plan, text, strlen(text), "p.json", &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    return 0;
}

/* After the last test: the plan and the temp dir. */
static int teardown(void) {
    plan_free(&plan);
    return tt_rm_tree(tmpdir);
}

TEST_MAIN_WITH(setup, teardown,
               test_valid_outputs, test_header_errors, test_id_errors, test_value_errors, test_missing_file,
               test_custom_labels, bench_validate_25k)

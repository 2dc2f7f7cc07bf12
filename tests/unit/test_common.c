/* test_common.c: common/ — CSV reading (line numbers, quoting, errors), minimal-quoting writes,
 * atomic files (nothing at the final path until commit), err_t helpers, and probs (softmax,
 * the id,<labels> CSV). */
#include <unistd.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "csv_io.h"
#include "json_util.h"
#include "probs.h"
#include "tinytest.h"

static char tmpdir[256];

/* Before the first test: the temp dir. */
static int setup(void) {
    tt_mkdtemp(tmpdir, sizeof tmpdir, "test_common");
    return 0;
}

TEST(test_csv_parse_quotes_and_lines) {
    const char *text = "id,text\n1,plain\n2,\"with, comma\"\n3,\"multi\nline \"\"quoted\"\"\"\n4,\n";
    csv_table_t t;
    err_t err = {0};
    EXPECT(csv_table_parse(&t, text, strlen(text), "x.csv", &err) == 0);
    EXPECT(t.n_cols == 2 && t.n_rows == 4);
    EXPECT(strcmp(t.header[1], "text") == 0);
    EXPECT(strcmp(csv_cell(&t, 1, 1), "with, comma") == 0);
    EXPECT(strcmp(csv_cell(&t, 2, 1), "multi\nline \"quoted\"") == 0);
    EXPECT(csv_cell_len(&t, 3, 1) == 0);
    EXPECT(t.lines[0] == 2 && t.lines[1] == 3 && t.lines[2] == 4 && t.lines[3] == 6);
    EXPECT(csv_table_col(&t, "text") == 1 && csv_table_col(&t, "nope") == -1);
    csv_table_free(&t);
}

TEST(test_csv_multiline_first_field_line) {
    const char *text = "id,v\n\"a\nb\",1\n\n\"c\",2\n";
    csv_table_t t;
    err_t err = {0};
    EXPECT(csv_table_parse(&t, text, strlen(text), "m.csv", &err) == 0);
    EXPECT(t.n_rows == 2);
    EXPECT(t.lines[0] == 2);  // the row starts where its first field starts, not where it ends
    EXPECT(t.lines[1] == 5);  // a blank line is skipped but counted
    csv_table_free(&t);
}

TEST(test_csv_errors_name_line) {
    csv_table_t t;
    err_t err = {0};
    const char *ragged = "a,b\n1,2\n3\n";
    EXPECT(csv_table_parse(&t, ragged, strlen(ragged), "r.csv", &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "r.csv: line 3");
    const char *unterminated = "a,b\n1,\"open\n";
    EXPECT(csv_table_parse(&t, unterminated, strlen(unterminated), "u.csv", &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "u.csv: line 2");
    EXPECT(csv_table_parse(&t, "", 0, "e.csv", &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "empty file");
    EXPECT(csv_table_read(&t, "/nonexistent/x.csv", &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "/nonexistent/x.csv");
}

TEST(test_csv_bom_and_crlf) {
    const char *text = "\xEF\xBB\xBFid,v\r\n7,x\r\n";
    csv_table_t t;
    err_t err = {0};
    EXPECT(csv_table_parse(&t, text, strlen(text), "b.csv", &err) == 0);
    EXPECT(strcmp(t.header[0], "id") == 0);
    EXPECT(t.n_rows == 1 && strcmp(csv_cell(&t, 0, 1), "x") == 0);
    csv_table_free(&t);
}

TEST(test_csv_write_roundtrip) {
    char path[512];
    snprintf(path, sizeof path, "%s/w.csv", tmpdir);
    FILE *f = fopen(path, "w");
    const char *row1[] = {"id", "text"};
    const char *row2[] = {"1", "a,\"b\"\nc"};
    const char *row3[] = {"2", "plain"};
    EXPECT(csv_write_row(f, row1, 2) == 0 && csv_write_row(f, row2, 2) == 0 && csv_write_row(f, row3, 2) == 0);
    fclose(f);
    size_t len;
    err_t err = {0};
    char *data = fs_read_all(path, FS_LIMIT_CSV, &len, &err);
    EXPECT(data && strstr(data, "2,plain\n") != NULL);  // no quotes when not needed
    csv_table_t t;
    EXPECT(csv_table_read(&t, path, &err) == 0);
    EXPECT(t.n_rows == 2 && strcmp(csv_cell(&t, 0, 1), row2[1]) == 0);
    csv_table_free(&t);
    free(data);
}

TEST(test_atomic_file) {
    char path[512];
    snprintf(path, sizeof path, "%s/out.csv", tmpdir);
    atomic_file_t af;
    err_t err = {0};
    EXPECT(atomic_file_open(&af, path, &err) == 0);
    fputs("hello\n", af.f);
    EXPECT(access(path, F_OK) != 0);  // nothing at the final path before commit
    EXPECT(atomic_file_commit(&af, &err) == 0);
    EXPECT(access(path, F_OK) == 0);
    EXPECT(atomic_file_open(&af, path, &err) == 0);
    fputs("half", af.f);
    atomic_file_abort(&af);
    size_t len;
    char *data = fs_read_all(path, FS_LIMIT_CSV, &len, &err);
    EXPECT(data && strcmp(data, "hello\n") == 0);  // abort left the old file alone
    free(data);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/a/b/c", tmpdir);
    EXPECT(fs_mkdir_p(dir, &err) == 0);
    struct stat st;
    EXPECT(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    snprintf(dir, sizeof dir, "%s/nodir/x.csv", tmpdir);
    EXPECT(atomic_file_open(&af, dir, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "nodir");
}

TEST(test_json_errors) {
    err_t err = {0};
    json_t *j = json_util_load_buf("{\n  \"a\": 1,\n  \"a\": 2\n}", 22, "p.json", &err);
    EXPECT(j == NULL);
    EXPECT_STR_CONTAINS(err.msg, "p.json:3:");
    j = json_util_load_buf("[1, 2", 5, "q.json", &err);
    EXPECT(j == NULL);
    EXPECT_STR_CONTAINS(err.msg, "q.json:1:");
}

TEST(test_err_helpers) {
    err_t err = {0};
    EXPECT(err_fmt(&err, "x %d", 1) == -1);
    EXPECT(err_prefix(&err, "file.csv") == -1);
    EXPECT(strcmp(err.msg, "file.csv: x 1") == 0);
    EXPECT(err_code(&err, 75, "oom") == -1 && err.code == 75);
    EXPECT(err_fmt(NULL, "ignored") == -1);
}

TEST(test_csv_spaces_kept_byte_for_byte) {
    // libcsv trims unquoted blanks by default: a response "  lead " must stay as it is.
    const char *text = "id,text\n 3 ,  lead \n\" 4 \",\"  q \"\n5,\t tab\t\n";
    csv_table_t t;
    err_t err = {0};
    EXPECT(csv_table_parse(&t, text, strlen(text), "s.csv", &err) == 0);
    EXPECT(t.n_rows == 3);
    EXPECT(strcmp(csv_cell(&t, 0, 0), " 3 ") == 0);
    EXPECT(strcmp(csv_cell(&t, 0, 1), "  lead ") == 0 && csv_cell_len(&t, 0, 1) == 7);
    EXPECT(strcmp(csv_cell(&t, 1, 0), " 4 ") == 0);
    EXPECT(strcmp(csv_cell(&t, 1, 1), "  q ") == 0);
    EXPECT(strcmp(csv_cell(&t, 2, 1), "\t tab\t") == 0);
    csv_table_free(&t);
    // The writer quotes a field with blanks at either end, so that a trimming reader keeps them.
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    EXPECT(csv_write_field(f, " a", 2) == 0 && fputc('|', f) != EOF);
    EXPECT(csv_write_field(f, "b\t", 2) == 0 && fputc('|', f) != EOF);
    EXPECT(csv_write_field(f, "c d", 3) == 0);
    fclose(f);
    EXPECT_MSG(strcmp(buf, "\" a\"|\"b\t\"|c d") == 0, "got [%s]", buf);
    free(buf);
}

TEST(test_fs_read_all_limits) {
    err_t err = {0};
    size_t len = 0;
    // Not a regular file: refused at once (before, /dev/zero was read until memory ran out).
    EXPECT(fs_read_all("/dev/zero", 1 << 20, &len, &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "/dev/zero: not a regular file");
    EXPECT(fs_read_all(tmpdir, 1 << 20, &len, &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "not a regular file");
    // Over the limit: refused before reading, naming the size and the limit.
    char path[512];
    snprintf(path, sizeof path, "%s/ten.txt", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("0123456789", f);
    fclose(f);
    EXPECT(fs_read_all(path, 9, &len, &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "ten.txt: 10 bytes is larger than the limit of 9 bytes");
    char *buf = fs_read_all(path, 10, &len, &err);
    EXPECT(buf && len == 10 && strcmp(buf, "0123456789") == 0);
    free(buf);
    EXPECT(fs_read_all("/nonexistent/x", 10, &len, &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "/nonexistent/x: cannot open");
    // JSON files go through the same reader: a FIFO (which used to block the open forever) and
    // /dev/zero are refused at once.
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/fifo.json", tmpdir);
    EXPECT(mkfifo(fifo, 0600) == 0);
    EXPECT(json_util_load_file(fifo, &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "fifo.json: not a regular file (a FIFO)");
    EXPECT(json_util_load_file("/dev/zero", &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "/dev/zero: not a regular file (a character device)");
}

TEST(test_probs_softmax) {
    // logits log 1, log 2, log 3 (+ any shift): probabilities 1/6, 2/6, 3/6.
    float lg[3] = {100.0f + logf(1), 100.0f + logf(2), 100.0f + logf(3)};
    double p[3];
    EXPECT(probs_softmax(lg, 3, p) == 0);
    EXPECT_NEAR(p[0], 1.0 / 6, 1e-6, 0);
    EXPECT_NEAR(p[1], 2.0 / 6, 1e-6, 0);
    EXPECT_NEAR(p[2], 3.0 / 6, 1e-6, 0);
    float bad[2] = {0.0f, INFINITY};
    EXPECT(probs_softmax(bad, 2, p) == -1);
}

TEST(test_probs_csv_write) {
    const char *text = "other,id\nx,1\ny,\"a,b\"\n";
    csv_table_t in;
    err_t err = {0};
    EXPECT(csv_table_parse(&in, text, strlen(text), "in.csv", &err) == 0);
    const char *labels[] = {"win \"a\"", "tie"};
    double p[4] = {0.25, 0.75, 1.0 / 3, 2.0 / 3};
    char path[512];
    snprintf(path, sizeof path, "%s/probs.csv", tmpdir);
    EXPECT_MSG(probs_csv_write(path, labels, 2, &in, 1, p, &err) == 0, "%s", err.msg);
    size_t len;
    char *got = fs_read_all(path, 1 << 20, &len, &err);
    // Labels and ids quoted only where needed, values with 9 significant digits.
    EXPECT(got && strcmp(got, "id,\"win \"\"a\"\"\",tie\n1,0.25,0.75\n\"a,b\",0.333333333,0.666666667\n") == 0);
    free(got);
    snprintf(path, sizeof path, "%s/nodir/probs.csv", tmpdir);
    EXPECT(probs_csv_write(path, labels, 2, &in, 1, p, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "nodir");
    csv_table_free(&in);
}

/* After the last test: remove the temp dir. */
static int teardown(void) { return tt_rm_tree(tmpdir); }

TEST_MAIN_WITH(setup, teardown,
               test_csv_parse_quotes_and_lines, test_csv_multiline_first_field_line, test_csv_errors_name_line,
               test_csv_bom_and_crlf, test_csv_write_roundtrip, test_atomic_file, test_json_errors,
               test_err_helpers, test_csv_spaces_kept_byte_for_byte, test_fs_read_all_limits, test_probs_softmax,
               test_probs_csv_write)

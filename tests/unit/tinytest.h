/* tinytest.h: the unit-test harness. Each tests/unit/test_<area>.c holds TEST(name) functions
 * and ends with TEST_MAIN(test_a, test_b, ...) (or TEST_MAIN_WITH(setup, teardown, ...) when
 * the tests share a temp dir or a device). That one list is the only place the names live: the
 * runner takes them from it, so a test cannot be forgotten or misspelled.
 *
 *   ./test_x              run every test
 *   ./test_x NAME...      run only those (NAME with or without its "test_" prefix)
 *   ./test_x --list       print the names, one a line
 *   ./test_x --bench      run only the bench_* tests
 *
 * Tests named bench_* time something and assert on wall-clock time; a default run leaves them
 * out (a slow or loaded machine must not fail the suite). ctest runs them as <binary>_bench
 * under the label "bench" (ctest -L bench); tools/test.sh excludes that label.
 * An unknown name exits 2. A failed EXPECT prints file:line and the expression, the test goes
 * on, and the binary exits 1. It prints "N passed, N failed". Fixture and build directories are
 * compiled in by tests/CMakeLists.txt (tt_dir), so a test binary runs from any directory; the
 * ORCH_* environment variables still override them. It does not time or isolate tests: they
 * run in order, in one process.
 */
#ifndef TINYTEST_H
#define TINYTEST_H

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int tt_failures_;

#define TEST(name) static void name(void)

#define EXPECT(cond)                                                               \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
            tt_failures_++;                                                        \
        }                                                                          \
    } while (0)

#define EXPECT_MSG(cond, ...)                                                      \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            tt_failures_++;                                                        \
        }                                                                          \
    } while (0)

#define EXPECT_STR_CONTAINS(hay, needle)                                           \
    EXPECT_MSG(strstr((hay), (needle)) != NULL, "\"%s\" does not contain \"%s\"", (hay), (needle))

/* |a - b| <= atol + rtol * |b| : the scale-aware tolerance used for every numeric comparison. */
#define EXPECT_NEAR(a, b, atol, rtol)                                              \
    do {                                                                           \
        double a_ = (a), b_ = (b);                                                 \
        EXPECT_MSG(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_), "%.9g vs %.9g", a_, b_); \
    } while (0)

/* The directory named by the environment variable `var` (ORCH_SOURCE_DIR, ORCH_BINARY_DIR,
 * ORCH_FIXTURES or ORCH_GEN_FIXTURES) when it is set, else the one CMake compiled in (the
 * TT_<var> definitions), else "." . */
static inline const char *tt_dir(const char *var) {
    const char *v = getenv(var);
    if (v && *v) return v;
    static const struct {
        const char *var, *dir;
    } compiled[] = {
#ifdef TT_ORCH_SOURCE_DIR
        {"ORCH_SOURCE_DIR", TT_ORCH_SOURCE_DIR},
#endif
#ifdef TT_ORCH_BINARY_DIR
        {"ORCH_BINARY_DIR", TT_ORCH_BINARY_DIR},
#endif
#ifdef TT_ORCH_FIXTURES
        {"ORCH_FIXTURES", TT_ORCH_FIXTURES},
#endif
#ifdef TT_ORCH_GEN_FIXTURES
        {"ORCH_GEN_FIXTURES", TT_ORCH_GEN_FIXTURES},
#endif
        {NULL, NULL}};
    for (int i = 0; compiled[i].var; i++)
        if (strcmp(compiled[i].var, var) == 0) return compiled[i].dir;
    return ".";
}

/* nftw callback of tt_rm_tree: remove one entry (a directory after its contents). */
static inline int tt_rm_entry_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* rm -r dir: files, links (never followed) and subdirectories. Returns 0, or -1 when something
 * could not be removed. */
static inline int tt_rm_tree(const char *dir) {
    return nftw(dir, tt_rm_entry_, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* Create a fresh directory /tmp/<prefix>.XXXXXX and put its real path (/tmp may be a link) in
 * buf (n bytes). Aborts when it cannot. */
static inline void tt_mkdtemp(char *buf, size_t n, const char *prefix) {
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/%s.XXXXXX", prefix);
    char *real = mkdtemp(tmpl) ? realpath(tmpl, NULL) : NULL;
    if (!real || strlen(real) >= n) {
        fprintf(stderr, "tinytest: cannot create a temp dir %s\n", tmpl);
        abort();
    }
    snprintf(buf, n, "%s", real);
    free(real);
}

typedef void (*tt_fn_)(void);

/* The i-th name of the comma-separated list `names` (as #__VA_ARGS__ spells it) into buf. */
static void tt_name_(const char *names, int i, char *buf, size_t n) {
    const char *p = names;
    for (;; i--) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\n' && *e != '\t') e++;
        if (i == 0) {
            snprintf(buf, n, "%.*s", (int)(e - p), p);
            return;
        }
        p = e;
    }
}

/* 1 when the command-line argument arg names test `name`, with or without a "test_" prefix. */
static int tt_match_(const char *arg, const char *name) {
    if (strncmp(arg, "test_", 5) == 0) arg += 5;
    if (strncmp(name, "test_", 5) == 0) name += 5;
    return strcmp(arg, name) == 0;
}

/* The runner behind TEST_MAIN: see the header comment. setup (may be NULL) runs before the first
 * test and may return an exit status to stop (77: skipped); teardown (may be NULL) runs after
 * the last and returns nonzero when it failed. */
static int tt_main_(int argc, char **argv, const char *names, const tt_fn_ *fns, int n, int (*setup)(void),
                    int (*teardown)(void)) {
    char name[128];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n; i++) tt_name_(names, i, name, sizeof name), printf("%s\n", name);
        return 0;
    }
    int bench = argc == 2 && strcmp(argv[1], "--bench") == 0;
    for (int a = 1 + bench; a < argc; a++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++) tt_name_(names, i, name, sizeof name), found = tt_match_(argv[a], name);
        if (!found) {
            fprintf(stderr, "%s: unknown test '%s' (--list prints the names)\n", argv[0], argv[a]);
            return 2;
        }
    }
    if (setup) {
        int st = setup();
        if (st != 0) return st;
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        tt_name_(names, i, name, sizeof name);
        int is_bench = strncmp(name, "bench_", 6) == 0;
        int want = bench ? is_bench : argc < 2 && !is_bench;
        for (int a = 1 + bench; a < argc; a++) want |= tt_match_(argv[a], name);
        if (!want) continue;
        int before = tt_failures_;
        fprintf(stderr, "[ RUN  ] %s\n", name);
        fns[i]();
        if (tt_failures_ == before) passed++; else failed++;
        fprintf(stderr, "[ %s ] %s\n", tt_failures_ == before ? " OK " : "FAIL", name);
    }
    printf("%d passed, %d failed\n", passed, failed);
    int td = teardown ? teardown() : 0;
    return failed || td ? 1 : 0;
}

/* main(): run the listed tests (see the header comment). */
#define TEST_MAIN(...) TEST_MAIN_WITH(NULL, NULL, __VA_ARGS__)

/* main() with setup and teardown hooks (int (*)(void) each, or NULL; see tt_main_). */
#define TEST_MAIN_WITH(setup, teardown, ...)                                                   \
    TEST_RUNNER(tt_runner_, setup, teardown, __VA_ARGS__)                                      \
    int main(int argc, char **argv) { return tt_runner_(argc, argv); }

/* Define `static int fn(int argc, char **argv)` that runs the listed tests, for a test file
 * whose main() must do something else first (test_run.c's binary doubles as the spawn shim). */
#define TEST_RUNNER(fn, setup, teardown, ...)                                                  \
    static int fn(int argc, char **argv) {                                                     \
        static const tt_fn_ fns_[] = {__VA_ARGS__};                                            \
        return tt_main_(argc, argv, #__VA_ARGS__, fns_, (int)(sizeof fns_ / sizeof fns_[0]),  \
                        (setup), (teardown));                                                  \
    }

#endif

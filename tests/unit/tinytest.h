/* tinytest.h: the unit-test harness. Each tests/unit/test_<area>.c holds TEST(name) functions
 * and ends with TEST_MAIN(test_a, test_b, ...). A failed EXPECT prints file:line and the
 * expression, the test goes on, and the binary exits 1. It prints "N passed, N failed". */
#ifndef TINYTEST_H
#define TINYTEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef void (*tt_fn_)(void);
static int tt_run_(const char *names, tt_fn_ *fns, int n) {
    int passed = 0, failed = 0;
    const char *p = names;
    for (int i = 0; i < n; i++) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        int before = tt_failures_;
        fprintf(stderr, "[ RUN  ] %.*s\n", (int)(e - p), p);
        fns[i]();
        if (tt_failures_ == before) passed++; else failed++;
        fprintf(stderr, "[ %s ] %.*s\n", tt_failures_ == before ? " OK " : "FAIL", (int)(e - p), p);
        p = e;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                             \
    int main(void) {                                                               \
        tt_fn_ fns_[] = {__VA_ARGS__};                                             \
        return tt_run_(#__VA_ARGS__, fns_, (int)(sizeof fns_ / sizeof fns_[0]));   \
    }

#endif

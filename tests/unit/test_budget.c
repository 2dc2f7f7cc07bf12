/* test_budget.c: the deadline's budget (orchestrator/budget.c): the reserve is the kill grace +
 * the merge estimate (from the measured input read, with its margin and floor) + the slack, the
 * stop time is the deadline minus it, and a slower measured validation only ever raises it.
 * (Duration parsing is pinned through the plan in test_plan's test_deadline_fallback.) */
#include <string.h>

#include "budget.h"
#include "tinytest.h"

/* A plan with two models: 2 variants and 1 variant (4 outputs for the merge with the submission). */
static void two_models(plan_t *p, plan_model_t *m) {
    memset(p, 0, sizeof *p);
    memset(m, 0, 2 * sizeof *m);
    m[0].n_tta = 2, m[1].n_tta = 1;
    p->models = m, p->n_models = 2, p->kill_grace_s = 5;
}

TEST(test_budget_reserve) {
    plan_t p;
    plan_model_t m[2];
    two_models(&p, m);
    budget_t b;
    budget_init(&b, &p, 100, 1000, 0.01);   // 3 x 0.01 s x 4 outputs = 0.12 s: the 0.5 s floor
    EXPECT_NEAR(b.merge_s, BUDGET_MERGE_MIN_S, 1e-12, 0);
    EXPECT_NEAR(b.reserve_s, 5 + BUDGET_MERGE_MIN_S + BUDGET_SLACK_S, 1e-12, 0);
    EXPECT_NEAR(b.stop_at, 1000 + 100 - b.reserve_s, 1e-9, 0);
    EXPECT_NEAR(budget_left(&b, 1000), 100 - b.reserve_s, 1e-9, 0);
    budget_init(&b, &p, 100, 1000, 1.0);    // 3 x 1 s x 4 outputs
    EXPECT_NEAR(b.merge_s, BUDGET_MERGE_MARGIN * 4, 1e-12, 0);
    // Validation measured at 2 s per output: 3 x 2 x 4 = 24 s; a faster one changes nothing.
    EXPECT(budget_observe(&b, &p, 2.0) == 1);
    EXPECT_NEAR(b.merge_s, 24, 1e-12, 0);
    EXPECT_NEAR(b.stop_at, 1100 - (5 + 24 + BUDGET_SLACK_S), 1e-9, 0);
    EXPECT(budget_observe(&b, &p, 0.1) == 0);
    EXPECT_NEAR(b.merge_s, 24, 1e-12, 0);
    char line[320];
    budget_describe(&b, line, sizeof line);
    EXPECT_STR_CONTAINS(line, "deadline 100.0 s from the start: reserving 30.0 s (kill grace 5.0 s");
}

TEST_MAIN(test_budget_reserve)

/* fuzz_plan.c: libFuzzer target for plan_load_buf — arbitrary bytes as plan.json text.
 *
 * Oracles beyond "no crash, no leak, no UB" (ASan/UBSan): every failure sets a message, and
 * every message starts "<name>:<line>:<col>:" with a position inside the text, because the
 * locator must point somewhere sensible even for plans jansson accepts but we reject. Loaded
 * plans get their CLI overrides applied too.
 */
#include <stdint.h>
#include <stdlib.h>

#include "orch.h"

#define NAME "/nonexistent-fuzz-dir/plan.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plan_t plan;
    err_t err = {0};
    if (plan_load_buf(&plan, (const char *)data, size, NAME, &err) == 0) {
        ASSERT(plan.n_models >= 1 && plan.n_labels >= 2 && plan.input && plan.output && plan.work_dir);
        for (int i = 0; i < plan.n_models; i++) ASSERT(strlen(plan.models[i].settings_key) == 32);
        err_t e2 = {0};
        ASSERT(plan_apply_gpus_override(&plan, "0,1", &e2) == 0 && plan.n_gpus == 2);
        plan_set_work_dir(&plan, "/tmp/fuzz-work");
        plan_free(&plan);
        return 0;
    }
    ASSERT(err.msg[0] != '\0');
    ASSERT(strncmp(err.msg, NAME ":", strlen(NAME) + 1) == 0);
    const char *p = err.msg + strlen(NAME) + 1;
    char *end;
    long line = strtol(p, &end, 10);
    ASSERT(end != p && *end == ':' && line >= 0);
    long col = strtol(end + 1, &end, 10);
    ASSERT(*end == ':' && col >= 0);
    long lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    ASSERT(line <= lines + 1);
    return 0;
}

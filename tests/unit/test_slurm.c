/* test_slurm.c: the Slurm executor's pure parts (executor_slurm.h) and its plan keys: the
 * executor/slurm.srun_args keys and their errors, the srun command line of a step, the step
 * and memory markers, slots from the allocation's environment and the error outside an allocation. The
 * real Slurm is exercised by tests/integration/slurm.sh. */
#include <stdlib.h>
#include <string.h>

#include "executor_slurm.h"
#include "orch.h"
#include "spawn.h"
#include "tinytest.h"

#define HEAD "{\"input\": \"/in.csv\", \"output\": \"/out.csv\", \"models\": [{\"name\": \"m\", \"command\": [\"w\"]}]"

TEST(test_plan_keys) {
    plan_t plan;
    err_t err = {0};
    const char *ok = HEAD ", \"executor\": \"slurm\", \"slurm\": {\"srun_args\": [\"--mem=1G\", \"-p\", \"gpu\"]}}";
    EXPECT(plan_load_buf(&plan, ok, strlen(ok), "/p.json", &err) == 0);
    EXPECT(plan.executor == EXECUTOR_SLURM);
    EXPECT(plan.n_srun_args == 3 && strcmp(plan.srun_args[2], "gpu") == 0);
    plan_free(&plan);
    const char *dflt = HEAD "}";
    EXPECT(plan_load_buf(&plan, dflt, strlen(dflt), "/p.json", &err) == 0);
    EXPECT(plan.executor == EXECUTOR_LOCAL && plan.n_srun_args == 0);
    plan_free(&plan);
    const char *bad = HEAD ", \"executor\": \"pbs\"}";
    EXPECT(plan_load_buf(&plan, bad, strlen(bad), "/p.json", &err) != 0);
    EXPECT_STR_CONTAINS(err.msg, "executor: unknown executor 'pbs'");
    const char *typo = HEAD ", \"slurm\": {\"srun_arg\": []}}";
    EXPECT(plan_load_buf(&plan, typo, strlen(typo), "/p.json", &err) != 0);
    EXPECT_STR_CONTAINS(err.msg, "slurm.srun_arg: unknown key");
}

/* Index of s in the NULL-terminated v, or -1. */
static int find(char **v, const char *s) {
    for (int i = 0; v[i]; i++)
        if (strcmp(v[i], s) == 0) return i;
    return -1;
}

TEST(test_step_argv) {
    plan_t plan = {0};
    char *extra[] = {"--mem=2G"};
    plan.srun_args = extra;
    plan.n_srun_args = 1;
    job_t job = {0};
    snprintf(job.name, sizeof job.name, "m1.swap_ab.s0of2");
    slot_t gpu = {.gpu = 1}, cpu = {.gpu = -1};
    char *worker[] = {"python3", "x.py", "--", NULL};
    char **v = slurm_step_argv(&plan, &job, &gpu, 4, "/opt/orchestrate", worker);
    EXPECT(strcmp(v[0], "srun") == 0);
    EXPECT(find(v, "--job-name=orch-m1.swap_ab.s0of2") > 0);
    EXPECT(find(v, "--gres=gpu:1") > 0 && find(v, "--cpus-per-task=4") < 0);
    EXPECT(find(v, "--kill-on-bad-exit=1") > 0 && find(v, "--exclusive") > 0 && find(v, "--ntasks=1") > 0);
    // srun's options, the extra ones last, then "--" and the shim with no parent to watch.
    int dd = find(v, "--");
    EXPECT(dd > 0 && find(v, "--mem=2G") == dd - 1);
    EXPECT(strcmp(v[dd + 1], "/opt/orchestrate") == 0 && strcmp(v[dd + 2], "--shim") == 0 && strcmp(v[dd + 3], "0") == 0);
    EXPECT(strcmp(v[dd + 4], "python3") == 0 && strcmp(v[dd + 6], "--") == 0 && v[dd + 7] == NULL);
    spawn_strv_free(v);
    v = slurm_step_argv(&plan, &job, &cpu, 4, "/opt/orchestrate", worker);
    EXPECT(find(v, "--cpus-per-task=4") > 0 && find(v, "--gres=gpu:1") < 0 && find(v, "--gres=none") > 0);
    spawn_strv_free(v);
}

TEST(test_marker) {
    char step[48], node[64];
    const char *line = SLURM_STEP_MARKER "1234.7 node-a01";
    EXPECT(slurm_parse_marker(line, strlen(line), step, sizeof step, node, sizeof node) == 1);
    EXPECT(strcmp(step, "1234.7") == 0 && strcmp(node, "node-a01") == 0);
    const char *other = "orchestrate-slurm-stepx 1.2 n";
    EXPECT(slurm_parse_marker(other, strlen(other), step, sizeof step, node, sizeof node) == 0);
    EXPECT(slurm_parse_marker(line, 10, step, sizeof step, node, sizeof node) == 0);  // cut short
}

TEST(test_mem_marker) {
    int gpu;
    double before, after;
    char why[96];
    const char *ok = SLURM_MEM_MARKER "gpu=3 before=1000 after=1210";
    EXPECT(slurm_parse_mem(ok, strlen(ok), &gpu, &before, &after, why, sizeof why) == 1);
    EXPECT(gpu == 3 && before == 1000 && after == 1210 && why[0] == '\0');
    const char *no = SLURM_MEM_MARKER "not done: no GPU in this step";
    EXPECT(slurm_parse_mem(no, strlen(no), &gpu, &before, &after, why, sizeof why) == 1);
    EXPECT(gpu == -1 && strcmp(why, "no GPU in this step") == 0);
    const char *other = "fake_worker: gpu=3 before=1 after=2";
    EXPECT(slurm_parse_mem(other, strlen(other), &gpu, &before, &after, why, sizeof why) == 0);
}

TEST(test_slots_and_allocation) {
    plan_t plan = {0};
    plan.cpu_workers = 3;
    plan.gpus_auto = 1;
    slot_t *slots;
    int n;
    char note[256];
    err_t err = {0};
    setenv("SLURM_GPUS_ON_NODE", "2", 1);
    setenv("SLURM_NNODES", "3", 1);
    EXPECT(slurm_slots(&plan, &slots, &n, note, sizeof note, &err) == 0);
    EXPECT(n == 6 && slots[5].gpu >= 0 && slots[0].cuda_visible[0] == '\0' && note[0] == '\0');
    free(slots);
    plan.use_cpu = 1;
    EXPECT(slurm_slots(&plan, &slots, &n, note, sizeof note, &err) == 0);
    EXPECT(n == 3 && slots[2].gpu == -1 && strcmp(slots[2].device, "cpu") == 0);
    free(slots);
    unsetenv("SLURM_GPUS_ON_NODE");
    unsetenv("SLURM_NNODES");
    unsetenv("SLURM_JOB_ID");
    EXPECT(slurm_check_allocation(&err) != 0);
    EXPECT_STR_CONTAINS(err.msg, "salloc");
}

TEST_MAIN(test_plan_keys, test_step_argv, test_marker, test_mem_marker, test_slots_and_allocation)

/* test_plan.c: plan.json loading — every kind of bad plan names its JSON path and the right
 * line:column, defaults, both worker kinds, relative paths, settings_key, the --gpus override
 * and the lm-worker lookup.
 *
 * Error positions are checked with markers: '@' in a test plan marks where the error must
 * point. The helper removes it and computes the expected line:column itself (columns count
 * UTF-8 characters, as jansson's own parse errors do), so each case states its expectation
 * in place instead of with hand-counted numbers.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "orch.h"
#include "plan_fields.h"
#include "rows.h"
#include "tinytest.h"

static char tmpdir[256];
static char plan_path[512];   // tmpdir/plan.json (need not exist for plan_load_buf)

/* Before the first test: the temp dir (its real path: plans resolve real paths). */
static int setup(void) {
    tt_mkdtemp(tmpdir, sizeof tmpdir, "test_plan");
    snprintf(plan_path, sizeof plan_path, "%s/plan.json", tmpdir);
    return 0;
}

static void write_file(const char *path, const char *text, int mode) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

/* Strip the '@' marker from marked into out and return its 1-based line and column. */
static void marker_pos(const char *marked, char *out, int *line, int *col) {
    int l = 1, c = 1, found = 0;
    size_t o = 0;
    for (const char *p = marked; *p; p++) {
        if (*p == '@' && !found) {
            found = 1, *line = l, *col = c;
            continue;
        }
        out[o++] = *p;
        if (found) continue;
        if (*p == '\n') l++, c = 1;
        else if (((unsigned char)*p & 0xC0) != 0x80) c++;
    }
    out[o] = '\0';
    if (!found) *line = 1, *col = 1;
}

/* Expect the marked plan to fail with "<plan_path>:<line>:<col>: <expect>" in the message. */
static void expect_error_at(const char *marked, const char *expect) {
    char text[4096];
    int line, col;
    marker_pos(marked, text, &line, &col);
    plan_t p;
    err_t err = {0};
    int rc = plan_load_buf(&p, text, strlen(text), plan_path, &err);
    char want[1400];
    snprintf(want, sizeof want, "%s:%d:%d: %s", plan_path, line, col, expect);
    EXPECT_MSG(rc == -1 && strstr(err.msg, want), "\n    want \"%s\"\n    got  \"%s\"", want,
               rc == -1 ? err.msg : "(the plan loaded)");
    if (rc == 0) plan_free(&p);
}

static int load(plan_t *p, const char *text, err_t *err) {
    return plan_load_buf(p, text, strlen(text), plan_path, err);
}

#define HEAD "{\"input\": \"in.csv\", \"output\": \"out.csv\",\n"
#define ONE_MODEL "\"models\": [{\"name\": \"m\", \"command\": [\"w\"]}]\n"

TEST(test_brief_example_position) {
    // The example from orch.h, with its exact text and numbers: line 7, column 15.
    const char *text =
        "{\n"
        "  \"input\": \"in.csv\",\n"
        "  \"output\": \"out.csv\",\n"
        "  \"models\": [\n"
        "    {\"name\": \"a\", \"command\": [\"w\"]},\n"
        "    {\"name\": \"b\", \"command\": [\"w\"],\n"
        "      \"tta\": [\"flip\"]}\n"
        "  ]\n"
        "}\n";
    plan_t p;
    err_t err = {0};
    EXPECT(load(&p, text, &err) == -1);
    char want[700];
    snprintf(want, sizeof want, "%s:7:15: models[1].tta[0]: unknown variant 'flip' (expected identity or swap_ab)",
             plan_path);
    EXPECT_STR_CONTAINS(err.msg, want);
}

TEST(test_top_level_errors) {
    expect_error_at("@[1, 2]", "the plan must be a JSON object, not an array");
    expect_error_at("@{\"output\": \"o.csv\", " ONE_MODEL "}", "missing required key 'input'");
    expect_error_at(HEAD "@\"modles\": []}", "modles: unknown key 'modles' (did you mean 'models'?)");
    expect_error_at(HEAD ONE_MODEL ", @\"weight\": 2}", "weight: unknown key 'weight' here (it is a per-model key");
    expect_error_at(HEAD ONE_MODEL ", @\"frobnicate\": 2}", "frobnicate: unknown key 'frobnicate'");
    expect_error_at(HEAD "\"work_dir\": @7, " ONE_MODEL "}", "work_dir: must be a string, not an integer");
    expect_error_at(HEAD "\"work_dir\": @\"\", " ONE_MODEL "}", "work_dir: must not be empty");
    expect_error_at(HEAD "\"models\": @[]}", "models: needs at least one model");
    expect_error_at(HEAD "\"models\": @{}}", "models: must be an array of models, not an object");
    expect_error_at(HEAD "\"cpu_workers\": @0, " ONE_MODEL "}", "cpu_workers: 0 is out of range [1, 1024]");
        expect_error_at(HEAD "\"kill_grace_s\": @\"5\", " ONE_MODEL "}", "kill_grace_s: must be a number, not a string");
    // A missing "models" points at the top-level object itself.
    expect_error_at("@" HEAD "\"cpu_workers\": 2}", "missing required key 'models'");
}


TEST(test_numbers_bounded) {
    // Every number has an upper bound: 1e17 s overflowed a float-to-integer cast (an instant
    // timeout, an instant kill), and weights of 1e308 summed to infinity.
    expect_error_at(HEAD "\"models\": [{\"name\": \"m\", \"command\": [\"w\"], \"timeout_s\": @1e17}]}",
                    "models[0].timeout_s: 1e+17 is out of range [0, 1e+06]");
    expect_error_at(HEAD "\"kill_grace_s\": @1e17, " ONE_MODEL "}", "kill_grace_s: 1e+17 is out of range [0, 3600]");
    expect_error_at(HEAD "\"models\": [{\"name\": \"m\", \"command\": [\"w\"], \"weight\": @1e308}]}",
                    "models[0].weight: 1e+308 is out of range (0, 1e+06]");
    expect_error_at(HEAD "\"memory\": {\"wait_s\": @1e9}, " ONE_MODEL "}", "memory.wait_s: 1e+09 is out of range [0, 3600]");
    expect_error_at(HEAD "\"memory\": {\"tolerance_mib\": @1e300}, " ONE_MODEL "}",
                    "memory.tolerance_mib: 1e+300 is out of range [0, 1e+07]");
    expect_error_at(HEAD "\"models\": [{\"name\": \"m\", \"command\": [\"w\"], \"weight\": @0}]}",
                    "models[0].weight: 0 is out of range (0, 1e+06]");
    expect_error_at(HEAD "\"kill_grace_s\": @-1, " ONE_MODEL "}", "kill_grace_s: -1 is out of range [0, 3600]");
}

TEST(test_invalid_json_position) {
    // jansson's own parse errors keep their file:line:col form.
    plan_t p;
    err_t err = {0};
    const char *text = "{\n  \"input\": \"x\",\n  \"output\" \"y\"\n}";
    EXPECT(load(&p, text, &err) == -1);
    char want[600];
    snprintf(want, sizeof want, "%s:3:", plan_path);
    EXPECT_STR_CONTAINS(err.msg, want);
    EXPECT_STR_CONTAINS(err.msg, "invalid JSON");
    const char *dup = "{\"input\": \"x\", \"input\": \"y\"}";
    EXPECT(load(&p, dup, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "duplicate");
}

TEST(test_labels_gpus_ensemble_memory) {
    expect_error_at(HEAD "\"labels\": @[\"a\"], " ONE_MODEL "}", "labels: needs at least 2 elements");
    expect_error_at(HEAD "\"labels\": [\"a\", \"b\", @\"a\"], " ONE_MODEL "}", "labels[2]: duplicate label 'a' (labels[0])");
    expect_error_at(HEAD "\"labels\": [@\"id\", \"b\"], " ONE_MODEL "}", "labels[0]: 'id' is the id column");
    expect_error_at(HEAD "\"labels\": [\"a\", @\"\"], " ONE_MODEL "}", "labels[1]: must not be empty");
    expect_error_at(HEAD "\"gpus\": @\"all\", " ONE_MODEL "}", "gpus: unknown value 'all'");
    expect_error_at(HEAD "\"gpus\": [0, @0], " ONE_MODEL "}", "gpus[1]: duplicate GPU index 0");
    expect_error_at(HEAD "\"gpus\": [0, @-1], " ONE_MODEL "}", "gpus[1]: GPU index -1 is out of range");
    expect_error_at(HEAD "\"gpus\": [@\"0\"], " ONE_MODEL "}", "gpus[0]: must be a GPU index (an integer), not a string");
    expect_error_at(HEAD "\"gpus\": @[], " ONE_MODEL "}", "gpus: needs at least one GPU index");
    expect_error_at(HEAD "\"gpus\": @4, " ONE_MODEL "}", "gpus: must be \"auto\", \"cpu\" or a list");
    expect_error_at(HEAD "\"ensemble\": {\"method\": @\"median\"}, " ONE_MODEL "}",
                    "ensemble.method: unknown method 'median' (did you mean 'mean'? expected mean, logit_mean or geometric)");
    expect_error_at(HEAD "\"ensemble\": @\"mean\", " ONE_MODEL "}", "ensemble: must be an object, not a string");
    expect_error_at(HEAD "\"ensemble\": {@\"weights\": [1]}, " ONE_MODEL "}", "ensemble.weights: unknown key 'weights'");
    expect_error_at(HEAD "\"memory\": {\"wait_s\": 1,\n  @\"tolerance\": 3}, " ONE_MODEL "}",
                    "memory.tolerance: unknown key 'tolerance' (did you mean 'tolerance_mib'?)");
    expect_error_at(HEAD "\"memory\": {\"on_leak\": @\"ignore\"}, " ONE_MODEL "}",
                    "memory.on_leak: unknown policy 'ignore' (expected fail, kill or warn)");
    expect_error_at(HEAD "\"memory\": {\"tolerance_mib\": @-5}, " ONE_MODEL "}", "memory.tolerance_mib: -5 is out of range [0, 1e+07]");
}

TEST(test_model_errors) {
    expect_error_at(HEAD "\"models\": [@7]}", "models[0]: must be an object, not an integer");
    expect_error_at(HEAD "\"models\": [@{\"command\": [\"w\"]}]}", "models[0]: missing required key 'name'");
    expect_error_at(HEAD "\"models\": [{\"name\": @\"a b\", \"command\": [\"w\"]}]}",
                    "models[0].name: may hold only letters, digits");
    expect_error_at(HEAD "\"models\": [{\"name\": @\"..\", \"command\": [\"w\"]}]}", "models[0].name: '..' cannot name a file");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"]},\n"
                         "  {\"name\": \"b\", \"command\": [\"w\"]}, {\"name\": @\"a\", \"command\": [\"w\"]}]}",
                    "models[2].name: duplicate model name 'a' (models[0] has it too)");
    expect_error_at(HEAD "\"models\": [@{\"name\": \"a\"}]}", "models[0]: needs either 'command'");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], @\"worker\": \"lm-worker\"}]}",
                    "models[0].worker: give either 'command' or 'worker', not both");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": @\"python\"}]}",
                    "models[0].worker: unknown worker 'python' (expected lm-worker)");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": @[]}]}", "models[0].command: needs at least 1 element");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": @\"w --x\"}]}",
                    "models[0].command: must be an array of strings, not a string");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\", @3]}]}",
                    "models[0].command[1]: must be a string, not an integer");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [@\"\"]}]}", "models[0].command[0]: the program name must not be empty");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\", @\"--out={ouput}\"]}]}",
                    "models[0].command[1]: unknown placeholder '{ouput}' (did you mean {output}?)");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\", @\"{model}\"]}]}",
                    "models[0].command[1]: uses {model} but the model has no 'model' key");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], @\"adapter\": \"x\"}]}",
                    "models[0].adapter: 'adapter' is an lm-worker setting");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], @\"batchsize\": 4}]}",
                    "models[0].batchsize: unknown key 'batchsize' (did you mean 'batch_size'?)");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], @\"input\": \"x\"}]}",
                    "models[0].input: unknown key 'input' here (it is a top-level key");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"batch_size\": @\"8\"}]}",
                    "models[0].batch_size: must be an integer, not a string");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"batch_size\": @4.0}]}",
                    "models[0].batch_size: must be an integer, not a number");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"max_length\": @0}]}",
                    "models[0].max_length: 0 is out of range");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"weight\": @0}]}", "models[0].weight: 0 is out of range (0, 1e+06]");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"retries\": @99}]}",
                    "models[0].retries: 99 is out of range [0, 31]");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"timeout_s\": @-1}]}",
                    "models[0].timeout_s: -1 is out of range [0, 1e+06]");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"tta\": [\"identity\", @\"identity\"]}]}",
                    "models[0].tta[1]: duplicate variant 'identity'");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"tta\": @[]}]}", "models[0].tta: needs at least one variant");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"tta\": [@\"swapab\"]}]}",
                    "models[0].tta[0]: unknown variant 'swapab' (did you mean 'swap_ab'?");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"env\": {\"A\": \"1\", \"B\": @2}}]}",
                    "models[0].env.B: must be a string, not an integer");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"env\": {@\"CUDA_VISIBLE_DEVICES\": \"1\"}}]}",
                    "models[0].env.CUDA_VISIBLE_DEVICES: 'CUDA_VISIBLE_DEVICES' is set by orchestrate");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"w\"], \"env\": {@\"A=B\": \"1\"}}]}",
                    "models[0].env.A=B: 'A=B' is not a valid environment variable name");
}

TEST(test_positions_in_tricky_text) {
    // Strings full of JSON punctuation before the error must not confuse the locator.
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"command\": [\"sh\", \"-c\", \"echo '{\\\"k\\\": [1, {2}]}' ,:\"],\n"
                         "  \"env\": {\"X\": \"}]\\\"\"}, \"weight\": @-3}]}",
                    "models[0].weight: -3 is out of range (0, 1e+06]");
    // A key written with an escape is found by its decoded name.
    expect_error_at("{\"input\": \"in.csv\", \"out\\u0070ut\": @5, " ONE_MODEL "}", "output: must be a string, not an integer");
    // Columns count characters, not bytes: the é and the emoji count one each.
    expect_error_at("{\"input\": \"donn\xc3\xa9\x65s \xf0\x9f\x98\x80.csv\", \"output\": \"o.csv\", \"cpu_workers\": @-2, " ONE_MODEL "}",
                    "cpu_workers: -2 is out of range");
    // The same key at another depth, and models on one line: the right element is named.
    expect_error_at(HEAD "\"models\": [{\"name\": \"x\", \"command\": [\"w\"]}, {\"name\": \"y\", \"command\": [\"w\"]}, "
                         "{\"name\": \"z\", \"command\": [\"w\"], \"tta\": [\"identity\", @\"flop\"]}]}",
                    "models[2].tta[1]: unknown variant 'flop'");
    // A long value is cut in the message, and control characters are not printed raw.
    expect_error_at(HEAD "\"gpus\": @\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\n\", " ONE_MODEL "}",
                    "gpus: unknown value 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

TEST(test_jansson_columns_agree) {
    // Our columns must match jansson's for the same character: both count UTF-8 characters.
    const char *text = "{\"input\": \"\xc3\xa9\xc3\xa9\", x}";
    plan_t p;
    err_t err = {0};
    EXPECT(load(&p, text, &err) == -1);
    int line, col;
    plan_line_col(text, strlen(text), (size_t)(strchr(text, 'x') - text), &line, &col);
    char want[600];
    snprintf(want, sizeof want, "%s:%d:%d:", plan_path, line, col);
    EXPECT_STR_CONTAINS(err.msg, want);
}

TEST(test_defaults) {
    plan_t p;
    err_t err = {0};
    EXPECT(load(&p, HEAD ONE_MODEL "}", &err) == 0);
    char want[600];
    snprintf(want, sizeof want, "%s/orchestrate-work", tmpdir);
    EXPECT(strcmp(p.work_dir, want) == 0);
    snprintf(want, sizeof want, "%s/in.csv", tmpdir);
    EXPECT(strcmp(p.input, want) == 0);
    EXPECT(strcmp(p.base_dir, tmpdir) == 0);
    EXPECT(p.n_labels == 3 && strcmp(p.labels[0], "winner_model_a") == 0 && strcmp(p.labels[1], "winner_model_b") == 0 &&
           strcmp(p.labels[2], "winner_tie") == 0);
    EXPECT(p.gpus_auto == 1 && p.use_cpu == 0 && p.n_gpus == 0 && p.cpu_workers == 1);
    EXPECT(p.ensemble == ENSEMBLE_MEAN && p.kill_grace_s == 5);
    EXPECT(p.mem_tolerance_mib == 64 && p.mem_wait_s == 10 && p.mem_leak == MEM_LEAK_FAIL);
    EXPECT(p.lm_worker_path == NULL);
    EXPECT(p.n_models == 1);
    plan_model_t *m = &p.models[0];
    EXPECT(strcmp(m->name, "m") == 0 && !m->is_lm_worker && m->n_command == 1 && strcmp(m->command[0], "w") == 0);
    EXPECT(m->max_length == 1024 && m->batch_size == 8 && m->weight == 1 && m->retries == 2 && m->timeout_s == 0);
    EXPECT(m->n_tta == 1 && m->tta[0] == TTA_IDENTITY && m->n_env == 0 && m->threads == 0);
    EXPECT(m->model == NULL && m->dtype == NULL && m->template_name == NULL);
    EXPECT(m->settings_key && strlen(m->settings_key) == 32);
    plan_free(&p);
    // null means "the default".
    EXPECT(load(&p, HEAD "\"work_dir\": null, \"labels\": null, " ONE_MODEL "}", &err) == 0);
    EXPECT(p.n_labels == 3 && strstr(p.work_dir, "orchestrate-work"));
    plan_free(&p);
}

TEST(test_full_plan_values) {
    char text[4096], dir[512], lm[1024];
    snprintf(dir, sizeof dir, "%s/models", tt_dir("ORCH_FIXTURES"));
    char *real = realpath(dir, NULL);
    EXPECT(real != NULL);
    if (!real) return;
    snprintf(lm, sizeof lm,
             "{\"name\": \"llama\", \"worker\": \"lm-worker\", \"model\": \"%s/tiny-llama\",\n"
             " \"adapter\": \"%s/tiny-llama-lora\", \"dtype\": \"bf16\", \"quant\": \"int8\", \"template\": \"turns\",\n"
             " \"truncation\": \"keep_end\", \"threads\": 3, \"args\": [\"--seed\", \"\"], \"max_length\": 512,\n"
             " \"batch_size\": 2, \"weight\": 0.5, \"tta\": [\"swap_ab\", \"identity\"], \"timeout_s\": 60.5,\n"
             " \"retries\": 0, \"env\": {\"OMP_NUM_THREADS\": \"3\", \"X\": \"\"}}",
             real, real);
    free(real);
    snprintf(text, sizeof text,
             "{\"input\": \"/data/test.csv\", \"output\": \"sub/submission.csv\", \"work_dir\": \"w\",\n"
             " \"labels\": [\"a\", \"b\"], \"gpus\": [1, 0], \"cpu_workers\": 4, \"kill_grace_s\": 0.5,\n"
             " \"ensemble\": {\"method\": \"logit_mean\"}, \"memory\": {\"tolerance_mib\": 128, \"wait_s\": 3, \"on_leak\": \"warn\"},\n"
             " \"models\": [%s,\n"
             "  {\"name\": \"py\", \"command\": [\"python3\", \"predict.py\", \"{input}\", \"{output}\", \"--bs={batch_size}\", \"{model}\"],\n"
             "   \"model\": \"org/hub-model\"}]}",
             lm);
    plan_t p;
    err_t err = {0};
    EXPECT_MSG(load(&p, text, &err) == 0, "%s", err.msg);
    if (p.n_models != 2) return;
    char want[600];
    EXPECT(strcmp(p.input, "/data/test.csv") == 0);
    snprintf(want, sizeof want, "%s/sub/submission.csv", tmpdir);
    EXPECT(strcmp(p.output, want) == 0);
    snprintf(want, sizeof want, "%s/w", tmpdir);
    EXPECT(strcmp(p.work_dir, want) == 0);
    EXPECT(p.n_labels == 2 && p.n_gpus == 2 && p.gpus[0] == 1 && p.gpus[1] == 0 && !p.gpus_auto && !p.use_cpu);
    EXPECT(p.cpu_workers == 4 && p.kill_grace_s == 0.5 && p.ensemble == ENSEMBLE_LOGIT_MEAN);
    EXPECT(p.mem_tolerance_mib == 128 && p.mem_wait_s == 3 && p.mem_leak == MEM_LEAK_WARN);
    plan_model_t *m = &p.models[0];
    EXPECT(m->is_lm_worker && m->command == NULL && strstr(m->model, "/tiny-llama") && strstr(m->adapter, "tiny-llama-lora"));
    EXPECT(strcmp(m->dtype, "bf16") == 0 && strcmp(m->quant, "int8") == 0 && strcmp(m->template_name, "turns") == 0);
    EXPECT(strcmp(m->truncation, "keep_end") == 0 && m->threads == 3 && m->n_extra_args == 2 &&
           strcmp(m->extra_args[1], "") == 0);
    EXPECT(m->max_length == 512 && m->batch_size == 2 && m->weight == 0.5 && m->timeout_s == 60.5 && m->retries == 0);
    EXPECT(m->n_tta == 2 && m->tta[0] == TTA_SWAP_AB && m->tta[1] == TTA_IDENTITY);
    EXPECT(m->n_env == 2 && strcmp(m->env[0], "OMP_NUM_THREADS=3") == 0 && strcmp(m->env[1], "X=") == 0);
    m = &p.models[1];
    EXPECT(!m->is_lm_worker && m->n_command == 6 && strcmp(m->command[2], "{input}") == 0);
    EXPECT(strcmp(m->model, "org/hub-model") == 0);   // not next to the plan: passed verbatim
    plan_free(&p);
}

TEST(test_lm_worker_paths_checked) {
    char text[2048];
    snprintf(text, sizeof text, HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": @\"no-such-dir\"}]}");
    char want[700];
    snprintf(want, sizeof want, "models[0].model: '%s/no-such-dir' is not a directory", tmpdir);
    expect_error_at(text, want);
    expect_error_at(HEAD "\"models\": [@{\"name\": \"a\", \"worker\": \"lm-worker\"}]}",
                    "models[0]: missing required key 'model' (the checkpoint directory lm-worker loads)");
    // Relative model paths resolve against the plan's directory.
    char sub[512];
    snprintf(sub, sizeof sub, "%s/ckpt", tmpdir);
    mkdir(sub, 0777);
    const char *ok = HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\"}]}";
    plan_t p;
    err_t err = {0};
    EXPECT_MSG(load(&p, ok, &err) == 0, "%s", err.msg);
    if (p.n_models == 1) EXPECT(strcmp(p.models[0].model, sub) == 0);
    plan_free(&p);
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"tokenizer\": @\"ckpt\"}]}",
                    "models[0].tokenizer:");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"template\": @\"chatml\"}]}",
                    "models[0].template: 'chatml' is neither a built-in template");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"template\": @\"t/x.json\"}]}",
                    "models[0].template:");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"dtype\": @\"f16\"}]}",
                    "models[0].dtype: unknown dtype 'f16'");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"quant\": @\"int4\"}]}",
                    "models[0].quant: unknown quantization 'int4'");
    expect_error_at(HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"truncation\": @\"middle\"}]}",
                    "models[0].truncation: unknown truncation policy 'middle'");
    // A template file next to the plan is resolved.
    char tpl[600];
    snprintf(tpl, sizeof tpl, "%s/mytpl.json", tmpdir);
    write_file(tpl, "{}", 0644);
    EXPECT(load(&p, HEAD "\"models\": [{\"name\": \"a\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"template\": \"mytpl.json\"}]}",
                &err) == 0);
    if (p.n_models == 1) EXPECT(strcmp(p.models[0].template_name, tpl) == 0);
    plan_free(&p);
}

TEST(test_lists_match_lm_worker) {
    // plan.c checks truncation and template names before any worker runs; lm-worker owns them.
    int n = 0;
    for (int i = 0; template_builtin_names[i]; i++, n++) {
        int found = 0;
        for (int j = 0; plan_template_builtins[j]; j++) found |= strcmp(plan_template_builtins[j], template_builtin_names[i]) == 0;
        EXPECT_MSG(found, "lm-worker template '%s' is missing from plan_template_builtins", template_builtin_names[i]);
    }
    int m = 0;
    while (plan_template_builtins[m]) m++;
    EXPECT(n == m);
    for (int i = 0; plan_truncations[i]; i++) {
        trunc_policy_t t;
        err_t err = {0};
        EXPECT(trunc_policy_parse(plan_truncations[i], &t, &err) == 0);
        EXPECT(strcmp(trunc_policy_name(t), plan_truncations[i]) == 0);
    }
}

TEST(test_relative_paths_from_other_cwd) {
    // The plan lives in tmpdir/sub; we load it from another directory by a relative path.
    char sub[512], path[600], old[1024];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    mkdir(sub, 0777);
    snprintf(path, sizeof path, "%s/plan.json", sub);
    write_file(path, "{\"input\": \"data/in.csv\", \"output\": \"../out.csv\", \"work_dir\": \"/abs/w\",\n"
                     " \"models\": [{\"name\": \"m\", \"command\": [\"w\"]}]}\n", 0644);
    EXPECT(getcwd(old, sizeof old) != NULL);
    EXPECT(chdir(tmpdir) == 0);
    plan_t p;
    err_t err = {0};
    EXPECT_MSG(plan_load(&p, "sub/plan.json", &err) == 0, "%s", err.msg);
    char want[700];
    snprintf(want, sizeof want, "%s/data/in.csv", sub);
    EXPECT(p.input && strcmp(p.input, want) == 0);
    snprintf(want, sizeof want, "%s/../out.csv", sub);
    EXPECT(p.output && strcmp(p.output, want) == 0);
    EXPECT(p.work_dir && strcmp(p.work_dir, "/abs/w") == 0);
    EXPECT(p.path && strcmp(p.path, "sub/plan.json") == 0);
    // --work-dir is relative to the current directory, not to the plan.
    plan_set_work_dir(&p, "wd");
    snprintf(want, sizeof want, "%s/wd", tmpdir);
    EXPECT(strcmp(p.work_dir, want) == 0);
    plan_free(&p);
    // Errors from plan_load name the file as given.
    write_file(path, "{\"input\": \"x\", \"output\": \"y\", \"models\": 3}", 0644);
    EXPECT(plan_load(&p, "sub/plan.json", &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "sub/plan.json:1:41: models: must be an array");
    EXPECT(plan_load(&p, "sub/none.json", &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "sub/none.json");
    EXPECT(chdir(old) == 0);
}

static char *key_of(const char *model_json) {
    char text[2048];
    snprintf(text, sizeof text, HEAD "\"models\": [%s]}", model_json);
    plan_t p;
    err_t err = {0};
    if (load(&p, text, &err) != 0) {
        fprintf(stderr, "  %s\n", err.msg);
        return xstrdup("error");
    }
    char *k = xstrdup(p.models[0].settings_key);
    plan_free(&p);
    return k;
}

TEST(test_settings_key) {
    const char *base = "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"A\": \"1\", \"B\": \"2\"}}";
    char *k0 = key_of(base);
    // Settings that do not change outputs keep the key (also the env's order and the name).
    const char *same[] = {
        "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"B\": \"2\", \"A\": \"1\"}}",
        "{\"name\": \"other\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"weight\": 3,"
        " \"retries\": 5, \"timeout_s\": 9, \"batch_size\": 1, \"tta\": [\"swap_ab\"]}",
    };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char *k = key_of(same[i]);
        EXPECT_MSG(strcmp(k, k0) == 0, "case %zu", i);
        free(k);
    }
    const char *differ[] = {
        "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\", \"x\"], \"env\": {\"A\": \"1\", \"B\": \"2\"}}",
        "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"A\": \"1\", \"B\": \"3\"}}",
        "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"A\": \"1\"}}",
        "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"max_length\": 9}",
        "{\"name\": \"m\", \"command\": [\"w\", \"{batch_size}\"], \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"model\": \"hub/x\"}",
        "{\"name\": \"m\", \"command\": [\"w{batch_size}\"], \"env\": {\"A\": \"1\", \"B\": \"2\"}}",
    };
    for (size_t i = 0; i < sizeof differ / sizeof *differ; i++) {
        char *k = key_of(differ[i]);
        EXPECT_MSG(strcmp(k, k0) != 0 && strcmp(k, "error") != 0, "case %zu", i);
        free(k);
    }
    free(k0);
    // lm-worker settings.
    char sub[512];
    snprintf(sub, sizeof sub, "%s/ckpt", tmpdir);
    mkdir(sub, 0777);
    char *l0 = key_of("{\"name\": \"m\", \"worker\": \"lm-worker\", \"model\": \"ckpt\"}");
    const char *lm_differ[] = {"\"dtype\": \"fp32\"", "\"quant\": \"int8\"", "\"template\": \"plain\"",
                               "\"truncation\": \"tail\"", "\"args\": [\"--x\"]", "\"adapter\": \"ckpt\""};
    for (size_t i = 0; i < sizeof lm_differ / sizeof *lm_differ; i++) {
        char mj[512];
        snprintf(mj, sizeof mj, "{\"name\": \"m\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", %s}", lm_differ[i]);
        char *k = key_of(mj);
        EXPECT_MSG(strcmp(k, l0) != 0 && strcmp(k, "error") != 0, "lm case %zu", i);
        free(k);
    }
    char *l1 = key_of("{\"name\": \"m\", \"worker\": \"lm-worker\", \"model\": \"ckpt\", \"threads\": 2, \"batch_size\": 64}");
    EXPECT(strcmp(l0, l1) == 0);
    free(l0), free(l1);
}

TEST(test_gpus_override) {
    plan_t p;
    err_t err = {0};
    EXPECT(load(&p, HEAD "\"gpus\": [3], " ONE_MODEL "}", &err) == 0);
    EXPECT(plan_apply_gpus_override(&p, "cpu", &err) == 0);
    EXPECT(p.use_cpu == 1 && p.gpus_auto == 0 && p.n_gpus == 0);
    EXPECT(plan_apply_gpus_override(&p, "0,2,10", &err) == 0);
    EXPECT(p.use_cpu == 0 && p.gpus_auto == 0 && p.n_gpus == 3 && p.gpus[0] == 0 && p.gpus[1] == 2 && p.gpus[2] == 10);
    EXPECT(plan_apply_gpus_override(&p, "auto", &err) == 0);
    EXPECT(p.gpus_auto == 1 && p.use_cpu == 0 && p.n_gpus == 0);
    EXPECT(plan_apply_gpus_override(&p, "1", &err) == 0);
    EXPECT(p.n_gpus == 1 && p.gpus[0] == 1);
    const char *bad[] = {"", "0,,1", "a", "0,", "-1", "1,1", "99999", " 1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        EXPECT_MSG(plan_apply_gpus_override(&p, bad[i], &err) == -1, "'%s'", bad[i]);
        EXPECT_STR_CONTAINS(err.msg, "--gpus");
    }
    EXPECT(p.n_gpus == 1 && p.gpus[0] == 1);   // failures leave the plan unchanged
    plan_free(&p);
}

TEST(test_lm_worker_lookup) {
    char dir[512], bin[600], plan[600], text[2048];
    snprintf(dir, sizeof dir, "%s/bin", tmpdir);
    mkdir(dir, 0777);
    snprintf(text, sizeof text, "%s/ckpt", tmpdir);
    mkdir(text, 0777);
    snprintf(plan, sizeof plan, "%s/lm.json", tmpdir);
    write_file(plan, HEAD "\"models\": [{\"name\": \"c\", \"command\": [\"w\"]},\n"
                     "  {\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"ckpt\"}]}", 0644);
    char *old_path = getenv("PATH") ? xstrdup(getenv("PATH")) : xstrdup("/usr/bin");
    plan_t p;
    err_t err = {0};
    // Not next to the test binary, not on PATH.
    setenv("PATH", dir, 1);
    EXPECT(plan_load(&p, plan, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "models[1] ('lm') uses worker \"lm-worker\"");
    EXPECT_STR_CONTAINS(err.msg, "on PATH");
    // A non-executable file does not count; an executable one on PATH does.
    snprintf(bin, sizeof bin, "%s/lm-worker", dir);
    write_file(bin, "#!/bin/sh\nexit 0\n", 0644);
    EXPECT(plan_load(&p, plan, &err) == -1);
    chmod(bin, 0755);
    char path_env[1200];
    snprintf(path_env, sizeof path_env, "/nonexistent:%s", dir);
    setenv("PATH", path_env, 1);
    EXPECT_MSG(plan_load(&p, plan, &err) == 0, "%s", err.msg);
    EXPECT(p.lm_worker_path && strcmp(p.lm_worker_path, bin) == 0);
    plan_free(&p);
    // No lm-worker model: nothing is looked up.
    setenv("PATH", "/nonexistent", 1);
    write_file(plan, HEAD ONE_MODEL "}", 0644);
    EXPECT(plan_load(&p, plan, &err) == 0);
    EXPECT(p.lm_worker_path == NULL);
    plan_free(&p);
    setenv("PATH", old_path, 1);
    free(old_path);
}

TEST(test_suggest) {
    const char *names[] = {"models", "input", "output", "labels", NULL};
    EXPECT(pf_suggest("modles", names) && strcmp(pf_suggest("modles", names), "models") == 0);
    EXPECT(pf_suggest("ouptut", names) && strcmp(pf_suggest("ouptut", names), "output") == 0);
    EXPECT(pf_suggest("xyz", names) == NULL);
    EXPECT(pf_suggest("", names) == NULL);
}

/* After the last test: remove the temp dir. */
static int teardown(void) { return tt_rm_tree(tmpdir); }

/* deadline (seconds or a duration string) and fallback (one probability per label). */
TEST(test_deadline_fallback) {
    plan_t p;
    err_t err = {0};
    EXPECT(load(&p, HEAD ONE_MODEL "}", &err) == 0);
    EXPECT(p.deadline_s == 0 && p.fallback && p.fallback[0] == 1.0 / 3 && p.fallback[2] == 1.0 / 3);
    plan_free(&p);
    static const struct { const char *spec; double s; } ok[] = {
        {"\"8h30m\"", 30600}, {"\"45m\"", 2700}, {"\"90s\"", 90}, {"\"1h0m5s\"", 3605}, {"\"1.5h\"", 5400},
        {"\"120\"", 120}, {"32400", 32400}, {"0.5", 0.5},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, HEAD "\"deadline\": %s, " ONE_MODEL "}", ok[i].spec);
        EXPECT_MSG(load(&p, text, &err) == 0, "%s: %s", ok[i].spec, err.msg);
        EXPECT_MSG(p.deadline_s == ok[i].s, "%s: %g", ok[i].spec, p.deadline_s);
        plan_free(&p);
    }
    expect_error_at(HEAD "\"deadline\": @\"8x\", " ONE_MODEL "}", "deadline: '8x': unknown unit 'x' (use h, m or s)");
    expect_error_at(HEAD "\"deadline\": @\"30m8h\", " ONE_MODEL "}", "deadline: '30m8h': units must come once each, in the order h, m, s");
    expect_error_at(HEAD "\"deadline\": @\"1h30\", " ONE_MODEL "}", "deadline: '1h30': a number after a unit needs its own unit");
    expect_error_at(HEAD "\"deadline\": @\"0s\", " ONE_MODEL "}", "deadline: '0s': the deadline must be more than 0 seconds");
    expect_error_at(HEAD "\"deadline\": @-5, " ONE_MODEL "}", "deadline: -5 is out of range (0, ");
    expect_error_at(HEAD "\"deadline\": @true, " ONE_MODEL "}", "deadline: expected seconds or a duration");
    expect_error_at(HEAD "\"fallback\": @[0.5, 0.5], " ONE_MODEL "}", "fallback: expected a list of 3 probabilities");
    expect_error_at(HEAD "\"fallback\": [0.5, @2, 0], " ONE_MODEL "}", "fallback[1]: expected a probability in [0, 1] for label 'winner_model_b'");
    expect_error_at(HEAD "\"fallback\": @[0.5, 0.4, 0.4], " ONE_MODEL "}", "fallback: the probabilities sum to 1.3, not 1");
    EXPECT(load(&p, HEAD "\"fallback\": [0.5, 0.3, 0.2], " ONE_MODEL "}", &err) == 0);
    EXPECT(p.fallback[0] == 0.5 && p.fallback[1] == 0.3 && p.fallback[2] == 0.2);
    plan_free(&p);
}

TEST_MAIN_WITH(setup, teardown,
               test_brief_example_position, test_top_level_errors, test_numbers_bounded, test_invalid_json_position,
               test_labels_gpus_ensemble_memory, test_model_errors, test_positions_in_tricky_text,
               test_jansson_columns_agree, test_defaults, test_full_plan_values, test_lm_worker_paths_checked,
               test_lists_match_lm_worker, test_relative_paths_from_other_cwd, test_settings_key,
               test_gpus_override, test_lm_worker_lookup, test_suggest, test_deadline_fallback)

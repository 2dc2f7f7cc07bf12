/* test_cmd_logits.c: `lm-worker logits` and `lm-worker info` as a user runs them: stdin/stdout
 * redirected to files in a forked child that calls cmd_logits / cmd_info, so the exit codes
 * (0, 64 usage, 65 bad input) and the output format are checked end to end without depending on
 * main.c.
 */
#include <fcntl.h>
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cmds.h"
#include "tinytest.h"

#define FMT(buf, ...) EXPECT(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))
#define TOL 1e-4

static char tmp[] = "/tmp/test_cmd_logits_XXXXXX";
static char in_path[256], out_path[256], err_path[256];

static void cleanup(void) {
    unlink(in_path);
    unlink(out_path);
    unlink(err_path);
    rmdir(tmp);
}

/* Run cmd(argv) in a child with stdin = text, stdout/stderr to files. Returns the exit code. */
static int run(int (*cmd)(int, char **), const char *text, char **argv) {
    if (!in_path[0]) {
        ASSERT(mkdtemp(tmp) != NULL);
        snprintf(in_path, sizeof in_path, "%s/in", tmp);
        snprintf(out_path, sizeof out_path, "%s/out", tmp);
        snprintf(err_path, sizeof err_path, "%s/err", tmp);
        atexit(cleanup);
    }
    FILE *f = fopen(in_path, "w");
    fputs(text, f);
    fclose(f);
    int argc = 0;
    while (argv[argc]) argc++;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int i = open(in_path, O_RDONLY), o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644),
            e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(i, 0), dup2(o, 1), dup2(e, 2);
        int rc = cmd(argc, argv);
        fflush(stdout);
        _exit(rc);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

TEST(logits_match_goldens) {
    char model[512], golden[512];
    FMT(model, "%s/models/tiny-llama", tt_dir("ORCH_FIXTURES"));
    FMT(golden, "%s/golden.json", model);
    json_t *g = json_load_file(golden, 0, NULL), *seqs = json_object_get(g, "sequences");
    EXPECT(json_array_size(seqs) == 9);
    /* every golden sequence as a line, plus a blank line and an "id" to echo */
    size_t cap = 1 << 16, at = 0;
    char *text = malloc(cap);
    at += (size_t)snprintf(text + at, cap - at, "\n");
    for (size_t s = 0; s < json_array_size(seqs); s++) {
        char *ids = json_dumps(json_object_get(json_array_get(seqs, s), "input_ids"), JSON_COMPACT);
        at += (size_t)snprintf(text + at, cap - at, "{\"id\":%zu,\"input_ids\":%s}\n", s, ids);
        free(ids);
    }
    char *argv[] = {"logits", "--model", model, "--device", "cpu", "--threads", "2", NULL};
    EXPECT(run(cmd_logits, text, argv) == 0);
    char *out = slurp(out_path), *line = out, *nl;
    size_t s = 0;
    for (; (nl = strchr(line, '\n')); line = nl + 1, s++) {
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, NULL), *lg = json_object_get(j, "logits");
        json_t *ref = json_object_get(json_array_get(seqs, s), "logits");
        EXPECT(j && json_integer_value(json_object_get(j, "id")) == (json_int_t)s && json_array_size(lg) == 3);
        for (size_t l = 0; l < json_array_size(ref); l++) {
            double r = json_number_value(json_array_get(ref, l)), v = json_number_value(json_array_get(lg, l));
            EXPECT_MSG(fabs(v - r) <= TOL * (1 + fabs(r)), "sequence %zu label %zu: %.9g vs %.9g", s, l, v, r);
        }
        json_decref(j);
    }
    EXPECT(s == 9);
    free(out);
    free(text);
    json_decref(g);
}

TEST(logits_errors_and_exit_codes) {
    char model[512], *e;
    FMT(model, "%s/models/tiny-llama", tt_dir("ORCH_FIXTURES"));
    char *no_model[] = {"logits", NULL};
    EXPECT(run(cmd_logits, "", no_model) == 64);
    e = slurp(err_path);
    EXPECT_STR_CONTAINS(e, "--model is required");
    EXPECT_STR_CONTAINS(e, "--threads N");
    EXPECT_STR_CONTAINS(e, "(default: auto)");
    free(e);
    char *bad_opt[] = {"logits", "--model", model, "--frobnicate", NULL};
    EXPECT(run(cmd_logits, "", bad_opt) == 64);
    char *bad_threads[] = {"logits", "--model", model, "--threads", "many", NULL};
    EXPECT(run(cmd_logits, "", bad_threads) == 64);
    char *bad_device[] = {"logits", "--model", model, "--device", "tpu", NULL};
    EXPECT(run(cmd_logits, "", bad_device) == 64);
    char *cpu_bf16[] = {"logits", "--model", model, "--device", "cpu", "--dtype", "bf16", NULL};
    EXPECT(run(cmd_logits, "", cpu_bf16) == 64);
    char *help[] = {"logits", "--help", NULL};
    EXPECT(run(cmd_logits, "", help) == 0);
    char *ok[] = {"logits", "--model", model, "--device", "cpu", NULL};
    EXPECT(run(cmd_logits, "{\"input_ids\":[1,2]}\n{\"input_ids\":[1,\"x\"]}\n", ok) == 65);
    e = slurp(err_path);
    EXPECT_STR_CONTAINS(e, "stdin:2: input_ids[1]");
    free(e);
    EXPECT(run(cmd_logits, "{\"input_ids\":[]}\n", ok) == 65);
    EXPECT(run(cmd_logits, "not json\n", ok) == 65);
    EXPECT(run(cmd_logits, "{\"input_ids\":[99999]}\n", ok) == 65);
    char missing[512];
    FMT(missing, "%s/models/no-such-model", tt_dir("ORCH_FIXTURES"));
    char *no_dir[] = {"logits", "--model", missing, "--device", "cpu", NULL};
    EXPECT(run(cmd_logits, "", no_dir) == 65);
    e = slurp(err_path);
    EXPECT_STR_CONTAINS(e, "no-such-model/config.json");
    free(e);
}

TEST(info_reports_config_and_memory) {
    char model[512], adapter[512];
    FMT(model, "%s/models/tiny-llama", tt_dir("ORCH_FIXTURES"));
    FMT(adapter, "%s/models/tiny-llama-lora", tt_dir("ORCH_FIXTURES"));
    char *argv[] = {"info", "--model", model, "--adapter", adapter, "--batch-tokens", "4096", NULL};
    EXPECT(run(cmd_info, "", argv) == 0);
    char *o = slurp(out_path);
    EXPECT_STR_CONTAINS(o, "LlamaForSequenceClassification (model_type llama)");
    EXPECT_STR_CONTAINS(o, "attention heads    4 (key/value heads 2, head_dim 32)");
    EXPECT_STR_CONTAINS(o, "7 files, 30 tensors, 676096 parameters; dtypes BF16 x 30");
    EXPECT_STR_CONTAINS(o, "llama3 (factor 8");
    EXPECT_STR_CONTAINS(o, "weights memory     fp32 2.6 MiB");
    EXPECT_STR_CONTAINS(o, "4096 tokens per batch");
    EXPECT_STR_CONTAINS(o, "r 4, lora_alpha 8, scale 2");
    free(o);
    char gemma[512];
    FMT(gemma, "%s/models/tiny-gemma2", tt_dir("ORCH_FIXTURES"));
    char *g[] = {"info", "--model", gemma, NULL};
    EXPECT(run(cmd_info, "", g) == 0);
    o = slurp(out_path);
    EXPECT_STR_CONTAINS(o, "sliding window     16 tokens on 2 of 4 layers (layer 0 slides)");
    EXPECT_STR_CONTAINS(o, "attention softcap  50");
    EXPECT_STR_CONTAINS(o, "norm               x * (1 + w)");
    free(o);
    char *none[] = {"info", NULL};
    EXPECT(run(cmd_info, "", none) == 64);
    char *bad[] = {"info", "--model", model, "--max-length", "0", NULL};
    EXPECT(run(cmd_info, "", bad) == 64);
    char *wrong[] = {"info", "--model", adapter, NULL};
    EXPECT(run(cmd_info, "", wrong) == 65);
}

TEST_MAIN(logits_match_goldens, logits_errors_and_exit_codes, info_reports_config_and_memory)

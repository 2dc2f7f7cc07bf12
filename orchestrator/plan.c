/* plan.c: load plan.json into a validated plan_t (docs/plan.md is the user-facing reference).
 *
 * Validation is strict on purpose: a plan drives hours of GPU time, so an unknown key (a typo),
 * a wrong type or an impossible value is an error that names the JSON path and line:column
 * before anything runs, never a silent default. Relative paths resolve against the plan file's
 * directory, so a plan works from any current directory. Positions come from plan_fields.c.
 *
 * It deliberately does not read the input CSV or touch the work directory: main.c and
 * stage.c do that, after CLI overrides (--gpus, --work-dir) have been applied. Finding the
 * lm-worker executable and the CLI overrides live in plan_runtime.c.
 */
#include <math.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "budget.h"
#include "digest.h"
#include "json_util.h"
#include "orch.h"
#include "plan_fields.h"
#include "spawn.h"

static const char *const TOP_KEYS[] = {"input", "output", "work_dir", "labels", "gpus",
                                       "cpu_workers", "models", "ensemble", "kill_grace_s",
                                       "memory", "executor", "slurm", "deadline", "fallback", NULL};
static const char *const MODEL_KEYS[] = {"name", "command", "worker", "model", "adapter",
                                         "tokenizer", "max_length", "batch_size", "dtype",
                                         "quant", "template", "truncation", "threads", "args",
                                         "weight", "tta", "timeout_s", "retries", "env",
                                         "depends_on", NULL};
/* Settings only lm-worker understands; a command worker takes its settings in its argv. */
static const char *const LM_ONLY_KEYS[] = {"adapter", "tokenizer", "dtype", "quant", "template",
                                           "truncation", "threads", "args", NULL};
static const char *const MEMORY_KEYS[] = {"tolerance_mib", "wait_s", "on_leak", NULL};
static const char *const ENSEMBLE_KEYS[] = {"method", NULL};
static const char *const SLURM_KEYS[] = {"srun_args", NULL};
const char *const executor_names[] = {"local", "slurm", NULL};

static const char *const WORKERS[] = {"lm-worker", NULL};
static const char *const ENSEMBLE_NAMES[] = {"mean", "logit_mean", "geometric", NULL};
static const char *const LEAK_NAMES[] = {"fail", "kill", "warn", NULL};
static const char *const DTYPES[] = {"auto", "fp32", "bf16", "fp16", NULL};
static const char *const QUANTS[] = {"none", "int8", NULL};
const char *const tta_names[] = {"identity", "swap_ab", NULL};
const char *tta_name(tta_t t) {
    ASSERT(t == TTA_IDENTITY || t == TTA_SWAP_AB);
    return tta_names[t];
}
/* These mirror lm-worker's trunc_policy_parse and template_builtin_names (workers/lm/rows/
 * rows.h); test_plan checks that the lists agree, so they cannot drift apart. */
const char *const plan_truncations[] = {"balanced", "keep_end", "tail", NULL};
const char *const plan_template_builtins[] = {"plain", "gemma-chat", "turns", NULL};

static const char *const DEFAULT_LABELS[] = {"winner_model_a", "winner_model_b", "winner_tie"};

#define MAX_MODEL_NAME 64

/* Upper bounds of the numeric keys (docs/plan.md lists them): far above any real use, and low
 * enough that no conversion (seconds to milliseconds, sums of weights) can overflow. */
#define MAX_WEIGHT 1e6          // weight: (0, 1e6]; 1000 models cannot sum to infinity
#define MAX_TIMEOUT_S 1e6       // timeout_s: [0, 1e6] seconds (11.6 days)
#define MAX_GRACE_S 3600.0      // kill_grace_s and memory.wait_s: [0, 3600] seconds
#define MAX_TOLERANCE_MIB 1e7   // memory.tolerance_mib: [0, 1e7] MiB (10 TiB)

/* 1 when p exists and is a directory (following links), else 0. */
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* 1 when p exists and is a regular file (following links), else 0. */
static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Fail at obj.key unless the path it holds (already resolved) is a directory / regular file. */
static int require_fs(pctx_t *c, const char *key, const char *path, int want_dir) {
    if (want_dir ? is_dir(path) : is_file(path)) return 0;
    char show[80];
    pctx_key(c, key);
    pctx_fail(c, 0, "'%s' is not %s", pf_show(path, show), want_dir ? "a directory" : "a file");
    pctx_pop(c);
    return -1;
}

/* ---------------------------------------------------------------- models */

/* models[i].name: required, at most MAX_MODEL_NAME characters of [A-Za-z0-9._-], not "." or "..",
 * because it names files and jobs. Returns 0, or -1 with the error at the name. */
static int parse_name(pctx_t *c, json_t *jm, plan_model_t *m) {
    if (pf_string(c, jm, "name", 1, &m->name) != 0) return -1;
    pctx_key(c, "name");
    int rc = 0;
    size_t n = strlen(m->name);
    if (n > MAX_MODEL_NAME) rc = pctx_fail(c, 0, "is longer than %d characters", MAX_MODEL_NAME);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char ch = m->name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            rc = pctx_fail(c, 0, "may hold only letters, digits, '.', '_' and '-' (it names files)");
    }
    if (rc == 0 && (strcmp(m->name, ".") == 0 || strcmp(m->name, "..") == 0))
        rc = pctx_fail(c, 0, "'%s' cannot name a file", m->name);
    pctx_pop(c);
    return rc;
}

/* Every "{word}" in a command must be a known placeholder, and {model} needs a `model`. A typo
 * such as {ouput} would otherwise reach the worker verbatim. */
static int check_placeholders(pctx_t *c, const plan_model_t *m) {
    for (int i = 0; i < m->n_command; i++) {
        const char *s = m->command[i];
        for (const char *o = strchr(s, '{'); o; o = strchr(o + 1, '{')) {
            const char *e = o + 1;
            while ((*e >= 'a' && *e <= 'z') || *e == '_') e++;
            if (*e != '}' || e == o + 1) continue;
            char word[64];
            size_t len = (size_t)(e - o - 1);
            if (len >= sizeof word) len = sizeof word - 1;
            memcpy(word, o + 1, len);
            word[len] = '\0';
            int known = 0;
            char list[128] = "";
            for (int k = 0; spawn_placeholders[k]; k++) {
                known |= strcmp(word, spawn_placeholders[k]) == 0;
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s{%s}", k ? " " : "",
                         spawn_placeholders[k]);
            }
            pctx_key(c, "command");
            pctx_index(c, i);
            int rc = 0;
            if (!known) {
                const char *hint = pf_suggest(word, spawn_placeholders);
                rc = pctx_fail(c, 0, "unknown placeholder '{%s}'%s%s%s (known: %s)", word,
                               hint ? " (did you mean {" : "", hint ? hint : "", hint ? "}?)" : "", list);
            } else if (strcmp(word, "model") == 0 && !m->model) {
                rc = pctx_fail(c, 0, "uses {model} but the model has no 'model' key");
            }
            c->depth -= 2;
            if (rc) return rc;
        }
    }
    return 0;
}

/* models[i].tta: a non-empty list of distinct variants; ["identity"] when absent. Returns 0 or -1. */
static int parse_tta(pctx_t *c, json_t *jm, plan_model_t *m) {
    json_t *v = pf_member(jm, "tta");
    m->tta[0] = TTA_IDENTITY;
    m->n_tta = 1;
    if (!v) return 0;
    pctx_key(c, "tta");
    int rc = 0;
    if (!json_is_array(v)) rc = pctx_fail(c, 0, "must be an array of variants, not %s", pf_type_name(v));
    else if (json_array_size(v) == 0) rc = pctx_fail(c, 0, "needs at least one variant");
    m->n_tta = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
        int t = 0;
        pctx_index(c, (int)i);
        rc = pf_enum_value(c, json_array_get(v, i), "variant", tta_names, &t);
        for (int j = 0; rc == 0 && j < m->n_tta; j++)
            if ((int)m->tta[j] == t) rc = pctx_fail(c, 0, "duplicate variant '%s'", tta_names[t]);
        if (rc == 0) m->tta[m->n_tta++] = (tta_t)t;
        pctx_pop(c);
    }
    pctx_pop(c);
    return rc;
}

/* Environment names orchestrate sets itself for every worker, per slot. */
static int env_reserved(const char *k) {
    return strcmp(k, "CUDA_VISIBLE_DEVICES") == 0 || strncmp(k, "ORCHESTRATE_", 12) == 0;
}

/* models[i].env: an object of strings with valid, unreserved names, kept as "NAME=value" in
 * m->env (NULL-terminated). Returns 0, or -1 with the error at the offending key or value. */
static int parse_env(pctx_t *c, json_t *jm, plan_model_t *m) {
    json_t *v = pf_member(jm, "env");
    if (!v) return 0;
    pctx_key(c, "env");
    if (!json_is_object(v)) {
        pctx_fail(c, 0, "must be an object of strings, not %s", pf_type_name(v));
        pctx_pop(c);
        return -1;
    }
    m->env = xcalloc(json_object_size(v) + 1, sizeof *m->env);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char show[80];
        pctx_key(c, key);
        int ok = key[0] != '\0' && !(key[0] >= '0' && key[0] <= '9');
        for (const char *p = key; *p; p++)
            ok &= (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        int rc = 0;
        if (!ok) rc = pctx_fail(c, 1, "'%s' is not a valid environment variable name", pf_show(key, show));
        else if (env_reserved(key)) rc = pctx_fail(c, 1, "'%s' is set by orchestrate for each slot", key);
        else if (!json_is_string(val)) rc = pctx_fail(c, 0, "must be a string, not %s", pf_type_name(val));
        else if (strlen(json_string_value(val)) != json_string_length(val))
            rc = pctx_fail(c, 0, "must not contain NUL characters");
        if (rc) {
            c->depth -= 2;
            return -1;
        }
        size_t n = strlen(key) + json_string_length(val) + 2;
        m->env[m->n_env] = xmalloc(n);
        snprintf(m->env[m->n_env++], n, "%s=%s", key, json_string_value(val));
        pctx_pop(c);
    }
    pctx_pop(c);
    return 0;
}

/* models[i].depends_on: files or folders (resolved against the plan's directory) whose content
 * the resume keys digest; each must exist. Returns 0, or -1 with the error at the element. */
static int parse_depends_on(pctx_t *c, json_t *jm, plan_model_t *m) {
    if (pf_string_list(c, jm, "depends_on", 0, 0, &m->depends_on, &m->n_depends_on) != 0) return -1;
    for (int i = 0; i < m->n_depends_on; i++) {
        char *p = pf_join(c->base_dir, m->depends_on[i]);
        free(m->depends_on[i]);
        m->depends_on[i] = p;
        struct stat st;
        if (stat(p, &st) == 0) continue;
        char show[80];
        pctx_key(c, "depends_on");
        pctx_index(c, i);
        pctx_fail(c, 0, "'%s' does not exist", pf_show(p, show));
        c->depth -= 2;
        return -1;
    }
    return 0;
}

/* lm-worker settings: paths must exist now, not hours later when the stage starts. */
static int parse_lm_settings(pctx_t *c, json_t *jm, plan_model_t *m) {
    if (pf_path(c, jm, "model", 0, &m->model) != 0) return -1;
    if (!m->model) return pctx_fail(c, 0, "missing required key 'model' (the checkpoint directory lm-worker loads)");
    if (require_fs(c, "model", m->model, 1) != 0) return -1;
    if (pf_path(c, jm, "adapter", 0, &m->adapter) != 0) return -1;
    if (m->adapter && require_fs(c, "adapter", m->adapter, 1) != 0) return -1;
    if (pf_path(c, jm, "tokenizer", 0, &m->tokenizer) != 0) return -1;
    if (m->tokenizer && require_fs(c, "tokenizer", m->tokenizer, 0) != 0) return -1;
    int idx = 0;
    if (pf_enum(c, jm, "dtype", "dtype", DTYPES, &idx) != 0) return -1;
    if (pf_member(jm, "dtype")) m->dtype = xstrdup(DTYPES[idx]);
    if (pf_enum(c, jm, "quant", "quantization", QUANTS, &idx) != 0) return -1;
    if (pf_member(jm, "quant")) m->quant = xstrdup(QUANTS[idx]);
    if (pf_enum(c, jm, "truncation", "truncation policy", plan_truncations, &idx) != 0) return -1;
    if (pf_member(jm, "truncation")) m->truncation = xstrdup(plan_truncations[idx]);
    // A template is a built-in name, or a file: resolve it when it looks like a path or names a
    // file next to the plan; otherwise it must be a built-in.
    char *tpl = NULL;
    if (pf_string(c, jm, "template", 0, &tpl) != 0) return -1;
    if (tpl) {
        char *path = pf_join(c->base_dir, tpl);
        int builtin = 0;
        for (int i = 0; plan_template_builtins[i]; i++) builtin |= strcmp(tpl, plan_template_builtins[i]) == 0;
        if (!builtin && (strchr(tpl, '/') || is_file(path))) {
            m->template_name = path, path = NULL;
            if (require_fs(c, "template", m->template_name, 0) != 0) {
                free(tpl);
                return -1;
            }
        } else if (builtin) {
            m->template_name = xstrdup(tpl);
        } else {
            char show[80];
            pctx_key(c, "template");
            pctx_fail(c, 0, "'%s' is neither a built-in template (plain, gemma-chat, turns) nor a file",
                      pf_show(tpl, show));
            pctx_pop(c);
            free(path), free(tpl);
            return -1;
        }
        free(path), free(tpl);
    }
    if (pf_int(c, jm, "threads", 0, 4096, &m->threads) != 0) return -1;
    return pf_string_list(c, jm, "args", 0, 1, &m->extra_args, &m->n_extra_args);
}

/* A digest of every setting that can change a model's outputs. Deliberately left out: weight
 * (applied after), retries and timeout_s (how, not what), batch_size (a batch only groups
 * rows; the retry logic halves it, and resumed work must survive that) and threads. */
static char *settings_key(const plan_model_t *m) {
    digest_t d;
    digest_init(&d);
    digest_field(&d, "version", "orchestrate-settings-1");
    digest_field(&d, "worker", m->is_lm_worker ? "lm-worker" : "command");
    for (int i = 0; i < m->n_command; i++) digest_field(&d, "argv", m->command[i]);
    digest_field(&d, "model", m->model);
    digest_field(&d, "adapter", m->adapter);
    digest_field(&d, "tokenizer", m->tokenizer);
    digest_field(&d, "dtype", m->dtype);
    digest_field(&d, "quant", m->quant);
    digest_field(&d, "template", m->template_name);
    digest_field(&d, "truncation", m->truncation);
    char num[32];
    snprintf(num, sizeof num, "%d", m->max_length);
    digest_field(&d, "max_length", num);
    for (int i = 0; i < m->n_extra_args; i++) digest_field(&d, "arg", m->extra_args[i]);
    // The environment is a set: digest it in sorted order so reordering keys changes nothing.
    char **env = xmalloc((size_t)(m->n_env + 1) * sizeof *env);
    for (int i = 0; i < m->n_env; i++) env[i] = m->env[i];
    for (int i = 1; i < m->n_env; i++)
        for (int j = i; j > 0 && strcmp(env[j - 1], env[j]) > 0; j--) {
            char *t = env[j];
            env[j] = env[j - 1], env[j - 1] = t;
        }
    for (int i = 0; i < m->n_env; i++) digest_field(&d, "env", env[i]);
    free(env);
    char *hex = xmalloc(DIGEST_HEX_LEN + 1);
    digest_hex(&d, hex);
    return hex;
}

/* One models[] entry into m: its keys, its kind (command or lm-worker) with that kind's settings,
 * the common keys with their defaults, and its settings_key. Returns 0, or -1 with err set. */
static int parse_model(pctx_t *c, json_t *jm, plan_model_t *m) {
    if (!json_is_object(jm)) return pctx_fail(c, 0, "must be an object, not %s", pf_type_name(jm));
    if (pf_check_keys(c, jm, MODEL_KEYS, TOP_KEYS, "it is a top-level key, outside models[]") != 0) return -1;
    if (parse_name(c, jm, m) != 0) return -1;
    json_t *cmd = pf_member(jm, "command"), *wk = pf_member(jm, "worker");
    if (cmd && wk) {
        pctx_key(c, "worker");
        pctx_fail(c, 1, "give either 'command' or 'worker', not both");
        pctx_pop(c);
        return -1;
    }
    if (!cmd && !wk)
        return pctx_fail(c, 0, "needs either 'command' (an argv array) or 'worker': \"lm-worker\"");
    m->max_length = 1024;
    m->batch_size = 8;
    m->weight = 1;
    m->retries = 2;
    if (wk) {
        int w = 0;
        if (pf_enum(c, jm, "worker", "worker", WORKERS, &w) != 0) return -1;
        m->is_lm_worker = 1;
        if (parse_lm_settings(c, jm, m) != 0) return -1;
    } else {
        for (int i = 0; LM_ONLY_KEYS[i]; i++) {
            if (!json_object_get(jm, LM_ONLY_KEYS[i])) continue;
            pctx_key(c, LM_ONLY_KEYS[i]);
            pctx_fail(c, 1, "'%s' is an lm-worker setting; a command worker takes its settings in its argv",
                      LM_ONLY_KEYS[i]);
            pctx_pop(c);
            return -1;
        }
        if (pf_string_list(c, jm, "command", 1, 1, &m->command, &m->n_command) != 0) return -1;
        if (m->command[0][0] == '\0') {
            pctx_key(c, "command");
            pctx_index(c, 0);
            pctx_fail(c, 0, "the program name must not be empty");
            c->depth -= 2;
            return -1;
        }
        // For a command, `model` only fills {model}: resolve it when it names something next to
        // the plan, and otherwise pass it verbatim (it may be a hub id such as "org/name").
        char *model = NULL;
        if (pf_string(c, jm, "model", 0, &model) != 0) return -1;
        if (model) {
            char *path = pf_join(c->base_dir, model);
            struct stat st;
            if (model[0] != '/' && stat(path, &st) == 0) m->model = path, free(model);
            else m->model = model, free(path);
        }
        if (check_placeholders(c, m) != 0) return -1;
    }
    if (pf_int(c, jm, "max_length", 1, 1 << 20, &m->max_length) != 0) return -1;
    if (pf_int(c, jm, "batch_size", 1, 1 << 16, &m->batch_size) != 0) return -1;
    if (pf_number(c, jm, "weight", 0, 1, MAX_WEIGHT, &m->weight) != 0) return -1;
    if (parse_tta(c, jm, m) != 0) return -1;
    if (pf_number(c, jm, "timeout_s", 0, 0, MAX_TIMEOUT_S, &m->timeout_s) != 0) return -1;
    if (pf_int(c, jm, "retries", 0, JOB_MAX_ATTEMPTS - 1, &m->retries) != 0) return -1;
    if (parse_env(c, jm, m) != 0) return -1;
    if (parse_depends_on(c, jm, m) != 0) return -1;
    m->settings_key = settings_key(m);
    return 0;
}

/* The required models array (1 to 1000 models, unique names) into plan->models. Returns 0 or -1. */
static int parse_models(pctx_t *c, json_t *root, plan_t *plan) {
    json_t *v = pf_member(root, "models");
    if (!v) return pctx_fail(c, 0, "missing required key 'models'");
    pctx_key(c, "models");
    int rc = 0;
    if (!json_is_array(v)) rc = pctx_fail(c, 0, "must be an array of models, not %s", pf_type_name(v));
    else if (json_array_size(v) == 0) rc = pctx_fail(c, 0, "needs at least one model");
    else if (json_array_size(v) > 1000) rc = pctx_fail(c, 0, "has more than 1000 models");
    if (rc == 0) plan->models = xcalloc(json_array_size(v), sizeof *plan->models);
    for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
        pctx_index(c, (int)i);
        plan->n_models++;
        rc = parse_model(c, json_array_get(v, i), &plan->models[i]);
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(plan->models[j].name, plan->models[i].name) != 0) continue;
            pctx_key(c, "name");
            rc = pctx_fail(c, 0, "duplicate model name '%s' (models[%zu] has it too)", plan->models[i].name, j);
            pctx_pop(c);
        }
        pctx_pop(c);
    }
    pctx_pop(c);
    return rc;
}

/* ---------------------------------------------------------------- top level */

/* labels: at least 2 distinct non-empty strings, none of them "id"; the competition's three when
 * absent. Returns 0 or -1. */
static int parse_labels(pctx_t *c, json_t *root, plan_t *plan) {
    if (!pf_member(root, "labels")) {
        plan->n_labels = 3;
        plan->labels = xmalloc(3 * sizeof *plan->labels);
        for (int i = 0; i < 3; i++) plan->labels[i] = xstrdup(DEFAULT_LABELS[i]);
        return 0;
    }
    if (pf_string_list(c, root, "labels", 2, 0, &plan->labels, &plan->n_labels) != 0) return -1;
    for (int i = 0; i < plan->n_labels; i++) {
        int bad = strcmp(plan->labels[i], "id") == 0 ? -2 : -1;
        for (int j = 0; bad == -1 && j < i; j++)
            if (strcmp(plan->labels[i], plan->labels[j]) == 0) bad = j;
        if (bad == -1) continue;
        char show[80];
        pctx_key(c, "labels");
        pctx_index(c, i);
        if (bad == -2) pctx_fail(c, 0, "'id' is the id column and cannot be a label");
        else pctx_fail(c, 0, "duplicate label '%s' (labels[%d])", pf_show(plan->labels[i], show), bad);
        c->depth -= 2;
        return -1;
    }
    return 0;
}

/* deadline: seconds as a number, or a duration string ("8h30m", "45m", "90s"); absent = none.
 * fallback: n_labels probabilities summing to 1 (within 1e-3; renormalised); default uniform.
 * Labels must be parsed first. Returns 0 or -1. */
static int parse_budget(pctx_t *c, json_t *root, plan_t *plan) {
    json_t *v = pf_member(root, "deadline");
    if (v) {
        pctx_key(c, "deadline");
        err_t derr = {0};
        if (json_is_string(v)) {
            if (budget_parse_duration(json_string_value(v), &plan->deadline_s, &derr) != 0)
                return pctx_fail(c, 0, "%s", derr.msg);
        } else if (json_is_number(v)) {
            double d = json_number_value(v);
            if (!(d > 0) || d > BUDGET_MAX_S)
                return pctx_fail(c, 0, "%g is out of range (0, %g] seconds", d, BUDGET_MAX_S);
            plan->deadline_s = d;
        } else {
            return pctx_fail(c, 0, "expected seconds or a duration such as \"8h30m\", not %s", pf_type_name(v));
        }
        pctx_pop(c);
    }
    int L = plan->n_labels;
    plan->fallback = xcalloc((size_t)L, sizeof *plan->fallback);
    for (int l = 0; l < L; l++) plan->fallback[l] = 1.0 / L;
    v = pf_member(root, "fallback");
    if (!v) return 0;
    pctx_key(c, "fallback");
    if (!json_is_array(v) || json_array_size(v) != (size_t)L)
        return pctx_fail(c, 0, "expected a list of %d probabilities (one per label)", L);
    double sum = 0;
    for (int l = 0; l < L; l++) {
        json_t *x = json_array_get(v, (size_t)l);
        double p = json_is_number(x) ? json_number_value(x) : -1;
        if (!(p >= 0 && p <= 1)) {
            pctx_index(c, l);
            return pctx_fail(c, 0, "expected a probability in [0, 1] for label '%s'", plan->labels[l]);
        }
        plan->fallback[l] = p;
        sum += p;
    }
    if (fabs(sum - 1) > 1e-3) return pctx_fail(c, 0, "the probabilities sum to %g, not 1", sum);
    for (int l = 0; l < L; l++) plan->fallback[l] /= sum;
    pctx_pop(c);
    return 0;
}

/* gpus: "auto" (the default), "cpu", or a non-empty list of distinct indices in [0, 1023].
 * Returns 0 or -1. */
static int parse_gpus(pctx_t *c, json_t *root, plan_t *plan) {
    json_t *v = pf_member(root, "gpus");
    plan->gpus_auto = 1;
    if (!v) return 0;
    pctx_key(c, "gpus");
    int rc = 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char show[80];
        if (strcmp(s, "auto") == 0) plan->gpus_auto = 1;
        else if (strcmp(s, "cpu") == 0) plan->use_cpu = 1, plan->gpus_auto = 0;
        else rc = pctx_fail(c, 0, "unknown value '%s' (expected \"auto\", \"cpu\" or a list of GPU indices)",
                            pf_show(s, show));
    } else if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n == 0) rc = pctx_fail(c, 0, "needs at least one GPU index (or use \"cpu\")");
        else if (n > 1024) rc = pctx_fail(c, 0, "has more than 1024 GPUs");
        plan->gpus_auto = 0;
        if (rc == 0) plan->gpus = xcalloc(n, sizeof *plan->gpus);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            json_t *e = json_array_get(v, i);
            pctx_index(c, (int)i);
            if (!json_is_integer(e)) rc = pctx_fail(c, 0, "must be a GPU index (an integer), not %s", pf_type_name(e));
            else if (json_integer_value(e) < 0 || json_integer_value(e) > 1023)
                rc = pctx_fail(c, 0, "GPU index %lld is out of range [0, 1023]", json_integer_value(e));
            for (int j = 0; rc == 0 && j < plan->n_gpus; j++)
                if (plan->gpus[j] == json_integer_value(e))
                    rc = pctx_fail(c, 0, "duplicate GPU index %lld", json_integer_value(e));
            if (rc == 0) plan->gpus[plan->n_gpus++] = (int)json_integer_value(e);
            pctx_pop(c);
        }
    } else {
        rc = pctx_fail(c, 0, "must be \"auto\", \"cpu\" or a list of GPU indices, not %s", pf_type_name(v));
    }
    pctx_pop(c);
    return rc;
}

/* An optional sub-object (ensemble, memory): NULL when absent; fails when not an object. */
static int sub_object(pctx_t *c, json_t *root, const char *key, const char *const *keys, json_t **out) {
    *out = pf_member(root, key);
    if (!*out) return 0;
    pctx_key(c, key);
    int rc = json_is_object(*out) ? pf_check_keys(c, *out, keys, NULL, NULL)
                                  : pctx_fail(c, 0, "must be an object, not %s", pf_type_name(*out));
    if (rc != 0) return -1;  // the path is dropped with the whole load
    return 0;
}

/* The whole plan object: top-level keys and their defaults, then the models. Returns 0, or -1
 * with err naming the file, line:column and JSON path. */
static int parse_top(pctx_t *c, json_t *root, plan_t *plan) {
    if (!json_is_object(root)) return pctx_fail(c, 0, "the plan must be a JSON object, not %s", pf_type_name(root));
    if (pf_check_keys(c, root, TOP_KEYS, MODEL_KEYS, "it is a per-model key; put it inside models[]") != 0) return -1;
    if (pf_path(c, root, "input", 1, &plan->input) != 0) return -1;
    if (pf_path(c, root, "output", 1, &plan->output) != 0) return -1;
    plan->work_dir = pf_join(c->base_dir, "orchestrate-work");
    if (pf_path(c, root, "work_dir", 0, &plan->work_dir) != 0) return -1;
    if (parse_labels(c, root, plan) != 0) return -1;
    if (parse_gpus(c, root, plan) != 0) return -1;
    if (parse_budget(c, root, plan) != 0) return -1;
    plan->cpu_workers = 1;
    if (pf_int(c, root, "cpu_workers", 1, 1024, &plan->cpu_workers) != 0) return -1;
    json_t *ens, *mem;
    if (sub_object(c, root, "ensemble", ENSEMBLE_KEYS, &ens) != 0) return -1;
    int idx = ENSEMBLE_MEAN;
    if (ens && pf_enum(c, ens, "method", "method", ENSEMBLE_NAMES, &idx) != 0) return -1;
    if (ens) pctx_pop(c);
    plan->ensemble = (ensemble_method_t)idx;
    plan->kill_grace_s = 5;
    if (pf_number(c, root, "kill_grace_s", 0, 0, MAX_GRACE_S, &plan->kill_grace_s) != 0) return -1;
    plan->mem_tolerance_mib = 64;
    plan->mem_wait_s = 10;
    if (sub_object(c, root, "memory", MEMORY_KEYS, &mem) != 0) return -1;
    if (mem) {
        idx = MEM_LEAK_FAIL;
        if (pf_number(c, mem, "tolerance_mib", 0, 0, MAX_TOLERANCE_MIB, &plan->mem_tolerance_mib) != 0) return -1;
        if (pf_number(c, mem, "wait_s", 0, 0, MAX_GRACE_S, &plan->mem_wait_s) != 0) return -1;
        if (pf_enum(c, mem, "on_leak", "policy", LEAK_NAMES, &idx) != 0) return -1;
        plan->mem_leak = (mem_leak_policy_t)idx;
        pctx_pop(c);
    }
    json_t *slurm;
    idx = EXECUTOR_LOCAL;
    if (pf_enum(c, root, "executor", "executor", executor_names, &idx) != 0) return -1;
    plan->executor = (executor_t)idx;
    if (sub_object(c, root, "slurm", SLURM_KEYS, &slurm) != 0) return -1;
    if (slurm) {
        if (pf_string_list(c, slurm, "srun_args", 0, 0, &plan->srun_args, &plan->n_srun_args) != 0) return -1;
        pctx_pop(c);
    }
    return parse_models(c, root, plan);
}

/* The absolute directory holding the plan file `name` (its directory as written when that
 * cannot be resolved, e.g. for an in-memory plan). */
static char *plan_dir(const char *name) {
    const char *slash = strrchr(name, '/');
    char *dir;
    if (!slash) dir = xstrdup(".");
    else if (slash == name) dir = xstrdup("/");
    else {
        dir = xstrdup(name);
        dir[slash - name] = '\0';
    }
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        dir = xstrdup(real);  // keep every string of the plan on our allocator
        free(real);
    }
    return dir;
}

int plan_load_buf(plan_t *plan, const char *buf, size_t len, const char *name, err_t *err) {
    memset(plan, 0, sizeof *plan);
    json_t *root = json_util_load_buf(buf, len, name, err);
    if (!root) return -1;
    plan->path = xstrdup(name);
    plan->base_dir = plan_dir(name);
    pctx_t c = {.name = name, .text = buf, .len = len, .base_dir = plan->base_dir, .err = err};
    int rc = parse_top(&c, root, plan);
    json_decref(root);
    if (rc != 0) plan_free(plan);
    return rc;
}

int plan_load(plan_t *plan, const char *path, err_t *err) {
    memset(plan, 0, sizeof *plan);
    size_t len;
    char *buf = fs_read_all(path, FS_LIMIT_TEXT, &len, err);
    if (!buf) return -1;
    int rc = plan_load_buf(plan, buf, len, path, err);
    free(buf);
    if (rc == 0 && plan_resolve_lm_worker(plan, err) != 0) {
        plan_free(plan);
        return -1;
    }
    return rc;
}

void plan_free(plan_t *plan) {
    for (int i = 0; plan->models && i < plan->n_models; i++) {
        plan_model_t *m = &plan->models[i];
        pf_strv_free(m->command, m->n_command);
        pf_strv_free(m->extra_args, m->n_extra_args);
        pf_strv_free(m->env, m->n_env);
        pf_strv_free(m->depends_on, m->n_depends_on);
        free(m->name), free(m->model), free(m->adapter), free(m->tokenizer), free(m->dtype);
        free(m->quant), free(m->template_name), free(m->truncation), free(m->settings_key);
    }
    free(plan->models);
    pf_strv_free(plan->labels, plan->n_labels);
    pf_strv_free(plan->srun_args, plan->n_srun_args);
    free(plan->path), free(plan->input), free(plan->output), free(plan->work_dir);
    free(plan->gpus), free(plan->lm_worker_path), free(plan->base_dir), free(plan->fallback);
    memset(plan, 0, sizeof *plan);
}

/* lora_config.c: adapter_config.json parsing and PEFT's module-matching rules.
 *
 * The matching mirrors peft's check_target_module_exists and get_pattern_key: a list entry t
 * matches module m when m == t or m ends with "." + t; a string is a regex that must match the
 * whole module name; rank_pattern / alpha_pattern keys k match when "(.*\.)?(k)$" matches m from
 * its start. Regexes go through PCRE2, whose syntax covers what people write in these fields.
 *
 * It deliberately does not open weight files (lora.c does).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <float.h>
#include <math.h>
#include <pcre2.h>

#include "atomic_file.h"
#include "json_util.h"
#include "lora.h"

/* A list of strings, or a single string when `one` is non-NULL. Absent or null is empty. */
static int strings_parse(const json_t *v, const char *path, const char *field, char ***list, int *n, char **one,
                         err_t *err) {
    *list = NULL;
    *n = 0;
    if (one) *one = NULL;
    if (!v || json_is_null(v)) return 0;
    if (one && json_is_string(v)) {
        *one = xstrdup(json_string_value(v));
        return 0;
    }
    if (!json_is_array(v)) return err_fmt(err, "%s: field '%s' must be a list of strings%s", path, field, one ? " or a string" : "");
    *list = xcalloc(json_array_size(v) + 1, sizeof **list);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) return err_fmt(err, "%s: field '%s'[%zu] is not a string", path, field, i);
        (*list)[(*n)++] = xstrdup(json_string_value(s));
    }
    return 0;
}

/* Parse rank_pattern / alpha_pattern (integer: ranks in [1, 65536], else finite numbers) into *out
 * (calloc'd, *n entries); absent or null gives none. Returns 0, or -1 with err naming the field. */
static int pattern_parse(const json_t *v, const char *path, const char *field, int integer, lora_pattern_t **out,
                         int *n, err_t *err) {
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v)) return err_fmt(err, "%s: field '%s' must be an object", path, field);
    *out = xcalloc(json_object_size(v) + 1, sizeof **out);
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        if (integer ? !json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 1 << 16
                    : !json_is_number(x) || !isfinite(json_number_value(x)))
            return err_fmt(err, "%s: %s[\"%s\"] must be %s", path, field, k,
                           integer ? "a positive integer rank" : "a number");
        if (!integer && fabs(json_number_value(x)) > FLT_MAX)
            return err_fmt(err, "%s: %s[\"%s\"] is %g: not finite in fp32, where the merge scales by it / r",
                           path, field, k, json_number_value(x));
        (*out)[*n].key = xstrdup(k);
        (*out)[(*n)++].value = json_number_value(x);
    }
    return 0;
}

/* Fill c from the parsed adapter_config.json root, rejecting what we cannot apply (non-LoRA, DoRA,
 * biases) and compiling each regex once to check it. Returns 0, or -1 with err naming path and
 * field; c may hold partial results for lora_config_free. */
static int config_fill(lora_config_t *c, const json_t *root, const char *path, err_t *err) {
    if (!json_is_object(root)) return err_fmt(err, "%s: not a JSON object", path);
    const json_t *pt = json_object_get(root, "peft_type");
    if (pt && !json_is_null(pt) && (!json_is_string(pt) || strcmp(json_string_value(pt), "LORA") != 0))
        return err_fmt(err, "%s: peft_type must be \"LORA\" (other PEFT methods are not supported)", path);
    if (json_is_true(json_object_get(root, "use_dora")))
        return err_fmt(err, "%s: use_dora is true; DoRA adapters are not supported (merge them in Python first)", path);
    if (json_is_true(json_object_get(root, "lora_bias")))
        return err_fmt(err, "%s: lora_bias is true; LoRA biases are not supported", path);
    const json_t *bias = json_object_get(root, "bias");
    if (bias && !json_is_null(bias) && (!json_is_string(bias) || strcmp(json_string_value(bias), "none") != 0))
        return err_fmt(err, "%s: bias must be \"none\" (trained biases are not supported)", path);
    const json_t *r = json_object_get(root, "r"), *a = json_object_get(root, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 1 << 16)
        return err_fmt(err, "%s: field 'r' must be a positive integer", path);
    if (!json_is_number(a) || !isfinite(json_number_value(a)))
        return err_fmt(err, "%s: field 'lora_alpha' must be a number", path);
    if (fabs(json_number_value(a)) > FLT_MAX)
        return err_fmt(err, "%s: field 'lora_alpha' is %g: not finite in fp32, where the merge scales by lora_alpha / r",
                       path, json_number_value(a));
    c->r = (int)json_integer_value(r);
    c->alpha = json_number_value(a);
    c->use_rslora = json_is_true(json_object_get(root, "use_rslora"));
    /* fan_in_fan_out only matters for Conv1D (GPT-2); peft forces it off for nn.Linear, which is
     * every module we target, so the stored A and B are always (r, in) and (out, r). */
    if (strings_parse(json_object_get(root, "target_modules"), path, "target_modules", &c->targets, &c->n_targets,
                      &c->target_regex, err) ||
        strings_parse(json_object_get(root, "exclude_modules"), path, "exclude_modules", &c->excludes,
                      &c->n_excludes, &c->exclude_regex, err) ||
        strings_parse(json_object_get(root, "modules_to_save"), path, "modules_to_save", &c->save, &c->n_save, NULL,
                      err) ||
        pattern_parse(json_object_get(root, "rank_pattern"), path, "rank_pattern", 1, &c->rank_pattern,
                      &c->n_rank_pattern, err) ||
        pattern_parse(json_object_get(root, "alpha_pattern"), path, "alpha_pattern", 0, &c->alpha_pattern,
                      &c->n_alpha_pattern, err))
        return -1;
    if (!c->targets && !c->target_regex) return err_fmt(err, "%s: field 'target_modules' is missing", path);
    const json_t *lt = json_object_get(root, "layers_to_transform");
    if (json_is_integer(lt)) {
        c->layers = xcalloc(1, sizeof *c->layers);
        c->layers[c->n_layers++] = (int)json_integer_value(lt);
    } else if (json_is_array(lt)) {
        c->layers = xcalloc(json_array_size(lt) + 1, sizeof *c->layers);
        for (size_t i = 0; i < json_array_size(lt); i++) {
            if (!json_is_integer(json_array_get(lt, i)))
                return err_fmt(err, "%s: layers_to_transform[%zu] is not an integer", path, i);
            c->layers[c->n_layers++] = (int)json_integer_value(json_array_get(lt, i));
        }
    } else if (lt && !json_is_null(lt)) {
        return err_fmt(err, "%s: field 'layers_to_transform' must be an integer or a list", path);
    }
    /* Compile every regex once now, so that a bad one is reported against its field. */
    const char *check[2] = {c->target_regex, c->exclude_regex};
    for (int i = 0; i < 2; i++) {
        if (!check[i] || strcmp(check[i], "all-linear") == 0) continue;
        int ec;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)check[i], PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
        if (!re) return err_fmt(err, "%s: %s is not a valid regex (at offset %zu)", path,
                                i ? "exclude_modules" : "target_modules", (size_t)off);
        pcre2_code_free(re);
    }
    return 0;
}

int lora_config_parse(lora_config_t *c, const char *buf, size_t len, const char *name, err_t *err) {
    memset(c, 0, sizeof *c);
    json_t *root = json_util_load_buf(buf, len, name, err);
    if (!root) return -1;
    int rc = config_fill(c, root, name, err);
    json_decref(root);
    if (rc) lora_config_free(c);
    return rc;
}

int lora_config_load(lora_config_t *c, const char *path, err_t *err) {
    size_t len;
    char *buf = fs_read_all(path, FS_LIMIT_TEXT, &len, err);
    if (!buf) {
        memset(c, 0, sizeof *c);
        return -1;
    }
    int rc = lora_config_parse(c, buf, len, path, err);
    free(buf);
    return rc;
}

/* Free n strings of list and list itself. */
static void strings_free(char **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

void lora_config_free(lora_config_t *c) {
    strings_free(c->targets, c->n_targets);
    strings_free(c->excludes, c->n_excludes);
    strings_free(c->save, c->n_save);
    free(c->target_regex);
    free(c->exclude_regex);
    free(c->layers);
    for (int i = 0; i < c->n_rank_pattern; i++) free(c->rank_pattern[i].key);
    for (int i = 0; i < c->n_alpha_pattern; i++) free(c->alpha_pattern[i].key);
    free(c->rank_pattern);
    free(c->alpha_pattern);
    memset(c, 0, sizeof *c);
}

/* Whether regex `re` matches all of s (full: Python fullmatch) or from its start (match). */
static int regex_match(const char *re_src, const char *s, int full) {
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)re_src, PCRE2_ZERO_TERMINATED,
                                   PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0), &ec, &off, NULL);
    if (!re) return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

/* m == t or m ends with "." + t. */
static int suffix_match(const char *m, const char *t) {
    size_t lm = strlen(m), lt = strlen(t);
    if (lm == lt) return strcmp(m, t) == 0;
    return lm > lt && m[lm - lt - 1] == '.' && strcmp(m + lm - lt, t) == 0;
}

/* "all-linear" means every linear layer but the classifier head, as peft expands it. */
static int all_linear(const char *m) { return strstr(m, "_proj") != NULL && strncmp(m, "model.layers.", 13) == 0; }

/* 1 when module m matches a target/exclude spec: the single regex (fullmatch) when non-NULL, else
 * any list entry as a dotted suffix; "all-linear" in either form means every decoder-layer
 * projection. */
static int spec_match(char **list, int n, const char *regex, const char *m) {
    if (regex) return strcmp(regex, "all-linear") == 0 ? all_linear(m) : regex_match(regex, m, 1);
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], "all-linear") == 0 ? all_linear(m) : suffix_match(m, list[i])) return 1;
    return 0;
}

/* The layer index in "model.layers.<n>.<...>", or -1. */
static int module_layer(const char *m) {
    const char *p = strstr(m, "layers.");
    if (!p) return -1;
    char *end;
    long n = strtol(p + 7, &end, 10);
    return end != p + 7 && *end == '.' ? (int)n : -1;
}

int lora_config_targets(const lora_config_t *c, const char *module) {
    if (!spec_match(c->targets, c->n_targets, c->target_regex, module)) return 0;
    if ((c->excludes || c->exclude_regex) && spec_match(c->excludes, c->n_excludes, c->exclude_regex, module))
        return 0;
    if (c->layers) {
        int l = module_layer(module), ok = 0;
        for (int i = 0; i < c->n_layers && !ok; i++) ok = c->layers[i] == l;
        if (!ok) return 0;
    }
    return 1;
}

/* get_pattern_key: the first key k with "(.*\.)?(k)$" matching module from its start. */
static const lora_pattern_t *pattern_find(const lora_pattern_t *p, int n, const char *module) {
    for (int i = 0; i < n; i++) {
        size_t len = strlen(p[i].key) + 16;
        char *re = xmalloc(len);
        snprintf(re, len, "(.*\\.)?(%s)$", p[i].key);
        int hit = regex_match(re, module, 0);
        free(re);
        if (hit) return &p[i];
    }
    return NULL;
}

void lora_config_rank_scale(const lora_config_t *c, const char *module, int *r, double *scale) {
    const lora_pattern_t *rp = pattern_find(c->rank_pattern, c->n_rank_pattern, module);
    const lora_pattern_t *ap = pattern_find(c->alpha_pattern, c->n_alpha_pattern, module);
    *r = rp ? (int)rp->value : c->r;
    double alpha = ap ? ap->value : c->alpha;
    *scale = c->use_rslora ? alpha / sqrt((double)*r) : alpha / (double)*r;
}

/* lora.c: merge a PEFT LoRA adapter into base weights as they are loaded (see lora.h).
 *
 * The merge is peft's merge(): W += scale * (B @ A), in fp32, once per targeted module, before
 * the weight goes to the backend, so the forward pass never knows an adapter was there. Every
 * adapter tensor must be consumed by exactly one base tensor; leftovers are an error because
 * they mean the adapter was trained for a different architecture or naming.
 */
#include "lora.h"

#include <stdio.h>
#include <string.h>

#include "safetensors.h"

#ifdef LM_HAVE_OPENBLAS
#include <cblas.h>
#endif

#define LORA_PREFIX "base_model.model."

struct lora {
    lora_config_t cfg;     // the parsed adapter_config.json
    st_set_t st;           // adapter_model.safetensors
    char *file;            // its path, for messages
    char *config_path;     // adapter_config.json path, for messages
    unsigned char *used;   // (st.n_tensors) consumed flags
    int merged, replaced;  // counts for reports
};

lora_t *lora_open(const char *dir, err_t *err) {
    lora_t *l = xcalloc(1, sizeof *l);
    size_t n = strlen(dir) + 64;
    l->config_path = xmalloc(n);
    l->file = xmalloc(n);
    snprintf(l->config_path, n, "%s/adapter_config.json", dir);
    snprintf(l->file, n, "%s/adapter_model.safetensors", dir);
    if (lora_config_load(&l->cfg, l->config_path, err)) goto fail;
    if (st_open_file(&l->st, l->file, err)) {
        err_prefix(err, "LoRA adapter (only adapter_model.safetensors is supported)");
        goto fail;
    }
    for (int i = 0; i < l->st.n_tensors; i++)
        if (strncmp(l->st.tensors[i].name, LORA_PREFIX, strlen(LORA_PREFIX)) != 0) {
            err_fmt(err, "%s: tensor '%s' does not start with \"" LORA_PREFIX "\" (not a PEFT adapter?)", l->file,
                    l->st.tensors[i].name);
            goto fail;
        }
    l->used = xcalloc((size_t)l->st.n_tensors + 1, 1);
    return l;
fail:
    lora_free(l);
    return NULL;
}

/* The adapter tensor LORA_PREFIX + module + suffix, or NULL. */
static const st_tensor_t *find(const lora_t *l, const char *module, const char *suffix) {
    char key[512];
    if ((size_t)snprintf(key, sizeof key, LORA_PREFIX "%s%s", module, suffix) >= sizeof key) return NULL;
    return st_find(&l->st, key);
}

/* Mark adapter tensor t (which must belong to l->st) as consumed, for lora_finish. */
static void mark(lora_t *l, const st_tensor_t *t) { l->used[t - l->st.tensors] = 1; }

/* Load an adapter tensor as fp32 after checking its shape: (rows, cols), or (rows) when
 * cols == 0. */
static float *load_shaped(const lora_t *l, const st_tensor_t *t, int rows, int cols, err_t *err) {
    int want_ndim = cols ? 2 : 1;
    if (t->ndim != want_ndim || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        char got[64] = "";
        for (int d = 0; d < t->ndim && strlen(got) < 40; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)t->shape[d]);
        if (cols) err_fmt(err, "%s: tensor '%s': shape [%s], expected [%d, %d]", l->file, t->name, got, rows, cols);
        else err_fmt(err, "%s: tensor '%s': shape [%s], expected [%d]", l->file, t->name, got, rows);
        return NULL;
    }
    float *p = xmalloc((size_t)rows * (size_t)(cols ? cols : 1) * sizeof(float) + 1);
    if (st_to_f32(&l->st, t, p, err)) {
        free(p);
        return NULL;
    }
    return p;
}

/* W (rows, cols) += scale * B (rows, r) @ A (r, cols). */
static void merge(float *w, const float *b, const float *a, int rows, int cols, int r, float scale) {
#ifdef LM_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, r, scale, b, r, a, cols, 1.0f, w, cols);
#else
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float acc = 0.0f;
            for (int k = 0; k < r; k++) acc += b[(size_t)i * r + k] * a[(size_t)k * cols + j];
            w[(size_t)i * cols + j] += acc * scale;
        }
#endif
}

/* Merge the LoRA pair of a targeted module. */
static int apply_lora(lora_t *l, const char *module, const st_tensor_t *ta, const st_tensor_t *tb, float *w,
                      int rows, int cols, err_t *err) {
    int r;
    double scale;
    lora_config_rank_scale(&l->cfg, module, &r, &scale);
    if (ta->ndim != 2 || ta->shape[0] != r)
        return err_fmt(err, "%s: tensor '%s': rank %lld does not match r = %d from %s", l->file, ta->name,
                       ta->ndim >= 1 ? (long long)ta->shape[0] : 0LL, r, l->config_path);
    float *a = load_shaped(l, ta, r, cols, err);
    if (!a) return -1;
    float *b = load_shaped(l, tb, rows, r, err);
    if (!b) {
        free(a);
        return -1;
    }
    merge(w, b, a, rows, cols, r, (float)scale);
    free(a);
    free(b);
    mark(l, ta);
    mark(l, tb);
    l->merged++;
    return 0;
}

/* Whether peft would keep a trainable copy of module (modules_to_save rule). */
static int saved_module(const lora_config_t *c, const char *module) {
    size_t lm = strlen(module);
    for (int i = 0; i < c->n_save; i++) {
        size_t ls = strlen(c->save[i]);
        if (strcmp(module, c->save[i]) == 0 ||
            (lm > ls && module[lm - ls - 1] == '.' && strcmp(module + lm - ls, c->save[i]) == 0))
            return 1;
    }
    return 0;
}

/* The module of tensor `name` ("x.y.weight" -> "x.y") into module (400 bytes). Returns 0, or -1
 * when name is not a ".weight" tensor: only those belong to modules an adapter can touch. */
static int module_of(const char *name, char module[400]) {
    size_t n = strlen(name);
    if (n < 8 || strcmp(name + n - 7, ".weight") != 0 || n - 7 >= 400) return -1;
    memcpy(module, name, n - 7);
    module[n - 7] = '\0';
    return 0;
}

int lora_touches(const lora_t *l, const char *name) {
    char module[400];
    if (module_of(name, module)) return 0;
    if (lora_config_targets(&l->cfg, module)) return 1;
    static const char *sfx[] = {".lora_A.weight", ".lora_B.weight", ".weight", ".modules_to_save.weight",
                                ".modules_to_save.default.weight"};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (find(l, module, sfx[i])) return 1;
    return 0;
}

int lora_apply(lora_t *l, const char *name, float *w, int rows, int cols, err_t *err) {
    char module[400];
    if (module_of(name, module)) return 0;

    const st_tensor_t *ta = find(l, module, ".lora_A.weight"), *tb = find(l, module, ".lora_B.weight");
    int targeted = lora_config_targets(&l->cfg, module);
    if (targeted && strcmp(module, "model.embed_tokens") == 0)
        return err_fmt(err, "%s: target_modules matches '%s'; LoRA on embeddings is not supported", l->config_path,
                       module);
    if (targeted && cols > 0) {
        if (!ta || !tb)
            return err_fmt(err, "%s: module '%s' is a LoRA target (target_modules in %s) but has no %s weight",
                           l->file, module, l->config_path, !ta ? "lora_A" : "lora_B");
        if (apply_lora(l, module, ta, tb, w, rows, cols, err)) return -1;
    } else if (ta || tb) {
        return err_fmt(err, "%s: tensor '%s': module '%s' has LoRA weights but %s does not target it", l->file,
                       (ta ? ta : tb)->name, module, l->config_path);
    }

    static const char *full[] = {".weight", ".modules_to_save.weight", ".modules_to_save.default.weight"};
    for (int i = 0; i < 3; i++) {
        const st_tensor_t *t = find(l, module, full[i]);
        if (!t) continue;
        if (!saved_module(&l->cfg, module))
            return err_fmt(err, "%s: tensor '%s' replaces '%s', which is not in modules_to_save of %s", l->file,
                           t->name, name, l->config_path);
        float *p = load_shaped(l, t, rows, cols, err);
        if (!p) return -1;
        memcpy(w, p, (size_t)rows * (size_t)(cols ? cols : 1) * sizeof(float));
        free(p);
        mark(l, t);
        l->replaced++;
        break;
    }
    return 0;
}

int lora_finish(lora_t *l, err_t *err) {
    for (int i = 0; i < l->st.n_tensors; i++)
        if (!l->used[i])
            return err_fmt(err, "%s: unexpected tensor '%s': no module of that name in the base model, or a "
                                "duplicate of another form", l->file, l->st.tensors[i].name);
    return 0;
}

void lora_counts(const lora_t *l, int *merged, int *replaced) {
    *merged = l->merged;
    *replaced = l->replaced;
}

void lora_free(lora_t *l) {
    if (!l) return;
    lora_config_free(&l->cfg);
    st_close(&l->st);
    free(l->used);
    free(l->file);
    free(l->config_path);
    free(l);
}

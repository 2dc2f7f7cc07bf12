/* weights.c: checkpoint tensors -> backend weights, with shapes checked against config.json.
 *
 * The list of tensors an architecture needs is built from the config (weights_specs). A matrix
 * stored as fp32, bf16 or fp16 that no LoRA adapter touches goes to the backend as its bytes in
 * the safetensors mapping (weight_upload converts, checks finiteness and, on CUDA, ships the
 * checkpoint's own dtype); the next tensor's pages are requested from the kernel meanwhile
 * (st_prefetch). Vectors, LoRA-merged matrices and other dtypes are converted to fp32 on the host
 * one at a time, checked to be finite, merged (and checked again), and uploaded as fp32. Peak host
 * memory is therefore at most one fp32 tensor, not the model. A value the backend finds it cannot
 * store (fp16 range, detected on the GPU) is reported by the sync at the end of weights_load.
 * Once a layer's tensors are uploaded, its q, k, v and its gate, up matrices are stacked on the
 * backend (weight_concat) into one q|k|v and one gate|up matrix, so the forward pass runs four
 * GEMMs per layer; the checks, LoRA merge and upload above still see each checkpoint tensor alone.
 *
 * Checkpoint tensors we do not use are an error, except the ones weights_ignorable() names:
 * rotary inv_freq buffers (older transformers saved them; we recompute them exactly) and an
 * "lm_head.weight" (a causal-LM head some conversion scripts leave next to score.weight; a
 * classifier never reads it). Anything else unexpected means a different architecture or a
 * misnamed checkpoint, and silently ignoring it would hide the problem.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "exit_codes.h"
#include "model_impl.h"

/* Fill s as a (rows, cols) matrix named name to be loaded into dst. */
static void spec_mat(weight_spec_t *s, const char *name, int rows, int cols, bweight_t *dst) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->rows = rows;
    s->cols = cols;
    s->mat = dst;
}

/* Fill s as a (n) vector named name to be loaded into *dst. */
static void spec_vec(weight_spec_t *s, const char *name, int n, float **dst) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->rows = n;
    s->vec = dst;
}

int weights_specs(const model_config_t *c, model_weights_t *w, weight_spec_t **out) {
    int per_layer = c->post_norms ? 11 : 9;
    weight_spec_t *s = xcalloc((size_t)(3 + per_layer * c->n_layers), sizeof *s);
    int n = 0, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    char name[128];
    spec_mat(&s[n++], "model.embed_tokens.weight", c->vocab_size, c->dim, &w->emb);
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights_t *L = &w->layers[l];
#define LNAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
        spec_vec(&s[n++], LNAME("input_layernorm.weight"), c->dim, &L->attn_norm);
        spec_mat(&s[n++], LNAME("self_attn.q_proj.weight"), qd, c->dim, &L->wq);
        spec_mat(&s[n++], LNAME("self_attn.k_proj.weight"), kvd, c->dim, &L->wk);
        spec_mat(&s[n++], LNAME("self_attn.v_proj.weight"), kvd, c->dim, &L->wv);
        spec_mat(&s[n++], LNAME("self_attn.o_proj.weight"), c->dim, qd, &L->wo);
        if (c->post_norms) {
            spec_vec(&s[n++], LNAME("post_attention_layernorm.weight"), c->dim, &L->attn_post_norm);
            spec_vec(&s[n++], LNAME("pre_feedforward_layernorm.weight"), c->dim, &L->mlp_norm);
            spec_vec(&s[n++], LNAME("post_feedforward_layernorm.weight"), c->dim, &L->mlp_post_norm);
        } else {
            spec_vec(&s[n++], LNAME("post_attention_layernorm.weight"), c->dim, &L->mlp_norm);
        }
        spec_mat(&s[n++], LNAME("mlp.gate_proj.weight"), c->hidden_dim, c->dim, &L->w_gate);
        spec_mat(&s[n++], LNAME("mlp.up_proj.weight"), c->hidden_dim, c->dim, &L->w_up);
        spec_mat(&s[n++], LNAME("mlp.down_proj.weight"), c->dim, c->hidden_dim, &L->w_down);
#undef LNAME
    }
    spec_vec(&s[n++], "model.norm.weight", c->dim, &w->final_norm);
    spec_mat(&s[n++], "score.weight", c->n_labels, c->dim, &w->score);
    *out = s;
    return n;
}

int weights_ignorable(const char *name) {
    size_t n = strlen(name), k = strlen(".rotary_emb.inv_freq");
    return strcmp(name, "lm_head.weight") == 0 || (n >= k && strcmp(name + n - k, ".rotary_emb.inv_freq") == 0);
}

/* "[a, b]" of a tensor's shape into buf. */
static const char *shape_str(const st_tensor_t *t, char *buf, size_t size) {
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < t->ndim && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (at < size) snprintf(buf + at, size - at, "]");
    return buf;
}

/* Every checkpoint tensor must be used or ignorable; name up to three offenders. */
static int check_unexpected(const st_set_t *st, const weight_spec_t *specs, int n_specs, const char *model_type,
                            err_t *err) {
    unsigned char *used = xcalloc((size_t)st->n_tensors + 1, 1);
    for (int i = 0; i < n_specs; i++) {
        const st_tensor_t *t = st_find(st, specs[i].name);
        if (t) used[t - st->tensors] = 1;
    }
    char list[512] = "";
    int bad = 0;
    const char *file = NULL;
    for (int i = 0; i < st->n_tensors; i++) {
        if (used[i] || weights_ignorable(st->tensors[i].name)) continue;
        if (bad++ < 3) {
            size_t at = strlen(list);
            snprintf(list + at, sizeof list - at, "%s'%s'", at ? ", " : "", st->tensors[i].name);
            if (!file) file = st->files[st->tensors[i].file].path;
        }
    }
    free(used);
    if (!bad) return 0;
    return err_fmt(err, "%s: %d unexpected tensor%s for a %s sequence classifier: %s%s", file, bad, bad > 1 ? "s" : "",
                   model_type, list, bad > 3 ? ", ..." : "");
}

/* A grow-only fp32 host buffer, reused for every tensor of one load: a fresh multi-GB malloc per
 * tensor would be a fresh mmap, and the kernel would fault in and zero every page of it again. */
typedef struct {
    float *p;     // (cap) floats
    size_t cap;
} host_buf_t;

/* Check that the fp32 values of spec s (rows x cols, or a rows vector) are finite: a NaN or inf in
 * a checkpoint is a model-file problem that every run repeats. Returns 0, or -1 with err naming
 * file, the tensor, the first bad element and `when` (appended to the message). */
static int check_finite(const float *v, const weight_spec_t *s, const char *file, const char *when, err_t *err) {
    size_t n = (size_t)s->rows * (size_t)(s->cols ? s->cols : 1);
    for (size_t i = 0; i < n; i++) {
        if (isfinite(v[i])) continue;
        if (s->cols)
            return err_code(err, EXIT_DATAERR, "%s: tensor '%s': row %zu, column %zu is %g: not finite%s", file,
                            s->name, i / (size_t)s->cols, i % (size_t)s->cols, (double)v[i], when);
        return err_code(err, EXIT_DATAERR, "%s: tensor '%s': element %zu is %g: not finite%s", file, s->name, i,
                        (double)v[i], when);
    }
    return 0;
}

/* After a failed upload of tensor `name` from `file`: err = the reason the backend recorded (a data
 * error names the tensor itself; anything else is out of memory). Returns -1. */
static int upload_failed(backend_t *be, const char *file, const char *name, err_t *err) {
    be->ops->sync(be, err);
    if (err->code == EXIT_DATAERR) return err_prefix(err, "%s", file);
    if (!err->code) err->code = EXIT_OOM;
    return err_prefix(err, "uploading '%s'", name);
}

/* Load one spec through buf: find, check shape, convert, LoRA, upload. */
static int load_one(model_t *m, const st_set_t *st, lora_t *lora, const weight_spec_t *s, const char *dir_hint,
                    host_buf_t *buf, err_t *err) {
    const st_tensor_t *t = st_find(st, s->name);
    if (!t)
        return err_code(err, EXIT_DATAERR, "%s: missing tensor '%s' (required by the %s config)", dir_hint, s->name,
                        m->cfg.model_type);
    const char *file = st->files[t->file].path;
    int ok = s->cols ? t->ndim == 2 && t->shape[0] == s->rows && t->shape[1] == s->cols
                     : t->ndim == 1 && t->shape[0] == s->rows;
    if (!ok) {
        char got[96];
        if (s->cols)
            return err_code(err, EXIT_DATAERR, "%s: tensor '%s': shape %s, expected [%d, %d] from config.json", file,
                            s->name, shape_str(t, got, sizeof got), s->rows, s->cols);
        return err_code(err, EXIT_DATAERR, "%s: tensor '%s': shape %s, expected [%d] from config.json", file, s->name,
                        shape_str(t, got, sizeof got), s->rows);
    }
    backend_t *be = m->be;
    dtype_t raw = t->dtype == ST_BF16 ? DT_BF16 : t->dtype == ST_F16 ? DT_F16 : DT_F32;
    if (s->mat && (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16) &&
        !(lora && lora_touches(lora, s->name))) {
        if (be->ops->weight_upload(be, s->mat, t->data, raw, s->rows, s->cols, s->name) == 0) return 0;
        return upload_failed(be, file, s->name, err);
    }
    size_t n = (size_t)s->rows * (size_t)(s->cols ? s->cols : 1);
    if (n + 1 > buf->cap) {
        free(buf->p);
        buf->cap = n + 1;
        buf->p = xmalloc(buf->cap * sizeof(float));
    }
    float *host = buf->p;
    int rc = st_to_f32(st, t, host, err);
    if (!rc) rc = check_finite(host, s, file, "", err);
    if (!rc && lora) rc = lora_apply(lora, s->name, host, s->rows, s->cols, err);
    if (!rc && lora) rc = check_finite(host, s, file, " after merging the LoRA adapter (is lora_alpha / r too large?)", err);
    if (rc) {
        err->code = EXIT_DATAERR;
        return -1;
    }
    if (s->mat) {
        rc = be->ops->weight_upload(be, s->mat, host, DT_F32, s->rows, s->cols, s->name);
    } else {
        *s->vec = be->ops->vec_upload(be, host, n);
        rc = *s->vec ? 0 : -1;
        if (s->vec == &m->w.final_norm) { // kept for model_forward_trace's final norm
            m->final_norm_host = xmalloc(n * sizeof(float));
            memcpy(m->final_norm_host, host, n * sizeof(float));
        }
    }
    if (rc) return upload_failed(be, file, s->name, err);
    return 0;
}

/* The layer whose last matrix (down_proj, the last of its specs) s loads, or -1. O(n_layers). */
static int spec_ends_layer(const model_t *m, const weight_spec_t *s) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (s->mat == &m->w.layers[l].w_down) return l;
    return -1;
}

/* Stack layer l's uploaded q, k, v into wqkv and gate, up into w_gu (weight_concat), so that each
 * runs as one GEMM; the parts are freed. Called right after the layer's last tensor is uploaded,
 * so the extra memory is one stacked matrix at a time. Returns 0, or -1 with err set (EXIT_OOM). */
static int layer_fuse(model_t *m, int l, err_t *err) {
    backend_t *be = m->be;
    layer_weights_t *L = &m->w.layers[l];
    bweight_t qkv[3] = {L->wq, L->wk, L->wv}, gu[2] = {L->w_gate, L->w_up};
    if (be->ops->weight_concat(be, &L->wqkv, qkv, 3) == 0) {
        memset(&L->wq, 0, sizeof L->wq), memset(&L->wk, 0, sizeof L->wk), memset(&L->wv, 0, sizeof L->wv);
        if (be->ops->weight_concat(be, &L->w_gu, gu, 2) == 0) {
            memset(&L->w_gate, 0, sizeof L->w_gate), memset(&L->w_up, 0, sizeof L->w_up);
            return 0;
        }
    }
    be->ops->sync(be, err); // the backend recorded why (out of memory)
    if (!err->code) err->code = EXIT_OOM;
    return err_prefix(err, "stacking layer %d's q|k|v and gate|up weights", l);
}

int weights_load(model_t *m, const st_set_t *st, lora_t *lora, const char *where, err_t *err) {
    m->w.layers = xcalloc((size_t)m->cfg.n_layers, sizeof *m->w.layers);
    weight_spec_t *specs;
    int n = weights_specs(&m->cfg, &m->w, &specs), rc = -1;
    if (check_unexpected(st, specs, n, m->cfg.model_type, err)) {
        err->code = EXIT_DATAERR;
        goto done;
    }
    host_buf_t buf = {0};
    int failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        if (i + 1 < n) st_prefetch(st, st_find(st, specs[i + 1].name));
        failed = load_one(m, st, lora, &specs[i], where, &buf, err) != 0;
        int l = failed ? -1 : spec_ends_layer(m, &specs[i]);
        if (l >= 0) failed = layer_fuse(m, l, err) != 0;
    }
    free(buf.p);
    if (failed) goto done;
    /* Values found on the device (fp16 range) are reported here; the message names the tensor. */
    if (m->be->ops->sync(m->be, err)) goto done;
    if (lora && lora_finish(lora, err)) {
        err->code = EXIT_DATAERR;
        goto done;
    }
    float *inv = xmalloc((size_t)(m->cfg.head_dim / 2) * sizeof(float));
    rope_inv_freq(&m->cfg, inv);
    m->w.inv_freq = m->be->ops->vec_upload(m->be, inv, (size_t)(m->cfg.head_dim / 2));
    free(inv);
    if (!m->w.inv_freq) {
        m->be->ops->sync(m->be, err);
        err->code = EXIT_OOM;
        goto done;
    }
    rc = 0;
done:
    free(specs);
    return rc;
}

void weights_free(model_t *m) {
    backend_t *be = m->be;
    if (!m->w.layers) return;
    weight_spec_t *specs;
    int n = weights_specs(&m->cfg, &m->w, &specs);
    for (int i = 0; i < n; i++) {
        if (specs[i].mat && specs[i].mat->data) be->ops->weight_free(be, specs[i].mat);
        if (specs[i].vec && *specs[i].vec) {
            be->ops->mem_free(be, *specs[i].vec);
            *specs[i].vec = NULL;
        }
    }
    free(specs);
    for (int l = 0; l < m->cfg.n_layers; l++) { // the stacked matrices (weight_specs lists their parts)
        layer_weights_t *L = &m->w.layers[l];
        if (L->wqkv.data) be->ops->weight_free(be, &L->wqkv);
        if (L->w_gu.data) be->ops->weight_free(be, &L->w_gu);
    }
    be->ops->mem_free(be, m->w.inv_freq);
    free(m->w.layers);
    free(m->final_norm_host);
    memset(&m->w, 0, sizeof m->w);
    m->final_norm_host = NULL;
}

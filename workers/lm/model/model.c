/* model.c: model_t's lifetime (load, free), its activation buffers and batch preparation.
 *
 * The forward pass itself is in forward.c; this file does everything around it: reading the
 * config, opening the checkpoint and adapter, sizing buffers for the batch (they only grow), and
 * turning B sequences into one packed varlen batch with the pooled row of each.
 */
#include <limits.h>
#include <stdio.h>

#include "exit_codes.h"
#include "model_impl.h"

const model_config_t *model_get_config(const model_t *m) { return &m->cfg; }

model_t *model_load(const model_load_opts_t *opts, err_t *err) {
    model_t *m = xcalloc(1, sizeof *m);
    m->be = opts->backend;
    st_set_t st = {0};
    lora_t *lora = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", opts->model_dir);
    if (model_config_load(&m->cfg, path, err)) {
        err->code = EXIT_DATAERR;
        goto fail;
    }
    int max_hd = m->be->ops->max_head_dim;
    if (max_hd && m->cfg.head_dim > max_hd) {
        err_code(err, EXIT_DATAERR, "%s: head_dim %d: the %s backend takes at most %d", path, m->cfg.head_dim,
                 m->be->ops->name, max_hd);
        goto fail;
    }
    if (st_open_dir(&st, opts->model_dir, err)) {
        err->code = EXIT_DATAERR;
        goto fail;
    }
    if (opts->adapter_dir && !(lora = lora_open(opts->adapter_dir, err))) {
        err->code = EXIT_DATAERR;
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s", opts->model_dir,
             st.n_files > 1 ? "model.safetensors.index.json" : "model.safetensors");
    if (weights_load(m, &st, lora, path, err)) goto fail;
    if (lora) lora_counts(lora, &m->lora_merged, &m->lora_replaced);
    lora_free(lora);
    st_close(&st);
    return m;
fail:
    lora_free(lora);
    st_close(&st);
    model_free(m);
    return NULL;
}

/* Free the activation buffers (not the weights). */
static void acts_free(model_t *m) {
    backend_t *be = m->be;
    void **bufs[] = {(void **)&m->x, &m->xn, &m->mm, &m->q, &m->k, &m->v, &m->att, (void **)&m->y, &m->hb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        be->ops->mem_free(be, *bufs[i]);
        *bufs[i] = NULL;
    }
    m->cap_T = 0;
}

void model_free(model_t *m) {
    if (!m) return;
    if (m->be) {
        acts_free(m);
        bbatch_t *bt = &m->batch;
        m->be->ops->mem_free(m->be, bt->tokens);
        m->be->ops->mem_free(m->be, bt->pos);
        m->be->ops->mem_free(m->be, bt->cu_seqlens);
        m->be->ops->mem_free(m->be, bt->last);
        weights_free(m);
    }
    free(m->h_tokens);
    free(m->h_pos);
    free(m->h_cu);
    free(m->h_last);
    model_config_free(&m->cfg);
    free(m);
}

/* Width of the fused GEMM output buffer m->mm: q|k|v, and later gate|up, share it. */
static size_t mm_width(const model_config_t *c) {
    size_t qkv = (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim, gu = 2 * (size_t)c->hidden_dim;
    return qkv > gu ? qkv : gu;
}

size_t model_activation_bytes(const model_config_t *c, int T, int work_bytes) {
    size_t t = (size_t)(T > 0 ? T : 0), qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t work = (size_t)c->dim + mm_width(c) + qd * 2 + kvd * 2 + (size_t)c->hidden_dim; // xn  mm  q,att  k,v  hb
    return t * (size_t)c->dim * 2 * sizeof(float) + t * work * (size_t)work_bytes; // x, y fp32
}

/* Grow the activation buffers to hold T tokens (at least 64, then doubling, so that a stream of
 * slightly longer batches does not reallocate every time). */
static int acts_ensure(model_t *m, int T, err_t *err) {
    if (T <= m->cap_T) return 0;
    acts_free(m);
    int cap = 64;
    while (cap < T) cap = cap > INT_MAX / 2 ? T : cap * 2;
    const model_config_t *c = &m->cfg;
    backend_t *be = m->be;
    size_t t = (size_t)cap, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    m->x = be->ops->act_alloc(be, t * c->dim, ACT_RESIDUAL);
    m->xn = be->ops->act_alloc(be, t * c->dim, ACT_WORK);
    m->mm = be->ops->act_alloc(be, t * mm_width(c), ACT_WORK);
    m->q = be->ops->act_alloc(be, t * qd, ACT_WORK);
    m->k = be->ops->act_alloc(be, t * kvd, ACT_WORK);
    m->v = be->ops->act_alloc(be, t * kvd, ACT_WORK);
    m->att = be->ops->act_alloc(be, t * qd, ACT_WORK);
    m->y = be->ops->act_alloc(be, t * c->dim, ACT_RESIDUAL);
    m->hb = be->ops->act_alloc(be, t * c->hidden_dim, ACT_WORK);
    if (!m->x || !m->xn || !m->mm || !m->q || !m->k || !m->v || !m->att || !m->y || !m->hb) {
        acts_free(m);
        be->ops->sync(be, err);
        err->code = EXIT_OOM;
        return err_prefix(err, "activations for %d tokens (%zu MiB)", cap,
                          model_activation_bytes(c, cap, be->compute == DT_F32 ? 4 : 2) >> 20);
    }
    m->cap_T = cap;
    return 0;
}

/* transformers' pooled row: argmax over positions of (position * (id != pad)). */
static int pooled_row(const int32_t *ids, int len, int pad) {
    if (pad < 0) return len - 1;
    for (int i = len - 1; i > 0; i--)
        if (ids[i] != pad) return i;
    return 0;
}

int model_prepare_batch(model_t *m, const int32_t *const *ids, const int *lens, int B, err_t *err) {
    if (B < 1) return err_code(err, EXIT_DATAERR, "empty batch");
    long long T = 0;
    int max_len = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1 || !ids[b]) return err_code(err, EXIT_DATAERR, "sequence %d: no tokens", b);
        for (int i = 0; i < lens[b]; i++)
            if (ids[b][i] < 0 || ids[b][i] >= m->cfg.vocab_size)
                return err_code(err, EXIT_DATAERR, "sequence %d: token %d: id %d is outside the vocabulary [0, %d)", b,
                                i, ids[b][i], m->cfg.vocab_size);
        T += lens[b];
        if (lens[b] > max_len) max_len = lens[b];
    }
    if (T > INT_MAX / 2) return err_code(err, EXIT_DATAERR, "batch of %lld tokens is too large", T);
    if (T > m->h_cap_T) {
        m->h_cap_T = (int)T;
        m->h_tokens = xrealloc(m->h_tokens, (size_t)T * sizeof(int32_t));
        m->h_pos = xrealloc(m->h_pos, (size_t)T * sizeof(int32_t));
    }
    if (B > m->h_cap_B) {
        m->h_cap_B = B;
        m->h_cu = xrealloc(m->h_cu, (size_t)(B + 1) * sizeof(int32_t));
        m->h_last = xrealloc(m->h_last, (size_t)B * sizeof(int32_t));
    }
    int at = 0;
    for (int b = 0; b < B; b++) {
        m->h_cu[b] = at;
        m->h_last[b] = at + pooled_row(ids[b], lens[b], m->cfg.pad_token_id);
        for (int i = 0; i < lens[b]; i++) {
            m->h_tokens[at + i] = ids[b][i];
            m->h_pos[at + i] = i;
        }
        at += lens[b];
    }
    m->h_cu[B] = at;
    bbatch_t host = {.B = B, .T = (int)T, .max_len = max_len, .tokens = m->h_tokens, .pos = m->h_pos,
                     .cu_seqlens = m->h_cu, .last = m->h_last, .h_cu_seqlens = m->h_cu};
    if (acts_ensure(m, (int)T, err)) return -1;
    if (m->be->ops->batch_upload(m->be, &m->batch, &host)) {
        m->be->ops->sync(m->be, err);
        err->code = EXIT_OOM;
        return err_prefix(err, "uploading a batch of %d tokens", (int)T);
    }
    m->batch.h_cu_seqlens = m->h_cu;
    return 0;
}

/* rope.c: rotary inverse frequencies, computed step by step in fp32 the way transformers does.
 *
 * Why so literal: rope angles reach position x inv_freq in the thousands, so one ulp in a
 * frequency shows up in the logits of long sequences. Each line below is one torch op on a
 * float32 tensor, with python scalars rounded to fp32 where torch rounds them:
 *   default: inv_freq = 1 / (base ** (arange(0, dim, 2) / dim))
 *   llama3:  wavelen = 2*pi / inv_freq (torch computes reciprocal(inv_freq) * 2*pi);
 *            low-frequency bands (wavelen > old_len / low) are divided by factor, the medium band
 *            is blended with smooth = (old_len / wavelen - low) / (high - low).
 * The cos/sin of pos * inv_freq are taken in the backend's qkv_rope op, also in fp32.
 */
#include <math.h>

#include "model_impl.h"

void rope_inv_freq(const model_config_t *cfg, float *out) {
    int dim = cfg->head_dim, half = dim / 2;
    float base = cfg->rope_theta;
    for (int i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)dim;
        out[i] = 1.0f / powf(base, expo);
    }
    if (strcmp(cfg->rope_type, "llama3") != 0) return;

    float factor = cfg->rope_factor, low = cfg->rope_low_freq_factor, high = cfg->rope_high_freq_factor;
    float old_len = (float)cfg->rope_original_max_pos;
    /* python floats: old_len / low_freq_factor in double, compared against an fp32 tensor. */
    float low_freq_wavelen = (float)((double)cfg->rope_original_max_pos / (double)low);
    float high_freq_wavelen = (float)((double)cfg->rope_original_max_pos / (double)high);
    float two_pi = (float)(2.0 * M_PI);
    for (int i = 0; i < half; i++) {
        float f = out[i];
        float wavelen = (1.0f / f) * two_pi;
        float f_llama = wavelen > low_freq_wavelen ? f / factor : f;
        float smooth = ((1.0f / wavelen) * old_len - low) / (high - low);
        float smoothed = (1.0f - smooth) * f_llama / factor + smooth * f_llama;
        int medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        out[i] = medium ? smoothed : f_llama;
    }
}

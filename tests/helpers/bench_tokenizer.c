/* bench_tokenizer.c: time the native tokenizer, single-threaded, on the texts of a JSON-lines
 * file ({"text": ...} per line), the same file tools/bench_tokenizer.py times HF `tokenizers`
 * on. Prints the load time, MB/s of UTF-8 input and the total id count (which must equal HF's).
 * Times are thread CPU seconds (see now_s).
 *
 * usage: bench_tokenizer TOKENIZER.json TEXTS.jsonl [--repeat N] [--concat] [--add-special-tokens]
 *   --repeat N              encode everything N times and report the best pass (default 3)
 *   --concat                encode all texts joined by "\n" as one text (default: one per line)
 *   --add-special-tokens    apply the post-processor (default: off)
 * It is a benchmark, not a test: it never fails on speed.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exit_codes.h"
#include "json_util.h"
#include "tokenizer.h"

/* CPU time of this thread: on a shared machine it is far steadier than wall time, and the
 * work is single-threaded, so it is the time the work took. */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_tokenizer TOKENIZER.json TEXTS.jsonl [--repeat N (default 3)] [--concat (default off)]"
                    " [--add-special-tokens (default off)]\n");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        usage();
        return EXIT_USAGE;
    }
    int repeat = 3, concat = 0, special = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--concat")) concat = 1;
        else if (!strcmp(argv[i], "--add-special-tokens")) special = 1;
        else {
            usage();
            return EXIT_USAGE;
        }
    }
    if (repeat < 1) repeat = 1;

    // Texts, back to back in one buffer.
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return EXIT_IOERR;
    }
    char *all = NULL, *line = NULL;
    size_t all_len = 0, all_cap = 0, linecap = 0, n_texts = 0, cap_texts = 0;
    size_t *offs = NULL, *lens = NULL;
    ssize_t ll;
    long lineno = 0;
    err_t err = {0};
    while ((ll = getline(&line, &linecap, f)) >= 0) {
        lineno++;
        json_t *j = json_util_load_buf(line, (size_t)ll, argv[2], &err);
        json_t *t = json_object_get(j, "text");
        if (!json_is_string(t)) {
            fprintf(stderr, "%s:%ld: expected {\"text\": \"...\"}\n", argv[2], lineno);
            return EXIT_DATAERR;
        }
        size_t n = json_string_length(t);
        if (all_len + n + 1 > all_cap) {
            all_cap = (all_len + n + 1) * 2;
            all = xrealloc(all, all_cap);
        }
        if (n_texts == cap_texts) {
            cap_texts = cap_texts ? cap_texts * 2 : 1024;
            offs = xrealloc(offs, cap_texts * sizeof *offs);
            lens = xrealloc(lens, cap_texts * sizeof *lens);
        }
        if (concat && n_texts) all[all_len++] = '\n';
        memcpy(all + all_len, json_string_value(t), n);
        offs[n_texts] = all_len;
        lens[n_texts++] = n;
        all_len += n;
        json_decref(j);
    }
    fclose(f);
    free(line);

    double t0 = now_s();
    tokenizer_t *tok = tokenizer_load(argv[1], &err);
    double t_load = now_s() - t0;
    if (!tok) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_DATAERR;
    }
    size_t bytes = concat ? all_len : 0;
    if (!concat)
        for (size_t i = 0; i < n_texts; i++) bytes += lens[i];

    double best = 1e30;
    size_t n_ids = 0;
    ids_t ids = {0};
    for (int r = 0; r < repeat; r++) {
        n_ids = 0;
        double s = now_s();
        if (concat) {
            ids.n = 0;
            if (tokenizer_encode(tok, all, all_len, special, &ids, &err) < 0) goto fail;
            n_ids = ids.n;
        } else {
            for (size_t i = 0; i < n_texts; i++) {
                ids.n = 0;
                if (tokenizer_encode(tok, all + offs[i], lens[i], special, &ids, &err) < 0) goto fail;
                n_ids += ids.n;
            }
        }
        double e = now_s() - s;
        if (e < best) best = e;
    }
    printf("{\"load_s\": %.3f, \"texts\": %zu, \"bytes\": %zu, \"ids\": %zu, \"best_s\": %.4f, \"mb_per_s\": %.2f}\n",
           t_load, concat ? (size_t)1 : n_texts, bytes, n_ids, best, (double)bytes / best / 1e6);
    ids_free(&ids);
    tokenizer_free(tok);
    free(all);
    free(offs);
    free(lens);
    return 0;
fail:
    fprintf(stderr, "%s\n", err.msg);
    return EXIT_DATAERR;
}

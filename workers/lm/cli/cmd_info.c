/* cmd_info.c: `lm-worker info`: options -> model_info_print (model/info.c), which describes a
 * checkpoint and what it will cost without loading it. It does not read any file itself.
 */
#include <stdio.h>

#include "cmds.h"
#include "exit_codes.h"
#include "model/model.h"
#include "opts.h"

/* Print `lm-worker info`'s options and their defaults to f. */
static void info_usage(FILE *f) {
    fprintf(f,
            "usage: lm-worker info --model DIR [options]\n"
            "  --model DIR          Hugging Face checkpoint directory; required\n"
            "  --adapter DIR        PEFT LoRA adapter to describe (default: none)\n"
            "  --max-length N       longest sequence, for the activation estimate (default: 1024)\n"
            "  --batch-tokens N     tokens per packed batch, for the activation estimate (default: 8192)\n"
            "  -h, --help           this text\n");
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL;
    int max_length = 1024, batch_tokens = 8192;
    const opt_t opts[] = {
        {"model", OPT_STR, .dst = &model, .required = 1},
        {"adapter", OPT_STR, .dst = &adapter},
        {"max-length", OPT_INT, .dst = &max_length, .lo = 1, .hi = 1 << 24},
        {"batch-tokens", OPT_INT, .dst = &batch_tokens, .lo = 1, .hi = 1 << 24},
    };
    int rc = opts_parse("info", argc, argv, opts, OPTS_N(opts), info_usage);
    if (rc != -1) return rc;
    err_t err = {0};
    if (model_info_print(model, adapter, max_length, batch_tokens, &err) == 0) return EXIT_OK;
    fprintf(stderr, "lm-worker info: %s\n", err.msg);
    return err.code ? err.code : EXIT_DATAERR;
}

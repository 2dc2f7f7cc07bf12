/* preflight.h: everything orchestrate can check before the first stage starts (docs/orchestrate.md).
 *
 * A plan drives hours of GPU time, so what would fail late is checked first, and every problem
 * is listed, each naming its plan key ("plan.json: models[1].tokenizer: ..."): each worker's
 * program (a command's argv[0] resolves and is executable; an lm-worker stage passes
 * `lm-worker check`, which loads config, tokenizer, adapter and safetensors headers, measures
 * the template against max_length and opens the device the run would use), the output's
 * directory and the work directory are writable, and the model's labels match the plan's.
 * `orchestrate doctor` (doctor.c) reuses the lm-worker check. Nothing here starts a stage,
 * writes the output or changes the work directory's contents.
 */
#ifndef ORCH_PREFLIGHT_H
#define ORCH_PREFLIGHT_H

#include <stdio.h>

#include "orch.h"

/* What `lm-worker check` said about one model. */
typedef struct {
    int status;       // exit status (128 + signal when killed; -1 when it could not be started)
    char *json;       // its last stdout line (the JSON object), or NULL; malloc'd
    char *stderr_txt; // everything it printed on stderr; malloc'd, never NULL
} lm_check_t;

/* Run `lm-worker check` with model m's settings as the run would pass them to `lm-worker run`
 * on `slot` (the same --device, CUDA_VISIBLE_DEVICES and env), plus --input plan->input.
 * Fills out (free with lm_check_free). Returns 0 when it ran (whatever its status), or -1 with
 * err set when it could not be started. */
int preflight_lm_check(const plan_t *plan, int m, const slot_t *slot, lm_check_t *out, err_t *err);
/* Free what preflight_lm_check filled; a zeroed out is a no-op. */
void lm_check_free(lm_check_t *c);

/* Run every check on plan (loaded, CLI overrides applied) for the slots the run will use.
 * work_dir_key names where the work directory came from in messages ("work_dir" or
 * "--work-dir"). Prints one line per stage checked and one line per problem to f. Returns the
 * number of problems (0: the run may start). */
int preflight_run(const plan_t *plan, const slot_t *slots, int n_slots, const char *work_dir_key, FILE *f);

/* The output and work_dir checks of preflight_run alone. Returns the number of problems. */
int preflight_paths(const plan_t *plan, const char *work_dir_key, FILE *f);

/* The checks of model m alone (its program, or `lm-worker check` on slot). Returns the number
 * of problems. */
int preflight_model(const plan_t *plan, int m, const slot_t *slot, FILE *f);

/* Run argv (argv[0] a path) with envp, capturing its stdout and stderr (each malloc'd and
 * NUL-terminated) until it exits; stdin is /dev/null. *status: its exit status, 128 + signal
 * when killed. Returns 0, or -1 with err set when it could not be started. */
int preflight_capture(char *const *argv, char *const *envp, char **out, char **errout, int *status, err_t *err);

/* Where command model m's program (command[0]) resolves: the path it runs (malloc'd) or NULL
 * with why (a sentence) in `why`. A program given with a '/' is relative to the plan's
 * directory; a bare name is looked up on the model's PATH (its env, else orchestrate's). */
char *preflight_resolve_program(const plan_t *plan, int m, char *why, size_t why_len);

#endif

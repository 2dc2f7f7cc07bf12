/* spawn.h: how one attempt of a job becomes a command line and an environment.
 *
 * This is the pure part of spawning: it builds the argv (placeholders substituted, or the
 * lm-worker command line) and the environment (inherited + the model's env + ORCHESTRATE_*),
 * so that it can be unit-tested without starting processes. attempt.c (attempt_start) hands
 * the result to uv_spawn, behind the PDEATHSIG shim (shim.h). The worker contract is
 * docs/workers.md.
 */
#ifndef ORCH_SPAWN_H
#define ORCH_SPAWN_H

#include "orch.h"

/* The file descriptor, in the worker, of the progress pipe (ORCHESTRATE_PROGRESS_FD). */
#define SPAWN_PROGRESS_FD 3

/* The placeholders a command may use, NULL-terminated: "input", "output", "device",
 * "batch_size", "max_length", "model" (written {input} ... in a command). plan.c rejects any
 * other {word}; spawn_build_argv substitutes these. */
extern const char *const spawn_placeholders[];

/* Build the argv of one attempt of job on slot with batch_size: a command model's template with
 * {input} {output} {device} {batch_size} {max_length} {model} substituted in every element (and
 * "--input PATH" / "--output PATH" appended when the template never names them), or the
 * lm-worker command line. cpu_threads is the --threads value for lm-worker on a CPU slot when
 * the model does not set one. Returns a NULL-terminated vector (free with spawn_strv_free), or
 * NULL with err set (a configuration error, e.g. {model} used but no model is set). */
char **spawn_build_argv(const plan_t *plan, const job_t *job, const slot_t *slot, int batch_size,
                        int cpu_threads, err_t *err);

/* Build the worker's environment: `inherited` (usually environ), then the model's env, then
 * ORCHESTRATE_INPUT/OUTPUT/DEVICE/BATCH_SIZE/MODEL/SHARD/VARIANT/PROGRESS_FD,
 * CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER=PCI_BUS_ID; a later definition of a name replaces
 * an earlier one. Returns a NULL-terminated vector (free with spawn_strv_free). */
char **spawn_build_env(const plan_t *plan, const job_t *job, const slot_t *slot, int batch_size,
                       char *const *inherited);

/* The number of CPU threads each of n_workers parallel CPU workers should use:
 * max(1, usable cores / n_workers). */
int spawn_cpu_threads(int n_workers);

/* Render argv as one shell-quoted line for logs ("python3 'my script.py' --x 1"). Returns a
 * malloc'ed string. */
char *spawn_format_argv(char *const *argv);

/* Free a NULL-terminated vector of malloc'ed strings. Safe on NULL. */
void spawn_strv_free(char **v);

#endif

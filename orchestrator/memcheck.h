/* memcheck.h: "is the GPU memory back?" between stages.
 *
 * Before the first stage orchestrate records each used GPU's memory (the baseline). After each
 * stage it waits up to plan->mem_wait_s for every GPU to come back within mem_tolerance_mib of
 * its baseline, because the next stage's model needs that memory and a worker that is gone may
 * not have released it yet (driver teardown) or may have left a child behind. When it does not
 * come back, it lists the processes holding memory and applies plan->mem_leak: fail the run,
 * kill the holders that are ours (then wait once more), or warn and go on.
 */
#ifndef ORCH_MEMCHECK_H
#define ORCH_MEMCHECK_H

#include <sys/types.h>

#include "nvml.h"
#include "orch.h"

#define MEMCHECK_MAX_HOLDERS 16

typedef struct {
    int gpu;                               // NVML index
    double baseline_mib;                   // before the first stage
    double after_mib;                      // at the end of the wait after the stage
    double waited_s;                       // how long we waited for it to come back
    int leaked;                            // still above baseline + tolerance when we gave up
    pid_t holders[MEMCHECK_MAX_HOLDERS];   // (n_holders) processes holding memory then
    int n_holders;                         // entries in holders
    int killed;                            // holders we killed (mem_leak: kill)
} memcheck_gpu_t;

typedef struct {
    nvml_t *nvml;                          // not owned
    int *gpus;                             // (n_gpus) distinct GPUs the slots use
    int n_gpus;                            // entries in gpus and baseline
    double *baseline;                      // (n_gpus) MiB
} memcheck_t;

/* Record the baseline of the GPUs used by slots. Returns 0, or -1 with err set. */
int memcheck_init(memcheck_t *mc, nvml_t *nvml, const slot_t *slots, int n_slots, err_t *err);
/* Free the GPU list and baseline and zero *mc (the nvml handle is not closed). */
void memcheck_free(memcheck_t *mc);

/* After stage `stage`: wait for the memory, then apply the plan's policy. out receives one
 * entry per GPU (mc->n_gpus). Returns 0 (memory back, or policy warn), or -1 with err set: a
 * leak under policy fail/kill (code 1), or an interruption (code 128 + signal). */
int memcheck_stage(memcheck_t *mc, const plan_t *plan, run_ctx_t *ctx, const char *stage,
                   memcheck_gpu_t *out, err_t *err);

#endif

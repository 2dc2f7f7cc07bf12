/* executor_slurm.h: running attempts as Slurm job steps (`executor: "slurm"`, docs/slurm.md).
 *
 * Each attempt is still started by attempt.c through the local shim (so that everything it
 * starts dies with orchestrate); the shim's command becomes
 *   srun --ntasks=1 --nodes=1 --exclusive --kill-on-bad-exit=1 --job-name=orch-<job>
 *        [--gres=gpu:1 | --cpus-per-task=N] [slurm.srun_args...] -- <orchestrate> --shim 0 <worker argv>
 * one job step inside the allocation orchestrate runs in. The remote shim (PPID 0: no parent
 * to watch, its parent is slurmstepd) prints SLURM_STEP_MARKER "<job>.<step> <host>" on stderr
 * first, which attempt.c reads to learn the step, to stop it with scancel and to record it.
 * Stdout and stderr come back through srun; the progress fd does not: the remote shim gives the
 * worker a pipe as fd 3 and a forwarder process copies its lines onto stderr, each prefixed
 * with SLURM_PROGRESS_MARKER, which attempt.c takes as progress lines.
 * This module does NOT decide anything about retries or outcomes (run.c does).
 */
#ifndef ORCH_EXECUTOR_SLURM_H
#define ORCH_EXECUTOR_SLURM_H

#include <stddef.h>

#include "orch.h"

/* The first stderr line of a step's remote shim: SLURM_STEP_MARKER "<jobid>.<stepid> <hostname>". */
#define SLURM_STEP_MARKER "orchestrate-slurm-step: "

/* The prefix of a progress line forwarded on a step's stderr: SLURM_PROGRESS_MARKER "progress 3 10". */
#define SLURM_PROGRESS_MARKER "orchestrate-slurm-progress: "

/* The last line of a step's remote shim, after the worker's tree has ended: SLURM_MEM_MARKER
 * "gpu=<nvml index> before=<MiB> after=<MiB>", or SLURM_MEM_MARKER "not done: <why>". */
#define SLURM_MEM_MARKER "orchestrate-slurm-mem: "

/* The environment variable (set in a step's environment by spawn.c) that gives the step's
 * shim the plan's memory.tolerance_mib and memory.wait_s: "<tolerance> <wait_s>". */
#define SLURM_MEM_ENV "ORCHESTRATE_SLURM_MEM"

/* The step shim's GPU memory check: one reading before the worker starts, one after its tree
 * has ended (waiting up to wait_s for the memory to come back within the tolerance). */
typedef struct {
    int gpu;                    // NVML index of the step's GPU (SLURM_STEP_GPUS), or -1: not done
    double before_mib;          // used memory before the worker started
    char why[160];              // why the check is not done (gpu -1)
    void *nvml;                 // nvml_t handle while open
} slurm_mem_t;

/* Parse a SLURM_MEM_MARKER line into *gpu (-1 for "not done", why then holds the reason),
 * *before and *after. Returns 1 when the line is such a marker, else 0. */
int slurm_parse_mem(const char *line, size_t len, int *gpu, double *before, double *after, char *why,
                    size_t why_len);

/* Step shim: open NVML and take the "before" reading of the step's GPU (or note why not). */
void slurm_mem_before(slurm_mem_t *m);
/* Step shim: take the "after" reading (waiting as SLURM_MEM_ENV says), print the SLURM_MEM_MARKER
 * line on stderr and close NVML. */
void slurm_mem_after(slurm_mem_t *m);

/* Check that orchestrate runs inside a Slurm allocation (SLURM_JOB_ID set) and that srun is
 * on PATH. Returns 0, or -1 with err saying how to get an allocation (salloc/sbatch line). */
int slurm_check_allocation(err_t *err);

/* Build the slots for the allocation: with gpus "cpu", cpu_workers CPU slots; else one slot per
 * GPU of the allocation (SLURM_GPUS_ON_NODE x SLURM_NNODES, else SLURM_JOB_GPUS, else scontrol
 * show job), or cpu_workers CPU slots when it has none (note says so). GPU slots leave
 * CUDA_VISIBLE_DEVICES to Slurm. *slots is malloc'ed. Returns 0, or -1 with err set. */
int slurm_slots(const plan_t *plan, slot_t **slots, int *n_slots, char *note, size_t note_len, err_t *err);

/* The argv (NULL-terminated, free with spawn_strv_free) that runs worker_argv as one job step
 * for job on slot: srun's options, then `self --shim 0` and worker_argv. cpus is the
 * --cpus-per-task of a CPU slot. */
char **slurm_step_argv(const plan_t *plan, const job_t *job, const slot_t *slot, int cpus,
                       const char *self, char *const *worker_argv);

/* Parse a SLURM_STEP_MARKER line (len bytes, no line end) into step ("<job>.<step>") and node.
 * Returns 1 when the line is a marker, else 0. */
int slurm_parse_marker(const char *line, size_t len, char *step, size_t step_len, char *node, size_t node_len);

/* Print the marker for this step (from SLURM_JOB_ID, SLURM_STEP_ID and the hostname) on stderr;
 * the remote shim calls it first. Does nothing outside a step. */
void slurm_print_marker(void);

/* For the remote shim, before it forks the worker: make a pipe and fork a forwarder process that
 * copies each line read from it onto stderr behind SLURM_PROGRESS_MARKER (one write per line)
 * until EOF. Returns the pipe's write end (O_CLOEXEC) for the worker's fd 3, or -1 (no
 * progress; the reason is printed on stderr). The caller closes it once the worker is forked;
 * the forwarder is one more child of the shim, reaped and, if need be, killed with its subtree. */
int slurm_progress_forwarder(void);

#endif

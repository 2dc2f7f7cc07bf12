/* cpu_pool.h: a tiny fixed-size thread pool for the CPU backend's data-parallel ops.
 *
 * Why: every CPU op (attention rows, norms, activations) is a loop over independent tasks; the
 * pool runs such a loop on N threads (the caller is one of them) with dynamic scheduling, so
 * causal attention rows of unequal cost still balance. It deliberately does nothing else: no
 * queues, no futures, one loop at a time, and it is not reentrant (a task must not call run).
 */
#ifndef LM_CPU_POOL_H
#define LM_CPU_POOL_H

/* One task: `task` in [0, n_tasks), `thread` in [0, threads) identifies per-thread scratch. */
typedef void (*cpu_pool_fn_t)(void *ctx, int task, int thread);

typedef struct cpu_pool cpu_pool_t;

/* Start a pool of `threads` threads in all (threads - 1 workers plus the caller); threads < 1
 * means 1. Returns NULL when a thread cannot be created. */
cpu_pool_t *cpu_pool_create(int threads);

/* Run fn(ctx, i, thread) for every i in [0, n_tasks) and return when all are done. */
void cpu_pool_run(cpu_pool_t *p, int n_tasks, cpu_pool_fn_t fn, void *ctx);

/* Number of threads, the caller included. */
int cpu_pool_threads(const cpu_pool_t *p);

/* Stop and join the workers. Safe on NULL. */
void cpu_pool_destroy(cpu_pool_t *p);

/* Number of CPUs this process may run on (sched_getaffinity), at least 1. */
int cpu_pool_ncpus(void);

#endif

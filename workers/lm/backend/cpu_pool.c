/* cpu_pool.c: the CPU backend's thread pool (see cpu_pool.h).
 *
 * Workers sleep on a condition variable until the generation counter moves, then claim task
 * indices from one atomic counter until it passes n_tasks. The caller claims tasks too and then
 * waits for the workers that are still busy. One mutex guards the job description; the task
 * counter itself is lock-free so that small tasks stay cheap.
 */
#include "cpu_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

struct cpu_pool {
    int threads;              // total, caller included
    pthread_t *workers;       // (threads - 1)
    pthread_mutex_t mu;       // guards gen, busy and stop
    pthread_cond_t wake;      // signalled when a job starts or the pool stops
    pthread_cond_t done;      // signalled when the last busy worker finishes
    unsigned long gen;        // bumped once per job
    int busy;                 // workers still inside the current job
    int stop;                 // set by destroy
    cpu_pool_fn_t fn;         // current job
    void *ctx;                // fn's argument
    int n_tasks;              // tasks in the current job
    atomic_int next;          // next unclaimed task index
};

/* Claim and run tasks of the current job until none is left. */
static void pool_drain(cpu_pool_t *p, int thread) {
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n_tasks) return;
        p->fn(p->ctx, i, thread);
    }
}

typedef struct {
    cpu_pool_t *pool; // the pool this thread serves
    int thread;       // this thread's index in [1, threads) (0 is the caller)
} worker_arg_t;

/* Worker thread: wait for a new job generation, drain its tasks, report when the last worker is
 * done; exits when the pool stops. */
static void *pool_worker(void *arg) {
    worker_arg_t wa = *(worker_arg_t *)arg;
    free(arg);
    cpu_pool_t *p = wa.pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->stop) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        pool_drain(p, wa.thread);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

cpu_pool_t *cpu_pool_create(int threads) {
    cpu_pool_t *p = xcalloc(1, sizeof *p);
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    p->workers = xcalloc((size_t)p->threads, sizeof *p->workers);
    for (int t = 1; t < p->threads; t++) {
        worker_arg_t *wa = xmalloc(sizeof *wa);
        wa->pool = p;
        wa->thread = t;
        if (pthread_create(&p->workers[t - 1], NULL, pool_worker, wa) != 0) {
            free(wa);
            p->threads = t; // destroy joins only the workers that exist
            cpu_pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

void cpu_pool_run(cpu_pool_t *p, int n_tasks, cpu_pool_fn_t fn, void *ctx) {
    if (n_tasks <= 0) return;
    /* A single task or a single thread: run inline and skip the wake-up cost. */
    if (p->threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->busy = p->threads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    pool_drain(p, 0);

    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

int cpu_pool_threads(const cpu_pool_t *p) { return p->threads; }

void cpu_pool_destroy(cpu_pool_t *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->threads; t++) pthread_join(p->workers[t - 1], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int cpu_pool_ncpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

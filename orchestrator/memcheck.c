/* memcheck.c: baseline and post-stage GPU memory checks (see memcheck.h). Polls every
 * POLL_S seconds through run_ctx_sleep, so Ctrl-C still works while we wait. */
#include "memcheck.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "run.h"

#define POLL_S 0.25

int memcheck_init(memcheck_t *mc, nvml_t *nvml, const slot_t *slots, int n_slots, err_t *err) {
    memset(mc, 0, sizeof *mc);
    mc->nvml = nvml;
    mc->gpus = xcalloc((size_t)n_slots + 1, sizeof *mc->gpus);
    for (int s = 0; s < n_slots; s++) {
        if (slots[s].gpu < 0) continue;
        int seen = 0;
        for (int i = 0; i < mc->n_gpus; i++) seen |= mc->gpus[i] == slots[s].gpu;
        if (!seen) mc->gpus[mc->n_gpus++] = slots[s].gpu;
    }
    mc->baseline = xcalloc((size_t)mc->n_gpus + 1, sizeof *mc->baseline);
    if (mc->n_gpus && nvml_read_used(nvml, mc->gpus, mc->n_gpus, mc->baseline, err) != 0) {
        memcheck_free(mc);
        return err_prefix(err, "reading the GPU memory baseline");
    }
    return 0;
}

void memcheck_free(memcheck_t *mc) {
    free(mc->gpus);
    free(mc->baseline);
    memset(mc, 0, sizeof *mc);
}

/* Wait until every GPU is within tolerance or wait_s passed; fills after_mib, waited_s and
 * leaked. Returns 0, -1 on a read error (err set), or the signal that interrupted the wait. */
static int wait_for_memory(memcheck_t *mc, const plan_t *plan, run_ctx_t *ctx, memcheck_gpu_t *out,
                           err_t *err) {
    double t0 = clock_mono_s();
    double *used = xcalloc((size_t)mc->n_gpus, sizeof *used);
    int rc = 0;
    for (;;) {
        if (nvml_read_used(mc->nvml, mc->gpus, mc->n_gpus, used, err) != 0) {
            rc = -1;
            break;
        }
        int all_back = 1;
        for (int i = 0; i < mc->n_gpus; i++) {
            out[i].gpu = mc->gpus[i];
            out[i].baseline_mib = mc->baseline[i];
            out[i].after_mib = used[i];
            out[i].leaked = used[i] > mc->baseline[i] + plan->mem_tolerance_mib;
            out[i].waited_s = clock_mono_s() - t0;
            all_back &= !out[i].leaked;
        }
        if (all_back || clock_mono_s() - t0 >= plan->mem_wait_s) break;
        int sig = run_ctx_sleep(ctx, POLL_S);
        if (sig) {
            rc = sig;
            break;
        }
    }
    free(used);
    return rc;
}

/* Describe the holders of out's GPU as "1234 (python3, ours), 99 (Xorg)". */
static void describe_holders(const memcheck_gpu_t *g, run_ctx_t *ctx, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int h = 0; h < g->n_holders && len + 1 < n; h++) {
        char path[64], comm[64] = "?";
        snprintf(path, sizeof path, "/proc/%ld/comm", (long)g->holders[h]);
        FILE *f = fopen(path, "re");
        if (f) {
            if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = '\0';
            fclose(f);
        }
        len += (size_t)snprintf(buf + len, n - len, "%s%ld (%s%s)", h ? ", " : "", (long)g->holders[h],
                                comm, run_ctx_owns_pid(ctx, g->holders[h]) ? ", started by orchestrate" : "");
    }
    if (g->n_holders == 0) snprintf(buf, n, "no process listed by NVML");
}

int memcheck_stage(memcheck_t *mc, const plan_t *plan, run_ctx_t *ctx, const char *stage,
                   memcheck_gpu_t *out, err_t *err) {
    memset(out, 0, (size_t)mc->n_gpus * sizeof *out);
    if (mc->n_gpus == 0) return 0;
    progress_t *con = run_ctx_console(ctx);
    int rc = wait_for_memory(mc, plan, ctx, out, err);
    if (rc < 0) return -1;
    if (rc > 0) return err_code(err, 128 + rc, "interrupted by %s while waiting for GPU memory", run_signal_name(rc));

    int leaks = 0;
    for (int i = 0; i < mc->n_gpus; i++) {
        if (!out[i].leaked) continue;
        leaks++;
        out[i].n_holders = nvml_holders(mc->nvml, out[i].gpu, out[i].holders, MEMCHECK_MAX_HOLDERS);
    }
    if (leaks == 0) return 0;

    if (plan->mem_leak == MEM_LEAK_KILL) {
        int killed = 0;
        for (int i = 0; i < mc->n_gpus; i++)
            for (int h = 0; out[i].leaked && h < out[i].n_holders; h++)
                if (run_ctx_owns_pid(ctx, out[i].holders[h]) && kill(out[i].holders[h], SIGKILL) == 0)
                    out[i].killed++, killed++;
        if (killed) {
            progress_note(con, "orchestrate: after stage %s: killed %d leftover process(es) holding GPU memory",
                          stage, killed);
            memcheck_gpu_t *again = xcalloc((size_t)mc->n_gpus, sizeof *again);
            rc = wait_for_memory(mc, plan, ctx, again, err);
            for (int i = 0; i < mc->n_gpus && rc == 0; i++) {
                out[i].after_mib = again[i].after_mib;
                out[i].waited_s += again[i].waited_s;
                out[i].leaked = again[i].leaked;
            }
            free(again);
            if (rc < 0) return -1;
            if (rc > 0) return err_code(err, 128 + rc, "interrupted by %s while waiting for GPU memory", run_signal_name(rc));
            leaks = 0;
            for (int i = 0; i < mc->n_gpus; i++) leaks += out[i].leaked;
            if (leaks == 0) return 0;
        }
    }

    char msg[sizeof err->msg];
    size_t len = 0;
    msg[0] = '\0';
    for (int i = 0; i < mc->n_gpus && len + 1 < sizeof msg; i++) {
        if (!out[i].leaked) continue;
        char holders[512];
        describe_holders(&out[i], ctx, holders, sizeof holders);
        len += (size_t)snprintf(msg + len, sizeof msg - len,
                                "%sGPU %d holds %.0f MiB, %.0f MiB over its baseline of %.0f MiB "
                                "(tolerance %.0f) after waiting %.1f s; held by: %s",
                                len ? "; " : "", out[i].gpu, out[i].after_mib,
                                out[i].after_mib - out[i].baseline_mib, out[i].baseline_mib,
                                plan->mem_tolerance_mib, out[i].waited_s, holders);
    }
    if (plan->mem_leak == MEM_LEAK_WARN) {
        progress_note(con, "orchestrate: warning: after stage %s: %s (memory.on_leak is warn: going on)",
                      stage, msg);
        return 0;
    }
    return err_code(err, 1, "GPU memory not released after stage %s: %s (set memory.on_leak to "
                    "\"warn\" to go on anyway, or \"kill\" to kill leftover workers)", stage, msg);
}

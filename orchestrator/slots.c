/* slots.c: slots from the plan's gpus setting and the --dry-run stage listing. */
#include "slots.h"

#include <stdlib.h>

/* Make s a CPU slot: no GPU, device "cpu", and an empty CUDA_VISIBLE_DEVICES. */
static void slot_cpu(slot_t *s) {
    memset(s, 0, sizeof *s);
    s->gpu = -1;
    snprintf(s->device, sizeof s->device, "cpu");
    s->cuda_visible[0] = '\0';  // no GPU visible: a worker cannot grab one by accident
}

/* A GPU slot. The worker sees exactly one GPU (CUDA_VISIBLE_DEVICES), which it therefore
 * calls cuda:0, whatever its index on the machine. */
static void slot_gpu(slot_t *s, int gpu) {
    memset(s, 0, sizeof *s);
    s->gpu = gpu;
    snprintf(s->device, sizeof s->device, "cuda:0");
    snprintf(s->cuda_visible, sizeof s->cuda_visible, "%d", gpu);
}

int slots_init(const plan_t *plan, const nvml_t *nvml, slot_t **slots, int *n_slots, char *note,
               size_t note_len, err_t *err) {
    note[0] = '\0';
    *slots = NULL;
    *n_slots = 0;
    int n_cpu = plan->cpu_workers > 0 ? plan->cpu_workers : 1;
    if (plan->use_cpu) {
        *slots = xcalloc((size_t)n_cpu, sizeof **slots);
        for (int i = 0; i < n_cpu; i++) slot_cpu(&(*slots)[i]);
        *n_slots = n_cpu;
        return 0;
    }
    if (plan->gpus_auto) {
        int count = nvml ? nvml_device_count(nvml) : 0;
        if (count <= 0) {
            snprintf(note, note_len, "gpus is \"auto\" but %s: running %d worker(s) on the CPU",
                     nvml ? "NVML reports no GPU" : "NVML is not available", n_cpu);
            *slots = xcalloc((size_t)n_cpu, sizeof **slots);
            for (int i = 0; i < n_cpu; i++) slot_cpu(&(*slots)[i]);
            *n_slots = n_cpu;
            return 0;
        }
        *slots = xcalloc((size_t)count, sizeof **slots);
        for (int i = 0; i < count; i++) slot_gpu(&(*slots)[i], i);
        *n_slots = count;
        return 0;
    }
    if (plan->n_gpus <= 0) return err_fmt(err, "%s: gpus: no GPU listed", plan->path);
    if (nvml) {
        for (int i = 0; i < plan->n_gpus; i++)
            if (plan->gpus[i] >= nvml_device_count(nvml))
                return err_fmt(err, "%s: gpus: GPU %d does not exist (NVML sees %d GPU(s): 0..%d)",
                               plan->path, plan->gpus[i], nvml_device_count(nvml),
                               nvml_device_count(nvml) - 1);
    }
    *slots = xcalloc((size_t)plan->n_gpus, sizeof **slots);
    for (int i = 0; i < plan->n_gpus; i++) slot_gpu(&(*slots)[i], plan->gpus[i]);
    *n_slots = plan->n_gpus;
    return 0;
}

int slots_use_gpu(const slot_t *slots, int n_slots) {
    for (int i = 0; i < n_slots; i++)
        if (slots[i].gpu >= 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------ dry run */

void slots_print_stage_plan(FILE *f, const plan_t *plan, int model, const job_t *jobs, int n_jobs,
                            const slot_t *slots, int n_slots, int fresh) {
    const plan_model_t *m = &plan->models[model];
    fprintf(f, "  %-36s %-9s %7s %7s %12s  %s\n", "job", "variant", "shard", "rows", "cost (bytes)", "status");
    int *order = xcalloc((size_t)n_jobs + 1, sizeof *order);
    int n_run = 0;
    for (int j = 0; j < n_jobs; j++) {
        int reuse = jobs[j].status == JOB_REUSED && !fresh;
        char shard[32];
        snprintf(shard, sizeof shard, "%d/%d", jobs[j].shard, jobs[j].n_shards);
        fprintf(f, "  %-36s %-9s %7s %7zu %12zu  %s\n", jobs[j].name,
                tta_name(jobs[j].variant), shard, jobs[j].n_rows,
                jobs[j].cost, reuse ? "reuse (validated output recorded)" : "run");
        if (!reuse) order[n_run++] = j;
    }
    if (n_run == 0) {
        fprintf(f, "  schedule: nothing to run, every output is reused\n");
        free(order);
        return;
    }
    // The run's rule: jobs longest first, each to the slot that frees up first. Estimating a
    // job's time by its cost, that is the slot with the least cost assigned so far.
    run_order_jobs(jobs, order, n_run);
    size_t *load = xcalloc((size_t)n_slots, sizeof *load);
    int *slot_of = xcalloc((size_t)n_jobs + 1, sizeof *slot_of);
    for (int i = 0; i < n_run; i++) {
        int best = 0;
        for (int s = 1; s < n_slots; s++)
            if (load[s] < load[best]) best = s;
        slot_of[order[i]] = best;
        load[best] += jobs[order[i]].cost;
    }
    fprintf(f, "  schedule (longest first; batch size %d, timeout %s, retries %d):\n", m->batch_size,
            m->timeout_s > 0 ? "set" : "none", m->retries);
    for (int s = 0; s < n_slots; s++) {
        fprintf(f, "    slot %d (%s%s%s): ", s, slots[s].device, slots[s].gpu >= 0 ? ", GPU " : "",
                slots[s].gpu >= 0 ? slots[s].cuda_visible : "");
        int first = 1;
        for (int i = 0; i < n_run; i++) {
            if (slot_of[order[i]] != s) continue;
            fprintf(f, "%s%s", first ? "" : " -> ", jobs[order[i]].name);
            first = 0;
        }
        fprintf(f, "%s  [%zu bytes]\n", first ? "(idle)" : "", load[s]);
    }
    free(load);
    free(slot_of);
    free(order);
}

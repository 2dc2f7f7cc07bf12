/* slots.h: the places a worker can run (one per GPU, or cpu_workers on the CPU) and the
 * --dry-run listing. Small pieces of main.c's flow that
 * are easier to read (and test) on their own. */
#ifndef ORCH_SLOTS_H
#define ORCH_SLOTS_H

#include <stdio.h>

#include "nvml.h"
#include "orch.h"

/* Build the slots for plan's gpus setting: "cpu" -> cpu_workers CPU slots; a list -> one slot
 * per GPU (checked against NVML's device count when nvml is non-NULL); "auto" -> one slot per
 * GPU NVML sees, or the CPU when there is no NVML or no GPU (note then says so). *slots is
 * malloc'ed. Returns 0, or -1 with err set. */
int slots_init(const plan_t *plan, const nvml_t *nvml, slot_t **slots, int *n_slots, char *note,
               size_t note_len, err_t *err);

/* 1 when any slot is a GPU. */
int slots_use_gpu(const slot_t *slots, int n_slots);

/* Print the --dry-run listing of one stage: its jobs (variant, shard, rows, cost, reuse status)
 * and the longest-first schedule the run would follow, estimating time by cost. */
void slots_print_stage_plan(FILE *f, const plan_t *plan, int model, const job_t *jobs, int n_jobs,
                            const slot_t *slots, int n_slots, int fresh);

#endif

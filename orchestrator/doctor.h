/* doctor.h: `orchestrate doctor`, the machine and the plan checked without running anything
 * (doctor.c; docs/orchestrate.md). */
#ifndef ORCH_DOCTOR_H
#define ORCH_DOCTOR_H

#include "orch.h"

/* Run `orchestrate doctor` with argv = {"doctor", options...}. Prints the GPUs, the driver, the
 * lm-worker device and, with a plan, whether each stage can run. Returns the exit status: 0
 * when every stage can run (or there is no plan), 1 when one cannot, 64 for a bad option. */
int doctor_main(int argc, char **argv);

#endif

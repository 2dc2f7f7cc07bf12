/* nvml.h: GPU memory readings through NVML, loaded at run time with dlopen.
 *
 * orchestrate never initialises CUDA (a CUDA context would itself hold GPU memory and pin the
 * devices); it only asks the driver, through libnvidia-ml.so.1, how much memory each GPU uses
 * and which processes hold it. Without the library (CPU machines, CI) nvml_open returns NULL
 * with a note and orchestrate skips the memory checks.
 *
 * Tests inject readings with ORCHESTRATE_FAKE_NVML=<file>: each non-empty line that does not
 * start with '#' is one reading of every GPU, "<used MiB gpu0> [<used MiB gpu1> ...]
 * [pids=<pid>,<pid>...]"; line i answers the i-th nvml_read_used call and the last line repeats.
 * The number of fields on the first line is the device count; the pids, when given, are what
 * nvml_holders reports for every GPU on that reading. For `orchestrate doctor`, tokens
 * "total=<MiB>" (every GPU's memory), "driver=<version>" and "cuda=<NVML CUDA version, e.g. 12040>"
 * on any line describe the fake devices; they are not readings.
 */
#ifndef ORCH_NVML_H
#define ORCH_NVML_H

#include <stddef.h>
#include <sys/types.h>

#include "check.h"

typedef struct nvml nvml_t;

/* Load NVML (or the fake) and initialise it. Returns a handle, or NULL with a one-line
 * explanation in note (e.g. "libnvidia-ml.so.1 not found: no GPU memory checks"). */
nvml_t *nvml_open(char *note, size_t note_len);
/* Shut NVML down, unload the library and free n; NULL is a no-op. */
void nvml_close(nvml_t *n);

/* Number of GPUs NVML sees. */
int nvml_device_count(const nvml_t *n);

/* Read the used memory of gpus[0..n_gpus) (NVML indices) into used_mib, all at one moment.
 * Returns 0, or -1 with err set. */
int nvml_read_used(nvml_t *n, const int *gpus, int n_gpus, double *used_mib, err_t *err);

/* List up to max processes holding memory on gpu (as of the last reading for the fake). Returns
 * the number listed (0 when NVML cannot say). */
int nvml_holders(nvml_t *n, int gpu, pid_t *pids, int max);

/* One GPU as `orchestrate doctor` shows it. */
typedef struct {
    char name[96];       // "NVIDIA H100 80GB HBM3" ("fake GPU" for the fake)
    double total_mib;    // memory size
    double free_mib;     // memory free now
} nvml_gpu_info_t;

/* Describe GPU gpu (an NVML index). Returns 0, or -1 with err set. */
int nvml_gpu_info(nvml_t *n, int gpu, nvml_gpu_info_t *info, err_t *err);

/* The driver's version ("550.54.15") into buf, and the newest CUDA version it supports as
 * NVML reports it (major * 1000 + minor * 10, e.g. 12040 for 12.4; 0 when unknown) into
 * *cuda. buf is "" when unknown. */
void nvml_driver_info(nvml_t *n, char *buf, size_t len, int *cuda);

/* 1 when this handle is the ORCHESTRATE_FAKE_NVML fake. */
int nvml_is_fake(const nvml_t *n);

#endif

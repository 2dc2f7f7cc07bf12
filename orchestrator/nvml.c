/* nvml.c: dlopen("libnvidia-ml.so.1") and the few NVML calls orchestrate needs (see nvml.h),
 * plus the ORCHESTRATE_FAKE_NVML file that stands in for it in tests.
 *
 * NVML's header is not needed: the types used are declared here as the NVML API defines them
 * (nvmlMemory_t is three unsigned long longs; nvmlProcessInfo_t is {pid, usedGpuMemory,
 * gpuInstanceId, computeInstanceId} for the _v2/_v3 calls and {pid, usedGpuMemory} for v1).
 * It queries memory, and for `orchestrate doctor` the device names and the driver's versions;
 * utilisation, clocks and so on are not our business.
 */
#include "nvml.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"

typedef int nvml_ret_t;            // nvmlReturn_t; 0 is NVML_SUCCESS
typedef void *nvml_device_t;       // nvmlDevice_t
typedef struct {
    unsigned long long total, free, used;  // bytes (nvmlMemory_t)
} nvml_memory_t;
typedef struct {
    unsigned int pid;                            // process id
    unsigned long long used;                     // bytes of GPU memory (usedGpuMemory)
    unsigned int gpu_instance, compute_instance; // MIG instance ids (v2/v3 layout only)
} nvml_proc_v2_t;
typedef struct {
    unsigned int pid;        // process id
    unsigned long long used; // bytes of GPU memory (usedGpuMemory)
} nvml_proc_v1_t;

#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define FAKE_MAX_GPUS 16
#define FAKE_MAX_PIDS 16

typedef struct {
    double used[FAKE_MAX_GPUS]; // MiB used per GPU, by index
    pid_t pids[FAKE_MAX_PIDS];  // (n_pids) processes reported as holding memory
    int n_pids;                 // entries in pids
} fake_line_t;

struct nvml {
    void *lib;                     // dlopen handle (NULL for the fake)
    nvml_ret_t (*shutdown)(void);                                   // nvmlShutdown
    nvml_ret_t (*get_handle)(unsigned int, nvml_device_t *);        // nvmlDeviceGetHandleByIndex_v2
    nvml_ret_t (*get_memory)(nvml_device_t, nvml_memory_t *);       // nvmlDeviceGetMemoryInfo
    nvml_ret_t (*get_procs)(nvml_device_t, unsigned int *, void *); // nvmlDeviceGetComputeRunningProcesses_v3, _v2 or v1 (procs_v1)
    int procs_v1;                  // get_procs fills nvml_proc_v1_t
    const char *(*error_string)(nvml_ret_t);  // nvmlErrorString, may be NULL
    nvml_ret_t (*get_name)(nvml_device_t, char *, unsigned int);  // nvmlDeviceGetName, may be NULL
    nvml_ret_t (*driver_version)(char *, unsigned int);           // nvmlSystemGetDriverVersion, may be NULL
    nvml_ret_t (*cuda_version)(int *);                            // nvmlSystemGetCudaDriverVersion(_v2), may be NULL
    int count;                     // devices
    // the fake
    int fake;
    fake_line_t *lines;            // (n_lines)
    int n_lines, next_line, last_line;  // readings; the next one to return; the last returned (-1 none)
    double fake_total;             // total= MiB of every fake GPU (0: not given)
    char fake_driver[64];          // driver= version ("" when not given)
    int fake_cuda;                 // cuda= version (0 when not given)
};

/* ------------------------------------------------------------------ the fake */

/* Open the fake NVML of ORCHESTRATE_FAKE_NVML: one reading per non-comment line of path (MiB per
 * GPU, optional pids=1,2), each read consuming the next line and the last one repeating. Returns
 * the handle, or NULL with the reason in note. */
static nvml_t *fake_open(const char *path, char *note, size_t note_len) {
    err_t err = {0};
    char *text = fs_read_all(path, FS_LIMIT_TEXT, NULL, &err);
    if (!text) {
        snprintf(note, note_len, "ORCHESTRATE_FAKE_NVML: %s", err.msg);
        return NULL;
    }
    nvml_t *n = xcalloc(1, sizeof *n);
    n->fake = 1;
    n->last_line = -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t') line++;
        if (*line == '\0' || *line == '#') continue;
        n->lines = xrealloc(n->lines, (size_t)(n->n_lines + 1) * sizeof *n->lines);
        fake_line_t *fl = &n->lines[n->n_lines];
        memset(fl, 0, sizeof *fl);
        int n_used = 0;
        char *save2 = NULL;
        for (char *tok = strtok_r(line, " \t\r", &save2); tok; tok = strtok_r(NULL, " \t\r", &save2)) {
            if (strncmp(tok, "total=", 6) == 0) {
                n->fake_total = atof(tok + 6);
            } else if (strncmp(tok, "driver=", 7) == 0) {
                snprintf(n->fake_driver, sizeof n->fake_driver, "%s", tok + 7);
            } else if (strncmp(tok, "cuda=", 5) == 0) {
                n->fake_cuda = atoi(tok + 5);
            } else if (strncmp(tok, "pids=", 5) == 0) {
                char *save3 = NULL;
                for (char *p = strtok_r(tok + 5, ",", &save3); p && fl->n_pids < FAKE_MAX_PIDS;
                     p = strtok_r(NULL, ",", &save3))
                    fl->pids[fl->n_pids++] = (pid_t)atol(p);
            } else if (n_used < FAKE_MAX_GPUS) {
                fl->used[n_used++] = atof(tok);
            }
        }
        if (n->n_lines == 0) n->count = n_used;
        n->n_lines++;
    }
    free(text);
    if (n->n_lines == 0) {
        snprintf(note, note_len, "ORCHESTRATE_FAKE_NVML: %s has no readings", path);
        free(n);
        return NULL;
    }
    return n;
}

/* ------------------------------------------------------------------ the real library */

nvml_t *nvml_open(char *note, size_t note_len) {
    note[0] = '\0';
    const char *fake = getenv("ORCHESTRATE_FAKE_NVML");
    if (fake && *fake) return fake_open(fake, note, note_len);

    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(note, note_len, "NVML is not available: no NVIDIA driver (libnvidia-ml.so.1 not found), so GPU "
                 "memory is not checked");
        return NULL;
    }
    nvml_t *n = xcalloc(1, sizeof *n);
    n->lib = lib;
    nvml_ret_t (*init)(void) = (nvml_ret_t (*)(void))dlsym(lib, "nvmlInit_v2");
    nvml_ret_t (*count)(unsigned int *) = (nvml_ret_t (*)(unsigned int *))dlsym(lib, "nvmlDeviceGetCount_v2");
    n->shutdown = (nvml_ret_t (*)(void))dlsym(lib, "nvmlShutdown");
    n->get_handle = (nvml_ret_t (*)(unsigned int, nvml_device_t *))dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    n->get_memory = (nvml_ret_t (*)(nvml_device_t, nvml_memory_t *))dlsym(lib, "nvmlDeviceGetMemoryInfo");
    n->error_string = (const char *(*)(nvml_ret_t))dlsym(lib, "nvmlErrorString");
    n->get_name = (nvml_ret_t (*)(nvml_device_t, char *, unsigned int))dlsym(lib, "nvmlDeviceGetName");
    n->driver_version = (nvml_ret_t (*)(char *, unsigned int))dlsym(lib, "nvmlSystemGetDriverVersion");
    n->cuda_version = (nvml_ret_t (*)(int *))dlsym(lib, "nvmlSystemGetCudaDriverVersion_v2");
    if (!n->cuda_version) n->cuda_version = (nvml_ret_t (*)(int *))dlsym(lib, "nvmlSystemGetCudaDriverVersion");
    // Newest first; v3 and v2 share the struct layout, v1 is shorter.
    n->get_procs = (nvml_ret_t (*)(nvml_device_t, unsigned int *, void *))dlsym(lib, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (!n->get_procs)
        n->get_procs = (nvml_ret_t (*)(nvml_device_t, unsigned int *, void *))dlsym(lib, "nvmlDeviceGetComputeRunningProcesses_v2");
    if (!n->get_procs) {
        n->get_procs = (nvml_ret_t (*)(nvml_device_t, unsigned int *, void *))dlsym(lib, "nvmlDeviceGetComputeRunningProcesses");
        n->procs_v1 = 1;
    }
    unsigned int c = 0;
    nvml_ret_t rc = -1;
    if (!init || !count || !n->shutdown || !n->get_handle || !n->get_memory) {
        snprintf(note, note_len, "NVML (libnvidia-ml.so.1) lacks the functions we need, so GPU memory is not checked");
    } else if ((rc = init()) != 0) {
        snprintf(note, note_len, "NVML failed to initialise (%s), so GPU memory is not checked",
                 n->error_string ? n->error_string(rc) : "unknown error");
    } else if ((rc = count(&c)) != 0) {
        snprintf(note, note_len, "NVML cannot count GPUs (%s), so GPU memory is not checked",
                 n->error_string ? n->error_string(rc) : "unknown error");
        n->shutdown();
    } else {
        n->count = (int)c;
        return n;
    }
    dlclose(lib);
    free(n);
    return NULL;
}

void nvml_close(nvml_t *n) {
    if (!n) return;
    if (n->lib) {
        n->shutdown();
        dlclose(n->lib);
    }
    free(n->lines);
    free(n);
}

int nvml_device_count(const nvml_t *n) {
    return n->count;
}

int nvml_is_fake(const nvml_t *n) {
    return n->fake;
}

int nvml_read_used(nvml_t *n, const int *gpus, int n_gpus, double *used_mib, err_t *err) {
    if (n->fake) {
        int li = n->next_line < n->n_lines ? n->next_line++ : n->n_lines - 1;
        n->last_line = li;
        for (int i = 0; i < n_gpus; i++) {
            if (gpus[i] < 0 || gpus[i] >= n->count)
                return err_fmt(err, "GPU %d: not a device (the fake NVML has %d)", gpus[i], n->count);
            used_mib[i] = n->lines[li].used[gpus[i]];
        }
        return 0;
    }
    for (int i = 0; i < n_gpus; i++) {
        nvml_device_t dev;
        nvml_memory_t mem;
        nvml_ret_t rc = n->get_handle((unsigned int)gpus[i], &dev);
        if (rc == 0) rc = n->get_memory(dev, &mem);
        if (rc != 0)
            return err_fmt(err, "GPU %d: NVML memory query failed: %s", gpus[i],
                           n->error_string ? n->error_string(rc) : "unknown error");
        used_mib[i] = (double)mem.used / (1024.0 * 1024.0);
    }
    return 0;
}

int nvml_holders(nvml_t *n, int gpu, pid_t *pids, int max) {
    if (n->fake) {
        if (n->last_line < 0) return 0;
        const fake_line_t *fl = &n->lines[n->last_line];
        int k = 0;
        for (; k < fl->n_pids && k < max; k++) pids[k] = fl->pids[k];
        return k;
    }
    nvml_device_t dev;
    if (!n->get_procs || n->get_handle((unsigned int)gpu, &dev) != 0) return 0;
    // The process list can grow between the size query and the read; retry a few times.
    unsigned int cap = 64;
    for (int tries = 0; tries < 3; tries++) {
        size_t item = n->procs_v1 ? sizeof(nvml_proc_v1_t) : sizeof(nvml_proc_v2_t);
        unsigned char *buf = xcalloc(cap, item);
        unsigned int cnt = cap;
        nvml_ret_t rc = n->get_procs(dev, &cnt, buf);
        if (rc == NVML_ERROR_INSUFFICIENT_SIZE) {
            free(buf);
            cap = cnt + 16;
            continue;
        }
        int k = 0;
        if (rc == 0) {
            for (unsigned int i = 0; i < cnt && k < max; i++)
                pids[k++] = n->procs_v1 ? (pid_t)((nvml_proc_v1_t *)buf)[i].pid
                                        : (pid_t)((nvml_proc_v2_t *)buf)[i].pid;
        }
        free(buf);
        return k;
    }
    return 0;
}

int nvml_gpu_info(nvml_t *n, int gpu, nvml_gpu_info_t *info, err_t *err) {
    memset(info, 0, sizeof *info);
    if (gpu < 0 || gpu >= n->count) return err_fmt(err, "GPU %d: not a device (NVML sees %d)", gpu, n->count);
    if (n->fake) {
        snprintf(info->name, sizeof info->name, "fake GPU (ORCHESTRATE_FAKE_NVML)");
        double used = n->lines[n->n_lines - 1].used[gpu];
        info->total_mib = n->fake_total;
        info->free_mib = n->fake_total > used ? n->fake_total - used : 0;
        return 0;
    }
    nvml_device_t dev;
    nvml_memory_t mem;
    nvml_ret_t rc = n->get_handle((unsigned int)gpu, &dev);
    if (rc == 0) rc = n->get_memory(dev, &mem);
    if (rc != 0)
        return err_fmt(err, "GPU %d: NVML query failed: %s", gpu, n->error_string ? n->error_string(rc) : "unknown error");
    if (!n->get_name || n->get_name(dev, info->name, sizeof info->name) != 0)
        snprintf(info->name, sizeof info->name, "unknown");
    info->total_mib = (double)mem.total / (1024.0 * 1024.0);
    info->free_mib = (double)mem.free / (1024.0 * 1024.0);
    return 0;
}

void nvml_driver_info(nvml_t *n, char *buf, size_t len, int *cuda) {
    buf[0] = '\0';
    *cuda = 0;
    if (n->fake) {
        snprintf(buf, len, "%s", n->fake_driver);
        *cuda = n->fake_cuda;
        return;
    }
    if (n->driver_version && n->driver_version(buf, (unsigned int)len) != 0) buf[0] = '\0';
    if (n->cuda_version && n->cuda_version(cuda) != 0) *cuda = 0;
}

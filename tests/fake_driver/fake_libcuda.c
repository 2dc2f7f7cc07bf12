/* fake_libcuda.c: a stand-in libcuda.so.1 (the NVIDIA driver library) with just the three calls
 * lm-worker's plugin loader probes (workers/lm/backend_cuda_load.c), so tests can reach each of
 * its refusals on a machine without a GPU: FAKE_CUDA_DRIVER_VERSION (default 13000, as
 * cuDriverGetVersion spells it) and FAKE_CUDA_DEVICES (default 1; 0 makes cuInit report
 * CUDA_ERROR_NO_DEVICE). It cannot run anything: the CUDA runtime itself would fail on it. */
#include <stdlib.h>

/* The integer value of environment variable name, or dflt when unset. */
static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

int cuDriverGetVersion(int *version) {
    *version = env_int("FAKE_CUDA_DRIVER_VERSION", 13000);
    return 0;
}

int cuInit(unsigned int flags) {
    (void)flags;
    return env_int("FAKE_CUDA_DEVICES", 1) > 0 ? 0 : 100; // CUDA_ERROR_NO_DEVICE
}

int cuDeviceGetCount(int *count) {
    *count = env_int("FAKE_CUDA_DEVICES", 1);
    return 0;
}

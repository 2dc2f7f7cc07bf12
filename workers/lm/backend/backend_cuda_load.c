/* backend_cuda_load.c: backend_cuda_create() for lm-worker builds with the CUDA backend: checks
 * the NVIDIA driver, finds cuBLAS, then dlopen()s the plugin liblm_cuda.so (backend_cuda.c, with
 * the CUDA runtime linked in statically) and creates the backend through it.
 *
 * lm-worker itself links no CUDA library, so it starts and runs on the CPU on a machine with no
 * driver and no CUDA libraries; every reason CUDA cannot be used comes back as one err_t with
 * code EXIT_UNAVAILABLE (device.c prints it as the --device auto fallback note, or fails
 * --device cuda with it). The steps, in order, each with its own message:
 *   1. libcuda.so.1 (the driver) opens, its CUDA version is at least the plugin's major (minor
 *      version compatibility: a CUDA 12.x build runs on any 12.x driver, R525 or newer), and it
 *      sees at least one device;
 *   2. the plugin is found: <dir of the executable>/lib/, then <dir>/../lib/ (the build tree's
 *      tests live one level below lib/);
 *   3. libcublasLt.so.<major> then libcublas.so.<major> are preloaded RTLD_GLOBAL from the first
 *      place holding both: the plugin's folder (a bundle's lib/), the dynamic linker's own search
 *      (LD_LIBRARY_PATH, ldconfig), the CUDA toolkit's usual folders, then the pip
 *      nvidia/cublas/lib folders of the image's Python (Kaggle's torch ships them there);
 *   4. the plugin opens and its descriptor's ABI number and struct sizes match this build.
 * The outcome is cached: the probe runs once per process. It does not pick devices or dtypes
 * (backend_cuda.c) and does not fall back to the CPU (device.c).
 */
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backend_cuda_plugin.h"
#include "exit_codes.h"

#if !defined(LM_CUDA_BUILD_VERSION) || !defined(LM_CUDA_MAJOR)
#error "LM_CUDA_BUILD_VERSION (12040 for CUDA 12.4) and LM_CUDA_MAJOR (12) must be defined by the build"
#endif
#define CUDA_MAJOR LM_CUDA_MAJOR
#define STR_(x) #x
#define STR(x) STR_(x)

typedef int (*cu_int_fn)(int *);           // cuDriverGetVersion, cuDeviceGetCount
typedef int (*cu_init_fn)(unsigned int);   // cuInit

/* The oldest driver branch that runs CUDA `major` (minor version compatibility), for messages. */
static const char *driver_branch(int major) { return major >= 13 ? "R580" : major == 12 ? "R525" : "R450"; }

/* What the probe found, for backend_cuda_describe. */
static int found_driver_version;      // cuDriverGetVersion's answer (12040 = CUDA 12.4), 0 before
static char found_plugin[PATH_MAX];   // the plugin file loaded, "" before
static char found_cublas[PATH_MAX];   // the libcublas file loaded, "" before

/* Step 1: the driver is there, new enough and sees a device. Returns 0, or -1 with err set. */
static int driver_probe(err_t *err) {
    void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cu) return err_code(err, EXIT_UNAVAILABLE, "no NVIDIA driver (libcuda.so.1 not found)");
    cu_int_fn get_version = (cu_int_fn)dlsym(cu, "cuDriverGetVersion");
    cu_init_fn init = (cu_init_fn)dlsym(cu, "cuInit");
    cu_int_fn get_count = (cu_int_fn)dlsym(cu, "cuDeviceGetCount");
    if (!get_version || !init || !get_count)
        return err_code(err, EXIT_UNAVAILABLE, "libcuda.so.1 lacks cuDriverGetVersion/cuInit/cuDeviceGetCount: not an NVIDIA driver library");
    int version = 0;
    int rc = get_version(&version);
    if (rc != 0) return err_code(err, EXIT_UNAVAILABLE, "NVIDIA driver: cuDriverGetVersion failed (CUresult %d)", rc);
    found_driver_version = version;
    if (version / 1000 < CUDA_MAJOR) {
        char advice[128];
        if (CUDA_MAJOR > 12 && version / 1000 == 12)
            snprintf(advice, sizeof advice, "use the cuda12 bundle, which runs on this driver");
        else
            snprintf(advice, sizeof advice, "update the driver to %s or newer", driver_branch(CUDA_MAJOR));
        return err_code(err, EXIT_UNAVAILABLE,
                        "NVIDIA driver too old: it supports CUDA %d.%d, and this lm-worker's CUDA backend is built for "
                        "CUDA %d.%d, which needs a CUDA %d.x driver (%s or newer); %s (see docs/bundle.md)",
                        version / 1000, version % 1000 / 10, CUDA_MAJOR, LM_CUDA_BUILD_VERSION % 1000 / 10, CUDA_MAJOR,
                        driver_branch(CUDA_MAJOR), advice);
    }
    rc = init(0);
    int n = 0;
    if (rc == 100 /* CUDA_ERROR_NO_DEVICE */ || (rc == 0 && get_count(&n) == 0 && n == 0)) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        return err_code(err, EXIT_UNAVAILABLE, "no CUDA device (driver CUDA %d.%d, CUDA_VISIBLE_DEVICES=%s)",
                        version / 1000, version % 1000 / 10, vis ? vis : "(unset)");
    }
    if (rc != 0) return err_code(err, EXIT_UNAVAILABLE, "NVIDIA driver: cuInit failed (CUresult %d); check nvidia-smi", rc);
    return 0;
}

/* Step 2: the plugin's path into path (PATH_MAX) and its folder into dir. Returns 0, or -1. */
static int plugin_find(char *path, char *dir, err_t *err) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return err_code(err, EXIT_UNAVAILABLE, "cannot read /proc/self/exe to find %s", LM_CUDA_PLUGIN_FILE);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    static const char *const subdirs[] = {"lib", "../lib"};
    for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
        if (snprintf(dir, PATH_MAX, "%s/%s", exe, subdirs[i]) >= PATH_MAX ||
            snprintf(path, PATH_MAX, "%s/%s", dir, LM_CUDA_PLUGIN_FILE) >= PATH_MAX)
            continue; // too long to exist
        if (access(path, R_OK) == 0) return 0;
    }
    return err_code(err, EXIT_UNAVAILABLE, "CUDA backend plugin %s not found in %s/lib or %s/../lib (an incomplete install?)",
                    LM_CUDA_PLUGIN_FILE, exe, exe);
}

/* Open libcublasLt then libcublas from folder dir (NULL: the dynamic linker's own search), both
 * RTLD_GLOBAL so the plugin's NEEDED entries resolve to them. Returns 1 when both opened; else 0
 * and, when a file exists but does not open, its dlerror() in why (size PATH_MAX + 256). */
static int cublas_open_in(const char *dir, char *why) {
    static const char *const names[] = {"libcublasLt.so." STR(LM_CUDA_MAJOR), "libcublas.so." STR(LM_CUDA_MAJOR)};
    char path[2][PATH_MAX];
    for (int i = 0; i < 2; i++) {
        if (!dir) {
            snprintf(path[i], PATH_MAX, "%s", names[i]);
        } else {
            if (snprintf(path[i], PATH_MAX, "%s/%s", dir, names[i]) >= PATH_MAX || access(path[i], R_OK) != 0) return 0;
        }
    }
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(path[i], RTLD_NOW | RTLD_GLOBAL);
        if (!h) {
            if (dir) snprintf(why, PATH_MAX + 256, "%s", dlerror());
            return 0;
        }
        struct link_map *lm = NULL;  // where the dynamic linker found it (dir may be NULL)
        if (i == 1 && dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name)
            snprintf(found_cublas, sizeof found_cublas, "%s", lm->l_name);
    }
    return 1;
}

/* Step 3: preload cuBLAS from the first place that has it (see the header). Returns 0, or -1
 * with err naming the files and every place searched. */
static int cublas_load(const char *bundle_dir, err_t *err) {
    static const char *const fixed[] = {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"};
    static const char *const pip[] = {
        "/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib", "/usr/local/lib/python3*/site-packages/nvidia/cublas/lib",
        "/usr/lib/python3/dist-packages/nvidia/cublas/lib",        "/usr/lib/python3*/site-packages/nvidia/cublas/lib",
        "/opt/conda/lib/python3*/site-packages/nvidia/cublas/lib", "/usr/local/lib/python3*/dist-packages/nvidia/cu" STR(LM_CUDA_MAJOR) "/lib",
        "/usr/local/lib/python3*/site-packages/nvidia/cu" STR(LM_CUDA_MAJOR) "/lib",
    };
    char why[PATH_MAX + 256] = "";
    if (cublas_open_in(bundle_dir, why) || cublas_open_in(NULL, why)) return 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (cublas_open_in(fixed[i], why)) return 0;
    for (size_t i = 0; i < sizeof pip / sizeof *pip; i++) {
        glob_t g;
        if (glob(pip[i], GLOB_NOSORT, NULL, &g) != 0) continue;
        int ok = 0;
        for (size_t j = 0; j < g.gl_pathc && !ok; j++) ok = cublas_open_in(g.gl_pathv[j], why);
        globfree(&g);
        if (ok) return 0;
    }
    char places[2048];
    int at = snprintf(places, sizeof places, "%s, the dynamic linker's path (LD_LIBRARY_PATH, ldconfig)", bundle_dir);
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed && at < (int)sizeof places; i++)
        at += snprintf(places + at, sizeof places - at, ", %s", fixed[i]);
    for (size_t i = 0; i < sizeof pip / sizeof *pip && at < (int)sizeof places; i++)
        at += snprintf(places + at, sizeof places - at, ", %s", pip[i]);
    return err_code(err, EXIT_UNAVAILABLE,
                    "cuBLAS not found: libcublas.so.%d and libcublasLt.so.%d are in none of: %s%s%s "
                    "(install pip nvidia-cublas-cu%d or the CUDA toolkit, or build the bundle --with-cublas)",
                    CUDA_MAJOR, CUDA_MAJOR, places, *why ? "; last error: " : "", why, CUDA_MAJOR);
}

/* Step 4: open the plugin at path and check its descriptor. Returns it, or NULL with err set. */
static const lm_cuda_plugin_t *plugin_open(const char *path, err_t *err) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        err_code(err, EXIT_UNAVAILABLE, "cannot load the CUDA backend plugin: %s", dlerror());
        return NULL;
    }
    const lm_cuda_plugin_t *(*entry)(void) = (const lm_cuda_plugin_t *(*)(void))dlsym(h, LM_CUDA_PLUGIN_SYMBOL);
    const lm_cuda_plugin_t *p = entry ? entry() : NULL;
    if (!p || p->abi != LM_CUDA_PLUGIN_ABI || p->backend_size != sizeof(backend_t) || p->ops_size != sizeof(backend_ops_t) ||
        p->err_size != sizeof(err_t)) {
        err_code(err, EXIT_UNAVAILABLE,
                 "%s does not match this lm-worker (%s; lm-worker has plugin ABI %d): install lm-worker and its lib/ "
                 "from the same build",
                 path, !entry ? "no symbol " LM_CUDA_PLUGIN_SYMBOL : p && p->abi == LM_CUDA_PLUGIN_ABI ? "struct sizes differ" : "another plugin ABI",
                 LM_CUDA_PLUGIN_ABI);
        return NULL;
    }
    if (p->cuda_version / 1000 != CUDA_MAJOR) {
        err_code(err, EXIT_UNAVAILABLE, "%s is built for CUDA %d and this lm-worker for CUDA %d: install them from the same build",
                 path, p->cuda_version / 1000, CUDA_MAJOR);
        return NULL;
    }
    return p;
}

/* The loaded plugin, running steps 1-4 on the first call; NULL with err set (the cached reason)
 * when CUDA cannot be used. */
static const lm_cuda_plugin_t *plugin_get(err_t *err) {
    static int probed;                     // 1 once the steps ran
    static const lm_cuda_plugin_t *plugin; // the loaded plugin, or NULL
    static err_t why;                      // why not, when plugin is NULL
    if (!probed) {
        probed = 1;
        char path[PATH_MAX], dir[PATH_MAX];
        if (driver_probe(&why) == 0 && plugin_find(path, dir, &why) == 0 && cublas_load(dir, &why) == 0)
            plugin = plugin_open(path, &why);
        if (plugin) snprintf(found_plugin, sizeof found_plugin, "%s", path);
    }
    if (!plugin) *err = why;
    return plugin;
}

int backend_cuda_usable(err_t *err) { return plugin_get(err) ? 0 : -1; }

void backend_cuda_describe(char *buf, size_t n) {
    err_t why = {0};
    int at = snprintf(buf, n, "built for CUDA %d.%d", CUDA_MAJOR, LM_CUDA_BUILD_VERSION % 1000 / 10);
    if (at < 0 || (size_t)at >= n) return;
    if (!plugin_get(&why)) {
        snprintf(buf + at, n - (size_t)at, "; not usable: %s", why.msg);
        return;
    }
    snprintf(buf + at, n - (size_t)at, "; driver supports CUDA %d.%d; plugin %s; cuBLAS %s", found_driver_version / 1000,
             found_driver_version % 1000 / 10, found_plugin, found_cublas[0] ? found_cublas : "(path unknown)");
}

backend_t *backend_cuda_create(dtype_t dt, int quant_int8, err_t *err) {
    const lm_cuda_plugin_t *plugin = plugin_get(err);
    return plugin ? plugin->create(dt, quant_int8, err) : NULL;
}

/* doctor.c: `orchestrate doctor [--plan FILE]`, what this machine can run (docs/orchestrate.md).
 *
 * It prints the NVIDIA driver and GPUs as NVML sees them (name, memory total and free, driver
 * version, the newest CUDA the driver supports), which lm-worker would run and the device
 * `lm-worker check --device auto` opens (with its note on why it fell back to the CPU, where the
 * CUDA libraries were or were not found), and, when there is a plan, whether each stage can run:
 * the same checks as the preflight before a run (preflight.c). It starts no stage and writes
 * nothing. Exit status: 0 when every stage of the plan can run (or there is no plan), 1 when
 * one cannot, 64 for a bad command line.
 */
#include "doctor.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exit_codes.h"
#include "nvml.h"
#include "preflight.h"
#include "slots.h"

extern char **environ;

/* Print doctor's usage to f. */
static void doctor_usage(FILE *f) {
    fprintf(f,
            "usage: orchestrate doctor [--plan FILE] [--work-dir DIR] [--gpus LIST|cpu|auto]\n"
            "\n"
            "Prints the GPUs and driver (NVML), the lm-worker that would run and the device it\n"
            "opens, and, with a plan (default ./plan.json when it exists), whether each stage can\n"
            "run. Exit status: 0 when every stage can run, 1 when one cannot, 64 for a bad option.\n");
}

/* The GPUs and driver as NVML sees them. Returns the open handle (NULL without NVML). */
static nvml_t *doctor_gpus(void) {
    char note[256];
    nvml_t *nv = nvml_open(note, sizeof note);
    if (!nv) {
        printf("NVIDIA driver: none usable: %s\nGPUs: none\n", note);
        return NULL;
    }
    char driver[96];
    int cuda;
    nvml_driver_info(nv, driver, sizeof driver, &cuda);
    printf("NVIDIA driver: %s", driver[0] ? driver : "version unknown");
    if (cuda > 0) printf(", supports CUDA up to %d.%d (a bundle built for a newer CUDA cannot use it)",
                         cuda / 1000, cuda % 1000 / 10);
    printf("%s\n", nvml_is_fake(nv) ? " [ORCHESTRATE_FAKE_NVML]" : "");
    int n = nvml_device_count(nv);
    printf("GPUs: %d\n", n);
    for (int g = 0; g < n; g++) {
        nvml_gpu_info_t info;
        err_t err = {0};
        if (nvml_gpu_info(nv, g, &info, &err) != 0) printf("  GPU %d: %s\n", g, err.msg);
        else printf("  GPU %d: %s, %.0f MiB total, %.0f MiB free\n", g, info.name, info.total_mib, info.free_mib);
    }
    return nv;
}

/* Print each line of text indented, prefixed by `prefix`. */
static void print_indented(const char *text, const char *prefix) {
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len) printf("%s%.*s\n", prefix, (int)len, p);
        p += len + (nl ? 1 : 0);
    }
}

/* Which lm-worker would run, its version and the device `check --device auto` opens. */
static void doctor_lm_worker(void) {
    char exe_dir[PATH_MAX];
    char *lm = plan_find_lm_worker(exe_dir, sizeof exe_dir);
    if (!lm) {
        printf("lm-worker: not found next to orchestrate (in %s) or on PATH\n", exe_dir);
        return;
    }
    char *version_argv[] = {lm, "--version", NULL};
    char *check_argv[] = {lm, "check", "--device", "auto", NULL};
    char *out = NULL, *errtxt = NULL;
    int status = 0;
    err_t err = {0};
    if (preflight_capture(version_argv, environ, &out, &errtxt, &status, &err) != 0) {
        printf("lm-worker: %s: %s\n", lm, err.msg);
        free(lm);
        return;
    }
    out[strcspn(out, "\n")] = '\0';
    printf("lm-worker: %s (%s)\n", lm, out[0] ? out : "no version");
    free(out), free(errtxt);
    out = errtxt = NULL;
    if (preflight_capture(check_argv, environ, &out, &errtxt, &status, &err) != 0) {
        printf("  device: %s\n", err.msg);
    } else {
        json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
        const char *name = json_string_value(json_object_get(j, "device"));
        const char *cuda = json_string_value(json_object_get(j, "cuda"));
        printf("  lm-worker check --device auto: exit %d, device %s\n", status, name ? name : "?");
        if (cuda) printf("  CUDA backend: %s\n", cuda);
        print_indented(errtxt, "  ");
        json_decref(j);
    }
    free(out), free(errtxt);
    free(lm);
}

/* Whether each stage of the plan at path can run on this machine. Returns 0 when every one
 * can, else 1. */
static int doctor_plan(const char *path, const char *work_dir, const char *gpus, nvml_t *nv) {
    printf("plan: %s\n", path);
    plan_t plan;
    err_t err = {0};
    if (plan_load(&plan, path, &err) != 0) {
        printf("  cannot load: %s\n", err.msg);
        return 1;
    }
    int bad = 0;
    if (gpus && plan_apply_gpus_override(&plan, gpus, &err) != 0) {
        printf("  --gpus: %s\n", err.msg);
        plan_free(&plan);
        return 1;
    }
    if (work_dir) plan_set_work_dir(&plan, work_dir);
    csv_table_t input = {0};
    if (csv_table_read(&input, plan.input, &err) != 0 || input_validate(&plan, &input, &err) != 0) {
        printf("  input: %s\n", err.msg);
        bad = 1;
    } else {
        printf("  input: %s, %zu rows\n", plan.input, input.n_rows);
    }
    csv_table_free(&input);
    slot_t *slots = NULL;
    int n_slots = 0;
    char note[256];
    if (slots_init(&plan, plan.use_cpu ? NULL : nv, &slots, &n_slots, note, sizeof note, &err) != 0) {
        printf("  slots: %s\n", err.msg);
        plan_free(&plan);
        return 1;
    }
    printf("  slots: %d on %s%s%s\n", n_slots, slots_use_gpu(slots, n_slots) ? "GPUs" : "the CPU",
           note[0] ? "; " : "", note);
    fflush(stdout);
    bad |= preflight_paths(&plan, work_dir ? "--work-dir" : "work_dir", stdout) != 0;
    for (int m = 0; m < plan.n_models; m++) {
        fflush(stdout);
        int problems = preflight_model(&plan, m, &slots[0], stdout);
        printf("  stage %d/%d '%s' (%s): can run: %s\n", m + 1, plan.n_models, plan.models[m].name,
               plan.models[m].is_lm_worker ? "lm-worker" : "command", problems ? "no (see above)" : "yes");
        bad |= problems != 0;
    }
    printf("%s\n", bad ? "doctor: the plan cannot run as it is (see above)" : "doctor: every stage can run");
    free(slots);
    plan_free(&plan);
    return bad;
}

int doctor_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"plan", required_argument, NULL, 'p'}, {"work-dir", required_argument, NULL, 'w'},
        {"gpus", required_argument, NULL, 'g'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *plan_path = NULL, *work_dir = NULL, *gpus = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': plan_path = optarg; break;
        case 'w': work_dir = optarg; break;
        case 'g': gpus = optarg; break;
        case 'h': doctor_usage(stdout); return 0;
        default:
            doctor_usage(stderr);
            fprintf(stderr, "orchestrate: failed: doctor: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        doctor_usage(stderr);
        fprintf(stderr, "orchestrate: failed: doctor: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    printf("orchestrate %s doctor\n", ORCH_VERSION);
    nvml_t *nv = doctor_gpus();
    doctor_lm_worker();
    struct stat st;
    int rc = 0;
    if (plan_path || stat("plan.json", &st) == 0) rc = doctor_plan(plan_path ? plan_path : "plan.json", work_dir, gpus, nv);
    else printf("plan: none (no ./plan.json; pass --plan FILE to check one)\n");
    nvml_close(nv);
    fflush(stdout);
    return rc;
}

/* test_workdir.c: the work directory's rules on their own (workdir.c) and the resume-key parts
 * (fingerprint.c): the output path checks by inode (a hard link), the marker and what --fresh
 * may delete, the lock against a second opener, the --limit layout, and the "why it reran"
 * wording. The end-to-end behaviour is in tests/integration/workdir_safety.sh and
 * resume_fingerprint.sh.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "fingerprint.h"
#include "orch.h"
#include "tinytest.h"
#include "workdir.h"

static char tmpdir[256];

/* Before the first test: the temp dir (its real path: the checks compare real paths). */
static int setup(void) {
    tt_mkdtemp(tmpdir, sizeof tmpdir, "test_workdir");
    return 0;
}

/* tmpdir/rel, in a static buffer (one at a time). */
static const char *at(const char *rel) {
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, rel);
    return buf[i];
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs("x\n", f);
    fclose(f);
}

/* A plan with just the paths workdir.c looks at (strings owned by the plan). */
static void plan_paths(plan_t *p, const char *input, const char *output, const char *work_dir) {
    memset(p, 0, sizeof *p);
    p->path = xstrdup(at("plan.json"));
    p->input = xstrdup(input);
    p->output = xstrdup(output);
    p->work_dir = xstrdup(work_dir);
}

static void plan_paths_free(plan_t *p) {
    free(p->path), free(p->input), free(p->output), free(p->work_dir);
}

TEST(test_check_paths_by_inode) {
    touch(at("in.csv"));
    touch(at("plan.json"));
    EXPECT(link(at("in.csv"), at("hard.csv")) == 0);
    plan_t p;
    err_t err = {0};
    plan_paths(&p, at("in.csv"), at("hard.csv"), at("work"));
    EXPECT(workdir_check_paths(&p, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "output '");
    EXPECT_STR_CONTAINS(err.msg, "and input '");
    plan_paths_free(&p);
    plan_paths(&p, at("in.csv"), at("sub/../plan.json"), at("work"));
    mkdir(at("sub"), 0777);
    EXPECT(workdir_check_paths(&p, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "and the plan file are the same file");
    plan_paths_free(&p);
    // Inside work_dir, although neither exists yet and the spelling goes through "sub/..".
    plan_paths(&p, at("in.csv"), at("w2/deep/sub.csv"), at("sub/../w2"));
    EXPECT(workdir_check_paths(&p, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "is inside work_dir");
    plan_paths_free(&p);
    // Beside work_dir (a name that merely starts the same) is fine.
    plan_paths(&p, at("in.csv"), at("work2.csv"), at("work"));
    EXPECT_MSG(workdir_check_paths(&p, &err) == 0, "%s", err.msg);
    plan_paths_free(&p);
}

TEST(test_marker_fresh_and_lock) {
    plan_t p;
    err_t err = {0};
    plan_paths(&p, at("in.csv"), at("out.csv"), at("wd"));
    // A user's folder with a models/ of its own: refused, with and without --fresh.
    mkdir(at("wd"), 0777);
    mkdir(at("wd/models"), 0777);
    touch(at("wd/models/ckpt.bin"));
    workdir_t wd;
    EXPECT(workdir_open(&wd, &p, 0, &err) == -1 && wd.lock_fd == -1);
    EXPECT_STR_CONTAINS(err.msg, "holds 'models'");
    EXPECT(workdir_open(&wd, &p, 1, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "is not empty and has no .orchestrate-work marker");
    EXPECT(access(at("wd/models/ckpt.bin"), F_OK) == 0);
    EXPECT(access(at("wd/.orchestrate-work"), F_OK) != 0);
    unlink(at("wd/models/ckpt.bin"));
    rmdir(at("wd/models"));
    // An empty folder is taken and marked; a second opener (even this process) is refused
    // with our PID.
    EXPECT_MSG(workdir_open(&wd, &p, 0, &err) == 0, "%s", err.msg);
    EXPECT(access(at("wd/.orchestrate-work"), F_OK) == 0);
    workdir_t second;
    EXPECT(workdir_open(&second, &p, 0, &err) == -1);
    char want[64];
    snprintf(want, sizeof want, "in use by another orchestrate run (PID %ld)", (long)getpid());
    EXPECT_STR_CONTAINS(err.msg, want);
    workdir_close(&wd);
    // --fresh in the marked folder: the layout's entries go, the user's stay.
    mkdir(at("wd/done"), 0777);
    touch(at("wd/done/k.csv"));
    mkdir(at("wd/limit-5"), 0777);
    touch(at("wd/report.json"));
    touch(at("wd/notes.txt"));
    mkdir(at("wd/limit-x"), 0777);
    EXPECT_MSG(workdir_open(&wd, &p, 1, &err) == 0, "%s", err.msg);
    EXPECT(access(at("wd/done"), F_OK) != 0 && access(at("wd/limit-5"), F_OK) != 0);
    EXPECT(access(at("wd/report.json"), F_OK) != 0);
    EXPECT(access(at("wd/notes.txt"), F_OK) == 0 && access(at("wd/limit-x"), F_OK) == 0);
    EXPECT(access(at("wd/.orchestrate-work"), F_OK) == 0 && access(at("wd/.orchestrate.lock"), F_OK) == 0);
    workdir_close(&wd);
    workdir_close(&wd);   // a no-op the second time
    plan_paths_free(&p);
}

TEST(test_limit_layout) {
    plan_t p;
    plan_paths(&p, "in.csv", "/x/sub.csv", "/w");
    char *s = workdir_path(&p, WD_DONE, "k", ".csv");
    EXPECT_MSG(strcmp(s, "/w/done/k.csv") == 0, "%s", s);
    free(s);
    plan_apply_limit(&p, 20);
    s = workdir_path(&p, WD_REPORT, NULL, NULL);
    EXPECT_MSG(strcmp(s, "/w/limit-20/report.json") == 0, "%s", s);
    free(s);
    s = workdir_output_path(&p, "m", "m.identity.s0of1");
    EXPECT_MSG(strcmp(s, "/w/limit-20/outputs/m/m.identity.s0of1.csv") == 0, "%s", s);
    free(s);
    EXPECT_MSG(strcmp(p.output, "/x/sub.limit-20.csv") == 0, "%s", p.output);
    plan_paths_free(&p);
}

TEST(test_why_a_job_reran) {
    char why[320];
    const char *old = "input rows\taa\nvariant\tidentity\nmodel settings\tss\n/p/infer.py\t11\n";
    fingerprint_why(NULL, old, why, sizeof why);
    EXPECT(why[0] == '\0');   // no earlier record: nothing to explain
    fingerprint_why(old, "input rows\taa\nvariant\tidentity\nmodel settings\tss\n/p/infer.py\t12\n", why, sizeof why);
    EXPECT_MSG(strcmp(why, "/p/infer.py changed") == 0, "%s", why);
    fingerprint_why(old, "input rows\tab\nvariant\tidentity\nmodel settings\tss\n/p/infer.py\t11\n", why, sizeof why);
    EXPECT_MSG(strcmp(why, "its input rows changed") == 0, "%s", why);
    fingerprint_why(old, "input rows\taa\nvariant\tidentity\nmodel settings\tsz\n/p/infer.py\t11\n", why, sizeof why);
    EXPECT_MSG(strcmp(why, "the model's settings changed") == 0, "%s", why);
    fingerprint_why(old, "input rows\taa\nvariant\tidentity\nmodel settings\tss\n/p/infer.py\t11\n/p/w.bin\t1\n",
                    why, sizeof why);
    EXPECT_MSG(strcmp(why, "it now depends on /p/w.bin") == 0, "%s", why);
    fingerprint_why(old, old, why, sizeof why);
    EXPECT_MSG(strcmp(why, "its recorded output is missing or no longer valid") == 0, "%s", why);
    // A digest that is a prefix of the old one is a change, not a match.
    fingerprint_why(old, "input rows\taa\nvariant\tidentity\nmodel settings\ts\n/p/infer.py\t11\n", why, sizeof why);
    EXPECT_MSG(strcmp(why, "the model's settings changed") == 0, "%s", why);
}

/* After the last test: remove the temp dir. */
static int teardown(void) { return tt_rm_tree(tmpdir); }

TEST_MAIN_WITH(setup, teardown, test_check_paths_by_inode, test_marker_fresh_and_lock, test_limit_layout,
               test_why_a_job_reran)

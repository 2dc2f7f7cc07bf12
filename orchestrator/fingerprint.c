/* fingerprint.c: the named parts of a model's resume keys (its settings and the files it depends
 * on) and the comparison that says why a job reran (see fingerprint.h). Digests come from
 * digest.h's public API only.
 */
#include "fingerprint.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "plan_fields.h"

/* Append the part "label\thex\n" to f, with control characters of label shown as '?' so that
 * one part stays one line. */
static void put_part(FILE *f, const char *label, const char *hex) {
    for (const char *c = label; *c; c++) fputc((unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c, f);
    fprintf(f, "\t%s\n", hex);
}

/* Digest the bytes of the regular file open on fd into d. Returns 0, or -1 on a read error. */
static int digest_fd(digest_t *d, int fd) {
    char buf[1 << 16];
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) return 0;
        digest_update(d, buf, (size_t)got);
    }
}

/* The part of one file: its content digest when it is a regular file of at most
 * FINGERPRINT_CONTENT_MAX bytes, else its stamp (size and mtime; absent when missing). */
static void file_part(FILE *f, const char *path) {
    digest_t d;
    digest_init(&d);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    int content = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= FINGERPRINT_CONTENT_MAX;
    if (content) {
        digest_field(&d, "content", path);
        if (digest_fd(&d, fd) != 0) digest_field(&d, "read-error", strerror(errno));
    } else {
        digest_path_stamp(&d, "stamp", path);
    }
    if (fd >= 0) close(fd);
    char hex[DIGEST_HEX_LEN + 1];
    digest_hex(&d, hex);
    put_part(f, path, hex);
}

/* The part of a file or folder: a folder gives one part per regular file directly inside it
 * (in name order); anything else is file_part. */
static void path_part(FILE *f, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        file_part(f, path);
        return;
    }
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        char *full = pf_join(path, names[i]->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) file_part(f, full);
        free(full);
        free(names[i]);
    }
    free(names);
}

/* The stamp part (digest.h's digest_path_stamp: sizes and mtimes, no content) of path; nothing
 * when path is NULL. */
static void stamp_part(FILE *f, const char *path) {
    if (!path) return;
    digest_t d;
    digest_init(&d);
    digest_path_stamp(&d, "stamp", path);
    char hex[DIGEST_HEX_LEN + 1];
    digest_hex(&d, hex);
    put_part(f, path, hex);
}

char *fingerprint_model(const plan_t *plan, int model) {
    const plan_model_t *m = &plan->models[model];
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ASSERT(f);
    put_part(f, "model settings", m->settings_key);
    // The worker's own files: a command argument naming an existing file (the command runs in
    // the plan's directory), and what depends_on lists.
    for (int i = 0; i < m->n_command; i++) {
        if (strchr(m->command[i], '{') || !m->command[i][0]) continue;
        char *p = pf_join(plan->base_dir, m->command[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) file_part(f, p);
        free(p);
    }
    for (int i = 0; i < m->n_depends_on; i++) path_part(f, m->depends_on[i]);
    // A template file is read by lm-worker; its name is in the settings, its content here.
    if (m->template_name && strchr(m->template_name, '/')) file_part(f, m->template_name);
    // Checkpoints are large: stamped, not read. A checkpoint retrained in place or a rebuilt
    // lm-worker must not be answered from stale records.
    stamp_part(f, m->model);
    stamp_part(f, m->adapter);
    stamp_part(f, m->tokenizer);
    if (m->is_lm_worker) stamp_part(f, plan->lm_worker_path);
    ASSERT(fclose(f) == 0);
    return text;
}

/* Find the line of parts whose label is label (len bytes). Returns a pointer to its digest (up
 * to the newline), or NULL. */
static const char *find_part(const char *parts, const char *label, size_t len) {
    for (const char *line = parts; line && *line;) {
        const char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        if (tab && (!nl || tab < nl) && (size_t)(tab - line) == len && memcmp(line, label, len) == 0) return tab + 1;
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

void fingerprint_why(const char *old_parts, const char *now_parts, char *why, size_t n) {
    why[0] = '\0';
    if (!old_parts) return;
    for (const char *line = now_parts; line && *line;) {
        const char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        if (!tab || !nl || tab > nl) break;
        size_t llen = (size_t)(tab - line), dlen = (size_t)(nl - tab - 1);
        const char *old = find_part(old_parts, line, llen);
        if (!old || strncmp(old, tab + 1, dlen) != 0 || (old[dlen] != '\n' && old[dlen] != '\0')) {
            char label[512];
            snprintf(label, sizeof label, "%.*s", (int)llen, line);
            if (strcmp(label, "input rows") == 0) snprintf(why, n, "its input rows changed");
            else if (strcmp(label, "variant") == 0) snprintf(why, n, "its TTA variant changed");
            else if (strcmp(label, "model settings") == 0) snprintf(why, n, "the model's settings changed");
            else if (!old) snprintf(why, n, "it now depends on %s", label);
            else snprintf(why, n, "%s changed", label);
            return;
        }
        line = nl + 1;
    }
    if (strcmp(old_parts, now_parts) != 0) snprintf(why, n, "the files it depends on changed");
    else snprintf(why, n, "its recorded output is missing or no longer valid");
}

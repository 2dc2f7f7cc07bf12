/* atomic_file.c: temp file + fsync + rename, and two small filesystem helpers. */
#include "atomic_file.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

int atomic_file_open(atomic_file_t *af, const char *path, err_t *err) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = xstrdup(path);
    af->tmp_path = xmalloc(n);
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_fmt(err, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        free(af->path), free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return -1;
    }
    af->f = fdopen(fd, "w");
    if (!af->f) {
        err_fmt(err, "%s: fdopen: %s", af->tmp_path, strerror(errno));
        close(fd), unlink(af->tmp_path);
        free(af->path), free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return -1;
    }
    return 0;
}

/* fsync the directory holding path, so that a rename in it is durable; best effort, errors ignored. */
static void fsync_dir_of(const char *path) {
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) fsync(fd), close(fd);  // best effort: some filesystems refuse directory fsync
    free(copy);
}

int atomic_file_commit(atomic_file_t *af, err_t *err) {
    int rc = 0;
    if (!af->f) return err_fmt(err, "atomic_file_commit: file is not open");
    if (fflush(af->f) != 0 || ferror(af->f)) {
        rc = err_fmt(err, "%s: write failed: %s", af->tmp_path, strerror(errno));
    } else if (fsync(fileno(af->f)) != 0 && errno != EINVAL) {
        rc = err_fmt(err, "%s: fsync failed: %s", af->tmp_path, strerror(errno));
    }
    if (fclose(af->f) != 0 && rc == 0) rc = err_fmt(err, "%s: close failed: %s", af->tmp_path, strerror(errno));
    af->f = NULL;
    if (rc == 0 && rename(af->tmp_path, af->path) != 0)
        rc = err_fmt(err, "rename %s -> %s failed: %s", af->tmp_path, af->path, strerror(errno));
    if (rc == 0) fsync_dir_of(af->path);
    else unlink(af->tmp_path);
    free(af->path), free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return rc;
}

void atomic_file_abort(atomic_file_t *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path), free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

int atomic_file_write(const char *path, const void *data, size_t len, err_t *err) {
    atomic_file_t af;
    if (atomic_file_open(&af, path, err) != 0) return -1;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int e = errno;
        atomic_file_abort(&af);
        return err_fmt(err, "%s: write failed: %s", path, strerror(e));
    }
    return atomic_file_commit(&af, err);
}

int fs_mkdir_p(const char *dir, err_t *err) {
    char *p = xstrdup(dir);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                err_fmt(err, "%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(p);
        return err_fmt(err, "%s: not a directory", dir);
    }
    free(p);
    return 0;
}

/* What kind of file mode describes, for messages ("a directory", "a character device", ...). */
static const char *file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a plain file";
}

char *fs_read_all(const char *path, size_t max_bytes, size_t *len, err_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        err_fmt(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_fmt(err, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        err_fmt(err, "%s: not a regular file (%s)", path, file_kind(st.st_mode));
        close(fd);
        return NULL;
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        err_fmt(err, "%s: %lld bytes is larger than the limit of %zu bytes", path, (long long)st.st_size, max_bytes);
        close(fd);
        return NULL;
    }
    // Read to EOF rather than trusting st_size: /proc files report 0, and a file may grow.
    size_t cap = (size_t)st.st_size + 1 > 4096 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            err_fmt(err, "%s: read error: %s", path, strerror(errno));
            close(fd), free(buf);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
        if (n > max_bytes) {
            err_fmt(err, "%s: grew past the limit of %zu bytes while being read", path, max_bytes);
            close(fd), free(buf);
            return NULL;
        }
    }
    close(fd);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

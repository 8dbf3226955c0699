/*
 * fault_io.c - the fault-injecting wal_io (see fault_io.h).
 */
#include "fault_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

typedef struct ffile {
    char *path;
    uint64_t durable;     /* bytes durable at the last successful fdatasync */
    bool unsynced_create; /* created, and its directory not fsynced since */
    bool live;            /* not unlinked */
} ffile;

typedef struct ffd {
    int fd;
    size_t file; /* index into files */
} ffd;

struct fault_io {
    wal_io table;
    const wal_io *real;
    uv_mutex_t mu;
    uv_cond_t cond;

    uint64_t calls[FAULT_OP_COUNT];
    uint64_t injected[FAULT_OP_COUNT];
    uint64_t fail_at[FAULT_OP_COUNT];
    bool fail_sticky[FAULT_OP_COUNT];
    int fail_err[FAULT_OP_COUNT];
    uint64_t block_at[FAULT_OP_COUNT];
    bool gate_open;
    int blocked;
    uint64_t short_at;
    size_t short_max, short_all;
    uint64_t bytes_written;
    bool crashed;

    ffile *files;
    size_t nfiles, files_cap;
    ffd *fds;
    size_t nfds, fds_cap;
};

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL) {
        fprintf(stderr, "fault_io: out of memory\n");
        abort();
    }
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xrealloc(NULL, n);
    memcpy(d, s, n);
    return d;
}

/* ---- Bookkeeping (mu held) ------------------------------------------------------- */

static size_t file_find(fault_io *f, const char *path)
{
    for (size_t i = 0; i < f->nfiles; i++)
        if (f->files[i].live && strcmp(f->files[i].path, path) == 0)
            return i;
    return SIZE_MAX;
}

static size_t file_add(fault_io *f, const char *path)
{
    if (f->nfiles == f->files_cap) {
        f->files_cap = f->files_cap ? 2 * f->files_cap : 16;
        f->files = xrealloc(f->files, f->files_cap * sizeof(*f->files));
    }
    ffile *e = &f->files[f->nfiles];
    memset(e, 0, sizeof(*e));
    e->path = xstrdup(path);
    e->live = true;
    return f->nfiles++;
}

static ffd *fd_find(fault_io *f, int fd)
{
    for (size_t i = 0; i < f->nfds; i++)
        if (f->fds[i].fd == fd)
            return &f->fds[i];
    return NULL;
}

static void fd_set(fault_io *f, int fd, size_t file)
{
    ffd *e = fd_find(f, fd);
    if (e == NULL) {
        if (f->nfds == f->fds_cap) {
            f->fds_cap = f->fds_cap ? 2 * f->fds_cap : 16;
            f->fds = xrealloc(f->fds, f->fds_cap * sizeof(*f->fds));
        }
        e = &f->fds[f->nfds++];
    }
    e->fd = fd;
    e->file = file;
}

static void fd_drop(fault_io *f, int fd)
{
    for (size_t i = 0; i < f->nfds; i++) {
        if (f->fds[i].fd == fd) {
            f->fds[i] = f->fds[--f->nfds];
            return;
        }
    }
}

/* True if `path` names a file directly inside `dir`. */
static bool in_dir(const char *path, const char *dir)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strcmp(dir, ".") == 0;
    size_t n = (size_t)(slash - path);
    size_t dn = strlen(dir);
    while (dn > 1 && dir[dn - 1] == '/')
        dn--;
    return n == dn && memcmp(path, dir, n) == 0;
}

/*
 * Every operation starts here: counts the call, blocks if asked to, and
 * decides whether it fails. Returns 0 to go on or the error to return.
 */
static int enter(fault_io *f, fault_op op, uint64_t *nth)
{
    uv_mutex_lock(&f->mu);
    uint64_t n = ++f->calls[op];
    if (f->block_at[op] == n) {
        f->blocked++;
        uv_cond_broadcast(&f->cond);
        while (!f->gate_open)
            uv_cond_wait(&f->cond, &f->mu);
        f->blocked--;
    }
    int err = 0;
    if (f->crashed && op != FAULT_CLOSE) {
        err = -EIO;
    } else if (f->fail_at[op] != 0 &&
               (n == f->fail_at[op] || (f->fail_sticky[op] && n > f->fail_at[op]))) {
        err = f->fail_err[op];
        f->injected[op]++;
    }
    uv_mutex_unlock(&f->mu);
    if (nth != NULL)
        *nth = n;
    return err;
}

/* ---- The operations ---------------------------------------------------------------- */

static int f_open(void *ctx, const char *path, int flags, int mode)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_OPEN, NULL);
    if (err != 0)
        return err;
    struct stat st;
    bool existed = stat(path, &st) == 0;
    int fd = f->real->open(f->real->ctx, path, flags, mode);
    if (fd < 0)
        return fd;
    uv_mutex_lock(&f->mu);
    size_t i = file_find(f, path);
    if (i == SIZE_MAX) {
        i = file_add(f, path);
        /* A file the model has not seen is taken to be durable as it is. */
        f->files[i].durable = existed ? (uint64_t)st.st_size : 0;
        f->files[i].unsynced_create = !existed && (flags & O_CREAT) != 0;
    } else if (!existed) {
        f->files[i].durable = 0;
        f->files[i].unsynced_create = (flags & O_CREAT) != 0;
    }
    fd_set(f, fd, i);
    uv_mutex_unlock(&f->mu);
    return fd;
}

static ssize_t f_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    fault_io *f = ctx;
    uint64_t n;
    int err = enter(f, FAULT_PWRITE, &n);
    if (err != 0)
        return err;
    uv_mutex_lock(&f->mu);
    if (f->short_at == n && len > f->short_max)
        len = f->short_max;
    if (f->short_all > 0 && len > f->short_all)
        len = f->short_all;
    uv_mutex_unlock(&f->mu);
    if (len == 0)
        return 0;
    ssize_t rc = f->real->pwrite(f->real->ctx, fd, buf, len, off);
    if (rc > 0) {
        uv_mutex_lock(&f->mu);
        f->bytes_written += (uint64_t)rc;
        uv_mutex_unlock(&f->mu);
    }
    return rc;
}

static int f_fdatasync(void *ctx, int fd)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_FDATASYNC, NULL);
    if (err != 0)
        return err;
    int rc = f->real->fdatasync(f->real->ctx, fd);
    struct stat st;
    if (rc == 0 && fstat(fd, &st) == 0) {
        uv_mutex_lock(&f->mu);
        ffd *e = fd_find(f, fd);
        if (e != NULL)
            f->files[e->file].durable = (uint64_t)st.st_size;
        uv_mutex_unlock(&f->mu);
    }
    return rc;
}

static int f_fsync_dir(void *ctx, const char *dir)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_FSYNC_DIR, NULL);
    if (err != 0)
        return err;
    int rc = f->real->fsync_dir(f->real->ctx, dir);
    if (rc == 0) {
        uv_mutex_lock(&f->mu);
        for (size_t i = 0; i < f->nfiles; i++)
            if (f->files[i].live && in_dir(f->files[i].path, dir))
                f->files[i].unsynced_create = false;
        uv_mutex_unlock(&f->mu);
    }
    return rc;
}

static int f_ftruncate(void *ctx, int fd, off_t len)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_FTRUNCATE, NULL);
    if (err != 0)
        return err;
    int rc = f->real->ftruncate(f->real->ctx, fd, len);
    if (rc == 0) {
        /* Bytes past the new length are no longer known to be durable. */
        uv_mutex_lock(&f->mu);
        ffd *e = fd_find(f, fd);
        if (e != NULL && f->files[e->file].durable > (uint64_t)len)
            f->files[e->file].durable = (uint64_t)len;
        uv_mutex_unlock(&f->mu);
    }
    return rc;
}

static int f_rename(void *ctx, const char *from, const char *to)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_RENAME, NULL);
    if (err != 0)
        return err;
    int rc = f->real->rename(f->real->ctx, from, to);
    if (rc == 0) {
        uv_mutex_lock(&f->mu);
        size_t old = file_find(f, to);
        if (old != SIZE_MAX)
            f->files[old].live = false;
        size_t i = file_find(f, from);
        if (i != SIZE_MAX) {
            free(f->files[i].path);
            f->files[i].path = xstrdup(to);
        }
        uv_mutex_unlock(&f->mu);
    }
    return rc;
}

static int f_unlink(void *ctx, const char *path)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_UNLINK, NULL);
    if (err != 0)
        return err;
    int rc = f->real->unlink(f->real->ctx, path);
    if (rc == 0) {
        uv_mutex_lock(&f->mu);
        size_t i = file_find(f, path);
        if (i != SIZE_MAX)
            f->files[i].live = false;
        uv_mutex_unlock(&f->mu);
    }
    return rc;
}

static int f_close(void *ctx, int fd)
{
    fault_io *f = ctx;
    int err = enter(f, FAULT_CLOSE, NULL);
    uv_mutex_lock(&f->mu);
    fd_drop(f, fd);
    uv_mutex_unlock(&f->mu);
    /* A failed close still releases the descriptor, as close(2) does. */
    int rc = f->real->close(f->real->ctx, fd);
    return err != 0 ? err : rc;
}

/* ---- Public API ------------------------------------------------------------------------- */

fault_io *fault_io_new(void)
{
    fault_io *f = xrealloc(NULL, sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->real = wal_io_posix();
    f->table = (wal_io){
        .open = f_open,
        .pwrite = f_pwrite,
        .fdatasync = f_fdatasync,
        .fsync_dir = f_fsync_dir,
        .ftruncate = f_ftruncate,
        .rename = f_rename,
        .unlink = f_unlink,
        .close = f_close,
        .ctx = f,
    };
    if (uv_mutex_init(&f->mu) != 0 || uv_cond_init(&f->cond) != 0) {
        fprintf(stderr, "fault_io: cannot init mutex\n");
        abort();
    }
    return f;
}

void fault_io_free(fault_io *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nfiles; i++)
        free(f->files[i].path);
    free(f->files);
    free(f->fds);
    uv_cond_destroy(&f->cond);
    uv_mutex_destroy(&f->mu);
    free(f);
}

const wal_io *fault_io_table(fault_io *f)
{
    return &f->table;
}

uint64_t fault_io_calls(fault_io *f, fault_op op)
{
    uv_mutex_lock(&f->mu);
    uint64_t n = f->calls[op];
    uv_mutex_unlock(&f->mu);
    return n;
}

uint64_t fault_io_injected(fault_io *f, fault_op op)
{
    uv_mutex_lock(&f->mu);
    uint64_t n = f->injected[op];
    uv_mutex_unlock(&f->mu);
    return n;
}

uint64_t fault_io_bytes_written(fault_io *f)
{
    uv_mutex_lock(&f->mu);
    uint64_t n = f->bytes_written;
    uv_mutex_unlock(&f->mu);
    return n;
}

static void arm_fail(fault_io *f, fault_op op, uint64_t nth, int err, bool sticky)
{
    uv_mutex_lock(&f->mu);
    f->fail_at[op] = nth;
    f->fail_err[op] = err;
    f->fail_sticky[op] = sticky;
    uv_mutex_unlock(&f->mu);
}

void fault_io_fail_nth(fault_io *f, fault_op op, uint64_t nth, int err)
{
    arm_fail(f, op, nth, err, false);
}

void fault_io_fail_from(fault_io *f, fault_op op, uint64_t nth, int err)
{
    arm_fail(f, op, nth, err, true);
}

void fault_io_short_nth(fault_io *f, uint64_t nth, size_t max_bytes)
{
    uv_mutex_lock(&f->mu);
    f->short_at = nth;
    f->short_max = max_bytes;
    uv_mutex_unlock(&f->mu);
}

void fault_io_short_all(fault_io *f, size_t max_bytes)
{
    uv_mutex_lock(&f->mu);
    f->short_all = max_bytes;
    uv_mutex_unlock(&f->mu);
}

void fault_io_block_nth(fault_io *f, fault_op op, uint64_t nth)
{
    uv_mutex_lock(&f->mu);
    f->block_at[op] = nth;
    f->gate_open = false;
    uv_mutex_unlock(&f->mu);
}

bool fault_io_wait_blocked(fault_io *f, uint64_t timeout_ms)
{
    uint64_t deadline = uv_hrtime() + timeout_ms * 1000000u;
    uv_mutex_lock(&f->mu);
    while (f->blocked == 0) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        (void)uv_cond_timedwait(&f->cond, &f->mu, deadline - now);
    }
    bool blocked = f->blocked > 0;
    uv_mutex_unlock(&f->mu);
    return blocked;
}

void fault_io_release(fault_io *f)
{
    uv_mutex_lock(&f->mu);
    f->gate_open = true;
    uv_cond_broadcast(&f->cond);
    uv_mutex_unlock(&f->mu);
}

int64_t fault_io_durable_len(fault_io *f, const char *path)
{
    uv_mutex_lock(&f->mu);
    size_t i = file_find(f, path);
    int64_t len = i == SIZE_MAX ? -1 : (int64_t)f->files[i].durable;
    uv_mutex_unlock(&f->mu);
    return len;
}

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* Overwrites [from, to) of `path` with garbage (zeros if seed is NULL). */
static int fill_garbage(const char *path, uint64_t from, uint64_t to, uint64_t *seed)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    uint8_t buf[4096];
    int rc = 0;
    while (from < to && rc == 0) {
        size_t n = to - from < sizeof(buf) ? (size_t)(to - from) : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = seed != NULL ? (uint8_t)next_rand(seed) : 0;
        ssize_t w = pwrite(fd, buf, n, (off_t)from);
        if (w <= 0)
            rc = w < 0 ? -errno : -EIO;
        else
            from += (uint64_t)w;
    }
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int cut(const char *path, uint64_t len)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    int rc = ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int fault_io_crash_ex(fault_io *f, const fault_crash *how)
{
    fault_crash none = {0};
    if (how == NULL)
        how = &none;
    uint64_t seed = how->seed ^ 0x5DEECE66Du;
    int changed = 0, rc = 0;
    uv_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nfiles && rc >= 0; i++) {
        ffile *e = &f->files[i];
        if (!e->live)
            continue;
        struct stat st;
        if (stat(e->path, &st) != 0)
            continue;
        if (e->unsynced_create && how->drop_unsynced_creates) {
            rc = unlink(e->path) < 0 ? -errno : 0;
            e->live = false;
            changed++;
            continue;
        }
        uint64_t size = (uint64_t)st.st_size;
        if (size <= e->durable)
            continue;
        uint64_t unsynced = size - e->durable;
        uint64_t keep = how->keep_unsynced < unsynced ? how->keep_unsynced : unsynced;
        bool touched = false;
        if (keep < unsynced) {
            if (how->garbage)
                rc = fill_garbage(e->path, e->durable + keep, size, &seed);
            else
                rc = cut(e->path, e->durable + keep), size = e->durable + keep;
            touched = true;
        }
        uint64_t zeros = size - e->durable;
        if (how->zero_unsynced_head < zeros)
            zeros = how->zero_unsynced_head;
        if (rc == 0 && zeros > 0) {
            rc = fill_garbage(e->path, e->durable, e->durable + zeros, NULL);
            touched = true;
        }
        changed += touched;
    }
    f->crashed = true;
    f->gate_open = true;
    uv_cond_broadcast(&f->cond);
    uv_mutex_unlock(&f->mu);
    return rc < 0 ? rc : changed;
}

int fault_io_crash(fault_io *f)
{
    return fault_io_crash_ex(f, NULL);
}

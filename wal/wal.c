/*
 * wal.c - framing, the segment reader and the group-commit writer.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define SEG_MAGIC       "USHERWAL"
#define SEG_VERSION     1
#define SEG_SUFFIX      ".wal"
#define SEG_NAME_DIGITS 16
/* A segment path: a directory (< WAL_PATH_MAX) + '/' + a 21-byte name. */
#define SEG_PATH_MAX (WAL_PATH_MAX + 32)

#define WAL_ASSERT(c) ((c) ? (void)0 : wal_assert_fail(#c, __FILE__, __LINE__))

static void wal_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher wal: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

const char *wal_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case WAL_EFAILED:
        return "write-ahead log failed earlier and accepts no more writes";
    case WAL_ETOOBIG:
        return "record payload too large";
    case WAL_EFULL:
        return "write-ahead log batch is full; retry later";
    case WAL_ECORRUPT:
        return "write-ahead log is corrupt";
    case WAL_EGAP:
        return "write-ahead log has a gap in its LSNs";
    case WAL_EBADSEG:
        return "write-ahead log directory holds a file that is not a segment";
    case WAL_ECLOSED:
        return "write-ahead log is closing";
    case WAL_ENOTFOUND:
        return "requested LSN is no longer in the write-ahead log";
    default:
        return err < 0 && err > -4096 ? strerror(-err) : "unknown write-ahead log error";
    }
}

/* ---- Little-endian helpers ----------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- POSIX I/O ------------------------------------------------------------------- */

static int posix_open(void *ctx, const char *path, int flags, int mode)
{
    (void)ctx;
    int fd = open(path, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}
static ssize_t posix_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    (void)ctx;
    ssize_t n;
    do
        n = pwrite(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}
static int posix_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd) < 0 ? -errno : 0;
}
static int posix_fsync_dir(void *ctx, const char *dir)
{
    (void)ctx;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}
static int posix_ftruncate(void *ctx, int fd, off_t len)
{
    (void)ctx;
    return ftruncate(fd, len) < 0 ? -errno : 0;
}
static int posix_rename(void *ctx, const char *from, const char *to)
{
    (void)ctx;
    return rename(from, to) < 0 ? -errno : 0;
}
static int posix_unlink(void *ctx, const char *path)
{
    (void)ctx;
    return unlink(path) < 0 ? -errno : 0;
}
static int posix_close(void *ctx, int fd)
{
    (void)ctx;
    return close(fd) < 0 ? -errno : 0;
}

static const wal_io posix_io = {
    .open = posix_open,
    .pwrite = posix_pwrite,
    .fdatasync = posix_fdatasync,
    .fsync_dir = posix_fsync_dir,
    .ftruncate = posix_ftruncate,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .close = posix_close,
    .ctx = NULL,
};

const wal_io *wal_io_posix(void)
{
    return &posix_io;
}

/* ---- Framing ------------------------------------------------------------------------ */

void wal_frame_encode(uint8_t *buf, uint64_t lsn, uint16_t type, int64_t time_ms,
                      const void *payload, uint32_t len)
{
    wal_frame_encode_flags(buf, lsn, type, 0, time_ms, payload, len);
}

void wal_frame_encode_flags(uint8_t *buf, uint64_t lsn, uint16_t type, uint16_t flags,
                            int64_t time_ms, const void *payload, uint32_t len)
{
    WAL_ASSERT(len <= WAL_PAYLOAD_MAX && lsn > 0 && (flags & ~WAL_FLAG_BATCH_START) == 0);
    put32(buf, len);
    put16(buf + 4, type);
    put16(buf + 6, flags);
    put64(buf + 8, lsn);
    put64(buf + 16, (uint64_t)time_ms);
    if (len > 0)
        memcpy(buf + WAL_FRAME_HEADER, payload, len);
    put64(buf + WAL_FRAME_HEADER + len, XXH3_64bits(buf, WAL_FRAME_HEADER + len));
}

ssize_t wal_frame_decode(const uint8_t *buf, size_t avail, wal_record *rec)
{
    if (avail < WAL_FRAME_HEADER)
        return 0;
    uint32_t len = get32(buf);
    if (len > WAL_PAYLOAD_MAX || (get16(buf + 6) & ~WAL_FLAG_BATCH_START) != 0)
        return WAL_ECORRUPT;
    size_t total = wal_frame_size(len);
    if (avail < total)
        return 0;
    if (XXH3_64bits(buf, WAL_FRAME_HEADER + len) != get64(buf + WAL_FRAME_HEADER + len))
        return WAL_ECORRUPT;
    rec->payload_len = len;
    rec->type = get16(buf + 4);
    rec->flags = get16(buf + 6);
    rec->lsn = get64(buf + 8);
    rec->time_ms = (int64_t)get64(buf + 16);
    rec->payload = buf + WAL_FRAME_HEADER;
    if (rec->lsn == 0)
        return WAL_ECORRUPT;
    return (ssize_t)total;
}

void wal_segment_name(uint64_t first_lsn, char out[32])
{
    snprintf(out, 32, "%016" PRIx64 SEG_SUFFIX, first_lsn);
}

static void segment_header_encode(uint8_t *buf, uint32_t shard, uint64_t first_lsn)
{
    memcpy(buf, SEG_MAGIC, 8);
    put32(buf + 8, SEG_VERSION);
    put32(buf + 12, shard);
    put64(buf + 16, first_lsn);
    put64(buf + 24, XXH3_64bits(buf, 24));
}

static bool segment_header_ok(const uint8_t *buf, size_t len, uint64_t first_lsn)
{
    return len >= WAL_SEGMENT_HEADER && memcmp(buf, SEG_MAGIC, 8) == 0 &&
           get32(buf + 8) == SEG_VERSION && get64(buf + 16) == first_lsn &&
           get64(buf + 24) == XXH3_64bits(buf, 24);
}

/* Parses "<16 hex digits>.wal"; false for anything else. */
static bool segment_parse_name(const char *name, uint64_t *first_lsn)
{
    if (strlen(name) != SEG_NAME_DIGITS + strlen(SEG_SUFFIX) ||
        strcmp(name + SEG_NAME_DIGITS, SEG_SUFFIX) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *first_lsn = v;
    return v > 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Lists the segments of `dir`, sorted by first LSN. A missing directory is
 * an empty list. Any other entry is an error (a stray file in a WAL
 * directory means someone is doing something we should know about). */
static int segments_list(const char *dir, uint64_t **out, size_t *count, char *why, size_t why_len)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    size_t cap = 16, n = 0;
    uint64_t *v = malloc(cap * sizeof(*v));
    int rc = v == NULL ? -ENOMEM : 0;
    struct dirent *ent;
    while (rc == 0 && (ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        uint64_t lsn;
        if (!segment_parse_name(ent->d_name, &lsn)) {
            snprintf(why, why_len, "%s/%s is not a WAL segment (expected <16 hex digits>.wal)", dir,
                     ent->d_name);
            rc = WAL_EBADSEG;
            break;
        }
        if (n == cap) {
            uint64_t *bigger = realloc(v, 2 * cap * sizeof(*v));
            if (bigger == NULL) {
                rc = -ENOMEM;
                break;
            }
            v = bigger;
            cap *= 2;
        }
        v[n++] = lsn;
    }
    closedir(d);
    if (rc != 0) {
        free(v);
        return rc;
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    *out = v;
    *count = n;
    return 0;
}

int wal_oldest_lsn(const char *dir, uint64_t *lsn)
{
    uint64_t *segs;
    size_t n;
    char why[2 * SEG_PATH_MAX];
    int rc = segments_list(dir, &segs, &n, why, sizeof(why));
    if (rc != 0)
        return rc;
    *lsn = n > 0 ? segs[0] : 0;
    free(segs);
    return 0;
}

static void segment_path(const char *dir, uint64_t first_lsn, char *out, size_t len)
{
    char name[32];
    wal_segment_name(first_lsn, name);
    snprintf(out, len, "%s/%s", dir, name);
}

/* Reads a whole file. */
static int file_read_all(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *b = malloc(size > 0 ? size : 1);
    if (b == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, b + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc = n < 0 ? -errno : -EIO;
            free(b);
            close(fd);
            return rc;
        }
        got += (size_t)n;
    }
    close(fd);
    *buf = b;
    *len = size;
    return 0;
}

/* ---- Reader ---------------------------------------------------------------------------- */

struct wal_reader {
    char dir[WAL_PATH_MAX];
    const wal_io *io;
    uint64_t from_lsn;
    uint64_t *segs;
    size_t nsegs, seg; /* current segment index */
    uint8_t *buf;      /* current segment's bytes */
    size_t len, off;
    bool loaded, done;
    uint64_t expect_lsn;
    wal_tail tail;
    char error[2 * SEG_PATH_MAX];
};

int wal_reader_open(const char *dir, uint64_t from_lsn, const wal_io *io, wal_reader **out)
{
    if (from_lsn == 0)
        from_lsn = 1;
    wal_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    if (strlen(dir) >= sizeof(r->dir) - 40) {
        free(r);
        return -ENAMETOOLONG;
    }
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    r->io = io != NULL ? io : &posix_io;
    r->from_lsn = from_lsn;
    r->tail.last_lsn = from_lsn - 1;
    int rc = segments_list(dir, &r->segs, &r->nsegs, r->error, sizeof(r->error));
    if (rc != 0) {
        free(r);
        return rc;
    }
    if (r->nsegs == 0) {
        r->done = true;
        *out = r;
        return 0;
    }
    if (r->segs[0] > from_lsn) {
        free(r->segs);
        free(r);
        return WAL_ENOTFOUND;
    }
    /* Start in the last segment that begins at or before from_lsn. */
    size_t i = 0;
    while (i + 1 < r->nsegs && r->segs[i + 1] <= from_lsn)
        i++;
    r->seg = i;
    r->expect_lsn = r->segs[i];
    *out = r;
    return 0;
}

/* Looks for a valid frame that starts a batch, at or after `from`, with an
 * LSN after `expect`. Batches are written only once the previous one is
 * synced, so finding one proves the bytes before it were durable. Only run
 * after a bad record in the last segment, i.e. after a crash. */
static bool later_batch_after(const uint8_t *buf, size_t len, size_t from, uint64_t expect,
                              size_t *at, uint64_t *lsn)
{
    for (size_t pos = from; pos + WAL_FRAME_HEADER + WAL_FRAME_TRAILER <= len; pos++) {
        const uint8_t *p = buf + pos;
        if (get16(p + 6) != WAL_FLAG_BATCH_START || get64(p + 8) <= expect)
            continue;
        wal_record rec;
        if (wal_frame_decode(p, len - pos, &rec) > 0) {
            *at = pos;
            *lsn = rec.lsn;
            return true;
        }
    }
    return false;
}

static int reader_fail(wal_reader *r, int err, const char *path, size_t off, const char *what)
{
    snprintf(r->error, sizeof(r->error), "%s at %s offset %zu (expected LSN %" PRIu64 ")", what,
             path, off, r->expect_lsn);
    r->done = true;
    return err;
}

static int reader_end(wal_reader *r, const char *path, size_t good, size_t torn, const char *reason)
{
    snprintf(r->tail.last_segment, sizeof(r->tail.last_segment), "%s", path);
    r->tail.good_bytes = good;
    r->tail.torn_bytes = torn;
    r->tail.torn_reason = torn > 0 ? reason : NULL;
    if (r->expect_lsn > r->from_lsn)
        r->tail.last_lsn = r->expect_lsn - 1;
    r->done = true;
    return 0;
}

int wal_reader_next(wal_reader *r, wal_record *rec)
{
    char path[SEG_PATH_MAX];
    while (!r->done) {
        segment_path(r->dir, r->segs[r->seg], path, sizeof(path));
        bool last = r->seg + 1 == r->nsegs;
        if (!r->loaded) {
            free(r->buf);
            r->buf = NULL;
            int rc = file_read_all(path, &r->buf, &r->len);
            if (rc != 0)
                return reader_fail(r, rc, path, 0, wal_strerror(rc));
            if (!segment_header_ok(r->buf, r->len, r->segs[r->seg])) {
                if (last)
                    return reader_end(r, path, 0, r->len, "segment header incomplete or corrupt");
                return reader_fail(r, WAL_ECORRUPT, path, 0, "corrupt segment header");
            }
            r->off = WAL_SEGMENT_HEADER;
            r->loaded = true;
        }
        if (r->off == r->len) {
            if (last)
                return reader_end(r, path, r->len, 0, NULL);
            if (r->segs[r->seg + 1] != r->expect_lsn)
                return reader_fail(r, WAL_EGAP, path, r->off,
                                   "LSN gap: the next segment does not start where this one ends");
            r->seg++;
            r->loaded = false;
            continue;
        }
        ssize_t n = wal_frame_decode(r->buf + r->off, r->len - r->off, rec);
        if (n <= 0) {
            const char *why = n == 0 ? "record incomplete" : "record checksum or header bad";
            if (!last)
                return reader_fail(r, WAL_ECORRUPT, path, r->off, why);
            size_t later = 0;
            uint64_t later_lsn = 0;
            if (later_batch_after(r->buf, r->len, r->off + 1, r->expect_lsn, &later, &later_lsn)) {
                char what[200];
                snprintf(what, sizeof(what),
                         "%s inside synced data (a later batch starts at offset %zu with LSN "
                         "%" PRIu64 ")",
                         why, later, later_lsn);
                return reader_fail(r, WAL_ECORRUPT, path, r->off, what);
            }
            return reader_end(r, path, r->off, r->len - r->off, why);
        }
        if (rec->lsn != r->expect_lsn)
            return reader_fail(r, WAL_ECORRUPT, path, r->off, "record has an unexpected LSN");
        r->off += (size_t)n;
        r->expect_lsn++;
        if (rec->lsn >= r->from_lsn)
            return 1;
    }
    return 0;
}

const wal_tail *wal_reader_tail(const wal_reader *r)
{
    return &r->tail;
}

const char *wal_reader_error(const wal_reader *r)
{
    return r->error;
}

void wal_reader_close(wal_reader *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    free(r->segs);
    free(r);
}

static void dir_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        snprintf(out, len, ".");
}

int wal_tail_repair(const char *dir, const wal_tail *tail, const wal_io *io)
{
    (void)dir;
    if (io == NULL)
        io = &posix_io;
    if (tail->last_segment[0] == '\0' ||
        (tail->torn_bytes == 0 && tail->good_bytes >= WAL_SEGMENT_HEADER))
        return 0;
    char parent[SEG_PATH_MAX];
    dir_of(tail->last_segment, parent, sizeof(parent));
    if (tail->good_bytes < WAL_SEGMENT_HEADER) {
        int rc = io->unlink(io->ctx, tail->last_segment);
        return rc != 0 ? rc : io->fsync_dir(io->ctx, parent);
    }
    int fd = io->open(io->ctx, tail->last_segment, O_WRONLY, 0);
    if (fd < 0)
        return fd;
    int rc = io->ftruncate(io->ctx, fd, (off_t)tail->good_bytes);
    if (rc == 0)
        rc = io->fdatasync(io->ctx, fd);
    int rc2 = io->close(io->ctx, fd);
    return rc != 0 ? rc : rc2;
}

/* ---- Follower ------------------------------------------------------------------- */

struct wal_follower {
    char dir[WAL_PATH_MAX];
    int fd;             /* the current segment, or -1 */
    uint64_t seg_first; /* its first LSN */
    uint64_t off;       /* where the next frame starts in it */
    uint64_t next_lsn;
    uint8_t *buf;
    size_t cap;
    char error[2 * SEG_PATH_MAX];
};

static int follower_fail(wal_follower *f, int rc, const char *what)
{
    char path[SEG_PATH_MAX];
    segment_path(f->dir, f->seg_first, path, sizeof(path));
    snprintf(f->error, sizeof(f->error), "%s: offset %" PRIu64 ", LSN %" PRIu64 ": %s", path,
             f->off, f->next_lsn, what);
    return rc;
}

/* Reads exactly `len` bytes at `off`; 0, 1 if the file is shorter, -errno. */
static int follower_pread(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 1;
        got += (size_t)n;
    }
    return 0;
}

/* Opens the segment starting at `first` and checks its header. */
static int follower_enter(wal_follower *f, uint64_t first)
{
    char path[SEG_PATH_MAX];
    segment_path(f->dir, first, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? WAL_ENOTFOUND : -errno;
    uint8_t hdr[WAL_SEGMENT_HEADER];
    int rc = follower_pread(fd, hdr, sizeof(hdr), 0);
    if (rc != 0 || !segment_header_ok(hdr, sizeof(hdr), first)) {
        close(fd);
        f->seg_first = first;
        f->off = 0;
        return rc < 0 ? rc : follower_fail(f, WAL_ECORRUPT, "segment header incomplete or corrupt");
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = fd;
    f->seg_first = first;
    f->off = WAL_SEGMENT_HEADER;
    return 0;
}

/* Reads the frame at f->off into f->buf: 1 with `rec`, 0 if the segment
 * holds no (complete) frame there, < 0 on error. */
static int follower_frame(wal_follower *f, wal_record *rec)
{
    uint8_t hdr[WAL_FRAME_HEADER];
    int rc = follower_pread(f->fd, hdr, sizeof(hdr), f->off);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    uint32_t len = get32(hdr);
    if (len > WAL_PAYLOAD_MAX)
        return follower_fail(f, WAL_ECORRUPT, "record length out of range");
    size_t frame = wal_frame_size(len);
    if (frame > f->cap) {
        uint8_t *b = realloc(f->buf, frame);
        if (b == NULL)
            return -ENOMEM;
        f->buf = b;
        f->cap = frame;
    }
    rc = follower_pread(f->fd, f->buf, frame, f->off);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    ssize_t n = wal_frame_decode(f->buf, frame, rec);
    if (n <= 0)
        return follower_fail(f, WAL_ECORRUPT, "record checksum or header bad");
    return 1;
}

int wal_follower_open(const char *dir, uint64_t from_lsn, wal_follower **out)
{
    if (from_lsn == 0)
        from_lsn = 1;
    wal_follower *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    if (strlen(dir) >= sizeof(f->dir) - 40) {
        free(f);
        return -ENAMETOOLONG;
    }
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    f->fd = -1;
    uint64_t *segs = NULL;
    size_t n = 0;
    int rc = segments_list(dir, &segs, &n, f->error, sizeof(f->error));
    if (rc != 0) {
        free(f);
        return rc;
    }
    /* The segment holding from_lsn: the last one starting at or before it. */
    size_t i = n;
    while (i > 0 && segs[i - 1] > from_lsn)
        i--;
    uint64_t first = i > 0 ? segs[i - 1] : 0;
    free(segs);
    if (n > 0 && first == 0) {
        free(f);
        return WAL_ENOTFOUND; /* older than the oldest retained segment */
    }
    f->next_lsn = first != 0 ? first : 1;
    if (first != 0 && (rc = follower_enter(f, first)) != 0) {
        wal_follower_close(f);
        return rc;
    }
    /* Skip to from_lsn: frame headers only are needed, but every frame is
     * read whole so that a damaged one is noticed. */
    while (f->next_lsn < from_lsn) {
        wal_record rec;
        rc = f->fd >= 0 ? follower_frame(f, &rec) : 0;
        if (rc <= 0) {
            wal_follower_close(f);
            return rc < 0 ? rc : WAL_ENOTFOUND; /* the log does not reach from_lsn - 1 */
        }
        if (rec.lsn != f->next_lsn) {
            rc = follower_fail(f, WAL_ECORRUPT, "record has an unexpected LSN");
            wal_follower_close(f);
            return rc;
        }
        f->off += wal_frame_size(rec.payload_len);
        f->next_lsn++;
    }
    *out = f;
    return 0;
}

int wal_follower_next(wal_follower *f, uint64_t durable_lsn, wal_record *rec)
{
    if (f->next_lsn > durable_lsn)
        return 0;
    /* The record exists (it is durable): here, or at the start of the next
     * segment if the writer rotated. */
    int rc = f->fd >= 0 ? follower_frame(f, rec) : 0;
    if (rc < 0)
        return rc;
    if (rc == 0) {
        rc = follower_enter(f, f->next_lsn);
        if (rc == WAL_ENOTFOUND && f->fd >= 0)
            return follower_fail(f, WAL_EGAP,
                                 "a durable record is neither in this segment nor the next");
        if (rc != 0)
            return rc;
        rc = follower_frame(f, rec);
        if (rc <= 0)
            return rc < 0 ? rc : follower_fail(f, WAL_EGAP, "a new segment without its record");
    }
    if (rec->lsn != f->next_lsn)
        return follower_fail(f, WAL_ECORRUPT, "record has an unexpected LSN");
    f->off += wal_frame_size(rec->payload_len);
    f->next_lsn++;
    return 1;
}

uint64_t wal_follower_next_lsn(const wal_follower *f)
{
    return f->next_lsn;
}

const char *wal_follower_error(const wal_follower *f)
{
    return f->error;
}

void wal_follower_close(wal_follower *f)
{
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->buf);
    free(f);
}

/* ---- Writer --------------------------------------------------------------------------------- */

typedef struct batch {
    uint8_t *data;
    size_t len, cap;
    uint64_t first_lsn, last_lsn;
    uint32_t records;
} batch;

struct wal_writer {
    uv_loop_t *loop;
    wal_writer_config cfg;
    char dir[WAL_PATH_MAX];
    const wal_io *io;
    uv_prepare_t prepare;
    uv_async_t async;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cond;
    int handles_open;

    /* Loop-thread state. */
    batch bufs[2];
    int fill;      /* index of the batch being filled */
    bool inflight; /* the other batch is with the writer thread */
    uint64_t next_lsn, durable_lsn;
    int error;
    bool closing, failed_reported, finished;
    wal_stats stats;
    void (*close_cb)(wal_writer *w, void *arg);
    void *close_arg;

    /* Shared under mu. */
    int job; /* batch index handed over, or -1 */
    bool stop;
    bool done; /* a result is waiting for the loop thread */
    int done_err;
    uint64_t done_lsn, done_sync_ns, done_bytes;
    uint32_t done_syncs, done_rotations;
    uint64_t drop_lsn; /* delete segments wholly <= this (0 = nothing asked) */
    uint64_t keep_lsn; /* ... but never a segment holding a record > this (UINT64_MAX: no floor) */
    uint64_t bytes_written;

    /* Writer-thread state. */
    int fd;
    uint64_t seg_first;
    uint64_t seg_size;
};

/* Writes all of buf at off, continuing after short writes. */
static int write_full(wal_writer *w, const uint8_t *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = w->io->pwrite(w->io->ctx, w->fd, buf, len, off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Starts a new segment whose first record has LSN `first_lsn` (writer thread). */
static int segment_start(wal_writer *w, uint64_t first_lsn, uint32_t *rotations)
{
    if (w->fd >= 0) {
        int rc = w->io->close(w->io->ctx, w->fd);
        w->fd = -1;
        if (rc != 0)
            return rc;
    }
    char path[SEG_PATH_MAX];
    segment_path(w->dir, first_lsn, path, sizeof(path));
    int fd = w->io->open(w->io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return fd;
    w->fd = fd;
    w->seg_first = first_lsn;
    w->seg_size = 0;
    uint8_t hdr[WAL_SEGMENT_HEADER];
    segment_header_encode(hdr, w->cfg.shard, first_lsn);
    int rc = write_full(w, hdr, sizeof(hdr), 0);
    if (rc != 0)
        return rc;
    w->seg_size = WAL_SEGMENT_HEADER;
    (*rotations)++;
    return 0;
}

/* Writes one batch: frames go to the active segment until the next one would
 * overflow it, then a new segment starts. Each segment touched gets one
 * write and one fdatasync; a new segment also a directory sync, so its name
 * survives a crash. */
static int batch_write(wal_writer *w, const batch *b, uint64_t *sync_ns, uint32_t *syncs,
                       uint32_t *rotations)
{
    size_t off = 0;
    while (off < b->len) {
        uint64_t first = get64(b->data + off + 8);
        size_t run = wal_frame_size(get32(b->data + off));
        /* A segment that already has records rotates when the next frame
         * would overflow it; an empty one takes any frame, however large. */
        if (w->fd < 0 ||
            (w->seg_size > WAL_SEGMENT_HEADER && w->seg_size + run > w->cfg.segment_bytes)) {
            int rc = segment_start(w, first, rotations);
            if (rc == 0)
                rc = w->io->fsync_dir(w->io->ctx, w->dir);
            if (rc != 0)
                return rc;
        }
        while (off + run < b->len) {
            size_t frame = wal_frame_size(get32(b->data + off + run));
            if (w->seg_size + run + frame > w->cfg.segment_bytes)
                break;
            run += frame;
        }
        int rc = write_full(w, b->data + off, run, (off_t)w->seg_size);
        if (rc != 0)
            return rc;
        uint64_t t0 = uv_hrtime();
        rc = w->io->fdatasync(w->io->ctx, w->fd);
        *sync_ns += uv_hrtime() - t0;
        (*syncs)++;
        if (rc != 0)
            return rc;
        w->seg_size += run;
        off += run;
    }
    return 0;
}

/* Deletes segments whose records are all <= lsn, never the active one. */
static void segments_drop(wal_writer *w, uint64_t lsn)
{
    uint64_t *segs = NULL;
    size_t n = 0;
    char why[2 * SEG_PATH_MAX];
    if (segments_list(w->dir, &segs, &n, why, sizeof(why)) != 0)
        return; /* best effort: the next snapshot asks again */
    bool removed = false;
    for (size_t i = 0; i + 1 < n; i++) {
        /* Segment i holds [segs[i], segs[i+1] - 1]. */
        if (segs[i + 1] - 1 > lsn || segs[i] == w->seg_first)
            break;
        char path[SEG_PATH_MAX];
        segment_path(w->dir, segs[i], path, sizeof(path));
        if (w->io->unlink(w->io->ctx, path) == 0)
            removed = true;
    }
    if (removed)
        w->io->fsync_dir(w->io->ctx, w->dir);
    free(segs);
}

static void writer_thread(void *arg)
{
    wal_writer *w = arg;
    uv_mutex_lock(&w->mu);
    for (;;) {
        while (w->job < 0 && w->drop_lsn == 0 && !w->stop)
            uv_cond_wait(&w->cond, &w->mu);
        if (w->job < 0 && w->drop_lsn == 0 && w->stop)
            break;
        int job = w->job;
        uint64_t drop = w->drop_lsn < w->keep_lsn ? w->drop_lsn : w->keep_lsn;
        w->drop_lsn = 0;
        uv_mutex_unlock(&w->mu);

        int err = 0;
        uint64_t sync_ns = 0;
        uint32_t syncs = 0, rotations = 0;
        if (job >= 0)
            err = batch_write(w, &w->bufs[job], &sync_ns, &syncs, &rotations);
        if (drop > 0)
            segments_drop(w, drop);

        uv_mutex_lock(&w->mu);
        if (job >= 0) {
            w->job = -1;
            w->done = true;
            w->done_err = err;
            w->done_lsn = w->bufs[job].last_lsn;
            w->done_sync_ns = sync_ns;
            w->done_syncs = syncs;
            w->done_rotations = rotations;
            w->done_bytes = err == 0 ? w->bufs[job].len : 0;
            w->bytes_written += w->done_bytes;
            uv_async_send(&w->async);
        }
    }
    uv_mutex_unlock(&w->mu);
}

static void update_ref(wal_writer *w)
{
    if (w->finished)
        return;
    if (w->bufs[w->fill].len > 0 && w->error == 0)
        uv_ref((uv_handle_t *)&w->prepare);
    else
        uv_unref((uv_handle_t *)&w->prepare);
}

static void submit(wal_writer *w)
{
    batch *b = &w->bufs[w->fill];
    if (w->inflight || b->len == 0 || w->error != 0)
        return;
    uv_mutex_lock(&w->mu);
    WAL_ASSERT(w->job < 0);
    w->job = w->fill;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->mu);
    w->fill ^= 1;
    w->inflight = true;
    uv_ref((uv_handle_t *)&w->async);
    update_ref(w);
}

static void on_prepare(uv_prepare_t *h)
{
    submit(h->data);
}

static void maybe_finish_close(wal_writer *w);

static void on_async(uv_async_t *h)
{
    wal_writer *w = h->data;
    uv_mutex_lock(&w->mu);
    bool done = w->done;
    w->done = false;
    int err = w->done_err;
    uint64_t lsn = w->done_lsn, sync_ns = w->done_sync_ns, bytes = w->done_bytes;
    uint32_t syncs = w->done_syncs, rotations = w->done_rotations;
    uv_mutex_unlock(&w->mu);
    if (!done)
        return;

    batch *b = &w->bufs[w->fill ^ 1];
    w->inflight = false;
    uv_unref((uv_handle_t *)&w->async);
    if (err != 0) {
        /* Fail-stop: the batch and everything after it is never acknowledged. */
        w->error = err;
        b->len = 0;
        w->bufs[w->fill].len = 0;
        if (!w->failed_reported && w->cfg.failed_cb != NULL) {
            w->failed_reported = true;
            w->cfg.failed_cb(w, err, w->cfg.arg);
        }
        update_ref(w);
        maybe_finish_close(w);
        return;
    }
    WAL_ASSERT(lsn == b->last_lsn && b->first_lsn == w->durable_lsn + 1);
    w->durable_lsn = lsn;
    w->stats.batches++;
    w->stats.syncs += syncs;
    w->stats.rotations += rotations;
    w->stats.sync_ns_total += sync_ns;
    if (b->records > w->stats.max_batch_records)
        w->stats.max_batch_records = b->records;
    uint64_t us = sync_ns / 1000, bucket = 0;
    while (bucket < 23 && us >= ((uint64_t)1 << bucket))
        bucket++;
    w->stats.sync_ns_hist[bucket]++;
    w->stats.durable_bytes += bytes;
    b->len = 0;
    b->records = 0;
    w->cfg.durable_cb(w, lsn, w->cfg.arg);
    submit(w); /* what accumulated meanwhile goes now */
    maybe_finish_close(w);
}

int wal_writer_open(uv_loop_t *loop, const wal_writer_config *cfg, wal_writer **out)
{
    if (cfg->dir == NULL || cfg->durable_cb == NULL || cfg->next_lsn == 0 ||
        strlen(cfg->dir) >= WAL_PATH_MAX - 40)
        return -EINVAL;
    wal_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->loop = loop;
    w->cfg = *cfg;
    snprintf(w->dir, sizeof(w->dir), "%s", cfg->dir);
    w->cfg.dir = w->dir;
    if (w->cfg.segment_bytes == 0)
        w->cfg.segment_bytes = 64u << 20;
    if (w->cfg.batch_bytes_max == 0)
        w->cfg.batch_bytes_max = 16u << 20;
    w->io = cfg->io != NULL ? cfg->io : &posix_io;
    w->next_lsn = cfg->next_lsn;
    w->durable_lsn = cfg->next_lsn - 1;
    w->job = -1;
    w->keep_lsn = UINT64_MAX;
    w->fd = -1;

    if (mkdir(w->dir, 0755) < 0 && errno != EEXIST) {
        int rc = -errno;
        free(w);
        return rc;
    }
    /* Continue the last segment if there is one; the caller recovered and
     * repaired the log, so its end is the end of good data. */
    uint64_t *segs = NULL;
    size_t n = 0;
    char why[2 * SEG_PATH_MAX];
    int rc = segments_list(w->dir, &segs, &n, why, sizeof(why));
    if (rc != 0) {
        free(w);
        return rc;
    }
    if (n > 0) {
        uint64_t last = segs[n - 1];
        free(segs);
        if (last > cfg->next_lsn) {
            free(w);
            return WAL_EGAP;
        }
        /* The log must end exactly at next_lsn - 1, with no torn tail left. */
        wal_reader *rr = NULL;
        rc = wal_reader_open(w->dir, last, w->io, &rr);
        if (rc == 0) {
            wal_record rec;
            while ((rc = wal_reader_next(rr, &rec)) == 1)
                ;
            const wal_tail *t = wal_reader_tail(rr);
            if (rc == 0 && (t->last_lsn != cfg->next_lsn - 1 || t->torn_bytes != 0))
                rc = WAL_EGAP;
            wal_reader_close(rr);
        }
        if (rc != 0) {
            free(w);
            return rc;
        }
        char path[SEG_PATH_MAX];
        segment_path(w->dir, last, path, sizeof(path));
        struct stat st;
        if (stat(path, &st) < 0) {
            rc = -errno;
            free(w);
            return rc;
        }
        if ((uint64_t)st.st_size >= WAL_SEGMENT_HEADER) {
            int fd = w->io->open(w->io->ctx, path, O_WRONLY, 0);
            if (fd < 0) {
                free(w);
                return fd;
            }
            w->fd = fd;
            w->seg_first = last;
            w->seg_size = (uint64_t)st.st_size;
        }
    } else {
        free(segs);
    }

    uv_mutex_init(&w->mu);
    uv_cond_init(&w->cond);
    /* The thread only touches the async handle after a job, and no job can
     * exist before the handles below are initialized. */
    rc = uv_thread_create(&w->thread, writer_thread, w);
    if (rc != 0) {
        if (w->fd >= 0)
            w->io->close(w->io->ctx, w->fd);
        uv_mutex_destroy(&w->mu);
        uv_cond_destroy(&w->cond);
        free(w);
        return rc;
    }
    uv_prepare_init(loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_unref((uv_handle_t *)&w->prepare);
    uv_async_init(loop, &w->async, on_async);
    w->async.data = w;
    uv_unref((uv_handle_t *)&w->async);
    w->handles_open = 2;
    *out = w;
    return 0;
}

int64_t wal_writer_append(wal_writer *w, uint16_t type, int64_t time_ms, const void *payload,
                          uint32_t len)
{
    if (w->error != 0)
        return WAL_EFAILED;
    if (w->closing)
        return WAL_ECLOSED;
    if (len > WAL_PAYLOAD_MAX)
        return WAL_ETOOBIG;
    batch *b = &w->bufs[w->fill];
    size_t need = wal_frame_size(len);
    if (b->len + need > w->cfg.batch_bytes_max && b->len > 0)
        return WAL_EFULL;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + need)
            cap *= 2;
        uint8_t *data = realloc(b->data, cap);
        if (data == NULL)
            return -ENOMEM;
        b->data = data;
        b->cap = cap;
    }
    uint64_t lsn = w->next_lsn++;
    wal_frame_encode_flags(b->data + b->len, lsn, type, b->len == 0 ? WAL_FLAG_BATCH_START : 0,
                           time_ms, payload, len);
    if (b->len == 0)
        b->first_lsn = lsn;
    b->last_lsn = lsn;
    b->len += need;
    b->records++;
    update_ref(w);
    w->stats.records++;
    w->stats.bytes += need;
    return (int64_t)lsn;
}

void wal_writer_flush(wal_writer *w)
{
    submit(w);
}

uint64_t wal_writer_durable_lsn(const wal_writer *w)
{
    return w->durable_lsn;
}

uint64_t wal_writer_last_lsn(const wal_writer *w)
{
    return w->next_lsn - 1;
}

int wal_writer_error(const wal_writer *w)
{
    return w->error;
}

uint64_t wal_writer_bytes(const wal_writer *w)
{
    return w->stats.durable_bytes;
}

void wal_writer_stats(const wal_writer *w, wal_stats *out)
{
    *out = w->stats;
}

void wal_writer_keep_after(wal_writer *w, uint64_t lsn)
{
    uv_mutex_lock(&w->mu);
    w->keep_lsn = lsn;
    uv_mutex_unlock(&w->mu);
}

void wal_writer_drop_before(wal_writer *w, uint64_t lsn)
{
    uv_mutex_lock(&w->mu);
    if (lsn > w->drop_lsn)
        w->drop_lsn = lsn;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->mu);
}

static void on_handle_closed(uv_handle_t *h)
{
    wal_writer *w = h->data;
    if (--w->handles_open > 0)
        return;
    for (int i = 0; i < 2; i++)
        free(w->bufs[i].data);
    uv_mutex_destroy(&w->mu);
    uv_cond_destroy(&w->cond);
    if (w->close_cb != NULL)
        w->close_cb(w, w->close_arg);
    free(w);
}

static void maybe_finish_close(wal_writer *w)
{
    if (!w->closing || w->inflight)
        return;
    if (w->error == 0 && w->bufs[w->fill].len > 0) {
        submit(w);
        return;
    }
    if (w->finished)
        return;
    w->finished = true;
    uv_mutex_lock(&w->mu);
    w->stop = true;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->mu);
    uv_thread_join(&w->thread);
    if (w->fd >= 0) {
        w->io->close(w->io->ctx, w->fd);
        w->fd = -1;
    }
    uv_prepare_stop(&w->prepare);
    uv_close((uv_handle_t *)&w->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
}

int wal_writer_close(wal_writer *w, void (*close_cb)(wal_writer *w, void *arg), void *arg)
{
    if (w->closing)
        return WAL_ECLOSED;
    w->closing = true;
    w->close_cb = close_cb;
    w->close_arg = arg;
    maybe_finish_close(w);
    return 0;
}

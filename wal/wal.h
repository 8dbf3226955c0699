/*
 * wal.h - usher's write-ahead log: segment files, group commit, recovery.
 *
 * One WAL per shard, in its own directory, as a chain of segment files named
 * after the LSN of their first record ("0000000000000001.wal"). A record is
 * framed (little-endian):
 *
 *   u32 payload_len | u16 type | u16 flags | u64 lsn | i64 time_ms |
 *   payload[payload_len] | u64 XXH3-64 of everything before it
 *
 * flags: WAL_FLAG_BATCH_START on the first record of each group-commit batch;
 * no other bit is defined.
 *
 * and a segment starts with a 32-byte header:
 *
 *   "USHERWAL" | u32 version (1) | u32 shard | u64 first_lsn | u64 XXH3-64 of the 24 bytes before
 *
 * LSNs start at 1 and are contiguous per shard; records never span segments.
 *
 * Writing (wal_writer): the loop thread appends records into an in-memory
 * batch; once per loop turn (a uv_prepare handle) the batch is handed to the
 * WAL's own writer thread, which writes it with one pwrite and makes it
 * durable with one fdatasync, while the next batch fills (double buffering).
 * When the sync completes, the loop thread gets one callback with the new
 * durable LSN. A failed write or sync makes the writer fail-stop: nothing is
 * retried, nothing more is acknowledged, every later append fails.
 *
 * Reading (wal_reader): iterates a WAL directory from a given LSN, verifying
 * segment headers, checksums and LSN continuity. A torn or corrupt record at
 * the end of the last segment is the end of the log (crash while writing an
 * unacknowledged batch); anywhere else it is an error naming the file, the
 * offset and the LSN. "The end" is decided with the batch marks: the writer
 * starts a batch only after the previous one was synced, so a bad record
 * followed (anywhere later in the segment) by a valid record that starts a
 * later batch sat in synced data: that is corruption, never a torn tail.
 *
 * All file I/O goes through a wal_io table, so tests can inject failures.
 */
#ifndef USHER_WAL_H
#define USHER_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

enum {
    WAL_FLAG_BATCH_START = 1,          /* frame flag: first record of a batch */
    WAL_FRAME_HEADER = 24,             /* bytes before the payload */
    WAL_FRAME_TRAILER = 8,             /* the checksum */
    WAL_SEGMENT_HEADER = 32,           /* bytes at the start of a segment */
    WAL_PAYLOAD_MAX = 4 * 1024 * 1024, /* largest payload (a 100,000-seat layout fits) */
    WAL_PATH_MAX = 4096,
};

/* ---- Errors (negative; OS errors are -errno) -------------------------------- */
enum {
    WAL_EFAILED = -30001,   /* the writer failed earlier and is fail-stopped */
    WAL_ETOOBIG = -30002,   /* payload larger than WAL_PAYLOAD_MAX */
    WAL_EFULL = -30003,     /* the pending batch reached its byte bound: back off */
    WAL_ECORRUPT = -30004,  /* a record or segment header before the tail is bad */
    WAL_EGAP = -30005,      /* LSNs are not contiguous (missing or extra segment) */
    WAL_EBADSEG = -30006,   /* a file in the WAL directory is not a usher segment */
    WAL_ECLOSED = -30007,   /* the writer is closing */
    WAL_ENOTFOUND = -30008, /* the requested LSN is not in the log */
};

/** Describes a WAL error code (or -errno). Never NULL. */
const char *wal_strerror(int err);

/* ---- I/O operations ------------------------------------------------------------ */

/**
 * The file operations the WAL performs. Each returns >= 0 on success or
 * -errno. `wal_io_posix()` is the real thing; tests wrap it.
 */
typedef struct wal_io {
    int (*open)(void *ctx, const char *path, int flags, int mode);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t off);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync_dir)(void *ctx, const char *dir);
    int (*ftruncate)(void *ctx, int fd, off_t len);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*close)(void *ctx, int fd);
    void *ctx;
} wal_io;

/** The POSIX implementation (open(2), pwrite(2), fdatasync(2), ...). */
const wal_io *wal_io_posix(void);

/* ---- Framing ---------------------------------------------------------------------- */

/** A record as read back. `payload` borrows the reader's buffer until the next call. */
typedef struct wal_record {
    uint64_t lsn;
    int64_t time_ms;
    uint16_t type;
    uint16_t flags; /* WAL_FLAG_BATCH_START or 0 */
    uint32_t payload_len;
    const uint8_t *payload;
} wal_record;

/** Bytes one frame takes on disk. */
static inline size_t wal_frame_size(size_t payload_len)
{
    return WAL_FRAME_HEADER + payload_len + WAL_FRAME_TRAILER;
}

/**
 * Encodes one frame (flags 0) into `buf` (wal_frame_size(len) bytes). Exposed
 * for tests and tools; the writer uses it internally.
 */
void wal_frame_encode(uint8_t *buf, uint64_t lsn, uint16_t type, int64_t time_ms,
                      const void *payload, uint32_t len);

/** As wal_frame_encode, with flags (0 or WAL_FLAG_BATCH_START). */
void wal_frame_encode_flags(uint8_t *buf, uint64_t lsn, uint16_t type, uint16_t flags,
                            int64_t time_ms, const void *payload, uint32_t len);

/**
 * Decodes the frame at the start of `buf` (`avail` bytes). Returns the frame
 * size, 0 if `avail` is too short for the frame its header announces, or
 * WAL_ECORRUPT (undefined flag bits, oversized length, checksum mismatch). `rec`
 * borrows `buf`.
 */
ssize_t wal_frame_decode(const uint8_t *buf, size_t avail, wal_record *rec);

/** Segment file name for a first LSN: "%016" PRIx64 ".wal" (20 characters + NUL). */
void wal_segment_name(uint64_t first_lsn, char out[32]);

/**
 * First LSN of the oldest segment in `dir` (*lsn = 0 when there is none).
 * Returns 0, WAL_EBADSEG, or -errno.
 */
int wal_oldest_lsn(const char *dir, uint64_t *lsn);

/* ---- Reader ------------------------------------------------------------------------ */

typedef struct wal_reader wal_reader;

/** What a full scan found; filled by wal_reader_next() returning 0 (end). */
typedef struct wal_tail {
    uint64_t last_lsn;                    /* last good record, or from_lsn - 1 if none */
    char last_segment[WAL_PATH_MAX + 32]; /* path of the last segment ("" if none) */
    uint64_t good_bytes;     /* length of the last segment up to the last good record */
    uint64_t torn_bytes;     /* bytes after it that are not a good record */
    const char *torn_reason; /* why the scan stopped there (NULL if torn_bytes == 0) */
} wal_tail;

/**
 * Opens the WAL in `dir` for reading records with LSN >= from_lsn (1 = all).
 * Fails with WAL_ENOTFOUND if the log's oldest segment starts after from_lsn
 * (the records were deleted after a snapshot), WAL_EBADSEG for a stray file,
 * or -errno. An empty or missing directory is an empty log. Reads always use
 * POSIX calls (nothing to inject there); `io` may be NULL and is kept for
 * symmetry with the writer.
 */
int wal_reader_open(const char *dir, uint64_t from_lsn, const wal_io *io, wal_reader **out);

/**
 * Reads the next record into `rec`. Returns 1 with a record, 0 at the end of
 * the log (then wal_reader_tail() tells where and why it ended), or a
 * negative error: WAL_ECORRUPT or WAL_EGAP with wal_reader_error() saying
 * file, offset and LSN, or -errno.
 */
int wal_reader_next(wal_reader *r, wal_record *rec);

/** After the end: where the log ended and what followed. */
const wal_tail *wal_reader_tail(const wal_reader *r);

/** After an error: a sentence naming the file, the offset and the LSN. */
const char *wal_reader_error(const wal_reader *r);

void wal_reader_close(wal_reader *r);

/**
 * Cuts a torn tail found by a reader: truncates the last segment to its good
 * length, or deletes it if not even its header is good (including an empty
 * file left by a crash right after a rotation), and syncs. A no-op when the
 * tail is clean. Returns 0 or -errno.
 */
int wal_tail_repair(const char *dir, const wal_tail *tail, const wal_io *io);

/* ---- Follower ---------------------------------------------------------------------- */

typedef struct wal_follower wal_follower;

/**
 * Reads a live WAL incrementally, for replication: records from `from_lsn`
 * on, up to a bound the caller knows to be durable (records past it may be
 * half written). Unlike wal_reader it never loads a whole segment: it keeps
 * one file open and reads frame by frame with pread, so it costs one record's
 * buffer and can be called again as the log grows, moving to the next
 * segment when the log rotates. Safe on any thread (it only reads files);
 * one follower per thread at a time.
 *
 * wal_follower_open() fails with WAL_ENOTFOUND when `from_lsn` is older than
 * the oldest retained segment (deleted after a snapshot), or when the log
 * does not reach `from_lsn - 1` yet is not empty.
 */
int wal_follower_open(const char *dir, uint64_t from_lsn, wal_follower **out);

/**
 * The next record if its LSN is <= `durable_lsn`: returns 1 with `rec`
 * (borrowing the follower's buffer until the next call), 0 when the next
 * LSN is past `durable_lsn` (call again once more is durable), or an error:
 * WAL_ECORRUPT, or WAL_EGAP when a record up to `durable_lsn` is in neither
 * the current segment nor a next one (wal_follower_error() says where), or
 * WAL_ENOTFOUND when the follower had not started a segment yet and the
 * first is gone; -errno.
 */
int wal_follower_next(wal_follower *f, uint64_t durable_lsn, wal_record *rec);

/** The LSN the next record will have. */
uint64_t wal_follower_next_lsn(const wal_follower *f);

/** After an error: a sentence naming the file, the offset and the LSN. */
const char *wal_follower_error(const wal_follower *f);

void wal_follower_close(wal_follower *f);

/* ---- Writer ---------------------------------------------------------------------------- */

typedef struct wal_writer wal_writer;

/** Called on the loop thread when records up to `durable_lsn` are on disk. */
typedef void (*wal_durable_cb)(wal_writer *w, uint64_t durable_lsn, void *arg);
/** Called once on the loop thread when the writer fail-stops. */
typedef void (*wal_failed_cb)(wal_writer *w, int err, void *arg);

typedef struct wal_writer_config {
    const char *dir;           /* the shard's WAL directory (created if missing) */
    uint32_t shard;            /* stored in segment headers */
    uint64_t next_lsn;         /* LSN of the next record: last recovered + 1 */
    uint64_t segment_bytes;    /* rotate when a segment would exceed this (default 64 MiB) */
    uint64_t batch_bytes_max;  /* bound on one pending batch (default 16 MiB): WAL_EFULL past it */
    const wal_io *io;          /* NULL = POSIX */
    wal_durable_cb durable_cb; /* required */
    wal_failed_cb failed_cb;   /* optional */
    void *arg;
} wal_writer_config;

/** Counters for /metrics and tests; read on the loop thread. */
typedef struct wal_stats {
    uint64_t records, bytes; /* appended */
    uint64_t durable_bytes;  /* written and synced */
    uint64_t batches, syncs;
    uint64_t rotations; /* segments this writer started (its first one included) */
    uint64_t max_batch_records;
    uint64_t sync_ns_total;
    uint64_t sync_ns_hist[24]; /* per batch: its syncs took < 2^i microseconds (last: the rest) */
} wal_stats;

/**
 * Opens a writer on `loop` appending after `cfg->next_lsn - 1`, which must be
 * where the log ends (recover and repair first): the last segment is read to
 * check that it ends exactly there, with no torn tail. Starts the writer
 * thread. While records are pending or being synced the writer keeps the
 * loop alive; otherwise it does not. Returns 0, -errno, WAL_EGAP if the log
 * ends elsewhere, or a reader error.
 */
int wal_writer_open(uv_loop_t *loop, const wal_writer_config *cfg, wal_writer **out);

/**
 * Appends a record to the pending batch (loop thread only). Returns the LSN
 * (> 0) or WAL_EFAILED, WAL_ETOOBIG, WAL_EFULL, WAL_ECLOSED. The record is
 * durable when the durable callback reports an LSN >= the returned one.
 */
int64_t wal_writer_append(wal_writer *w, uint16_t type, int64_t time_ms, const void *payload,
                          uint32_t len);

/** Hands the pending batch to the writer thread now if it is idle (also done each loop turn). */
void wal_writer_flush(wal_writer *w);

/** Highest durable LSN; the LSN the next append will get minus one = wal_writer_last_lsn. */
uint64_t wal_writer_durable_lsn(const wal_writer *w);
uint64_t wal_writer_last_lsn(const wal_writer *w);

/** 0 while healthy, else the error that fail-stopped the writer. */
int wal_writer_error(const wal_writer *w);

/** Bytes written and synced since the writer opened (for snapshot triggers). */
uint64_t wal_writer_bytes(const wal_writer *w);

void wal_writer_stats(const wal_writer *w, wal_stats *out);

/**
 * Asks the writer thread to delete segments whose records all have LSN <=
 * `lsn` (never the active segment). Deletion happens off the loop thread.
 */
void wal_writer_drop_before(wal_writer *w, uint64_t lsn);

/**
 * Sets a floor for wal_writer_drop_before(): segments holding any record
 * with LSN > `lsn` are kept whatever is asked later, because another
 * consumer (the catalog applier) has not read past `lsn` yet. Starts at
 * UINT64_MAX (no floor); may move either way. Any thread.
 */
void wal_writer_keep_after(wal_writer *w, uint64_t lsn);

/**
 * Closes the writer: syncs what is pending (the durable callback runs for
 * it unless the writer has failed), stops the thread, closes handles, then
 * calls `close_cb` on the loop thread. Returns 0 or WAL_ECLOSED if already
 * closing.
 */
int wal_writer_close(wal_writer *w, void (*close_cb)(wal_writer *w, void *arg), void *arg);

#endif /* USHER_WAL_H */

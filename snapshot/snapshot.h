/*
 * snapshot.h - LMDB snapshots of a shard's engine, and recovery.
 *
 * Each shard keeps one LMDB environment in DATA_DIR/shard-N/snapshot/ that
 * holds its newest snapshot: the engine state as of one LSN. A snapshot is
 * written in one LMDB write transaction (atomic and synced on commit), full
 * or incremental (only what changed since the previous one). Recovery is the
 * snapshot plus the WAL records after its LSN. docs/storage.md documents the
 * databases and encodings; `mdb_dump -a DATA_DIR/shard-N/snapshot` reads it.
 *
 * Databases: "meta" (string keys: format, shard, lsn, engine, written_at_ms),
 * "layouts", "showtimes", "holds", "bookings" (8-byte big-endian id keys,
 * values are engine item encodings).
 */
#ifndef USHER_SNAPSHOT_H
#define USHER_SNAPSHOT_H

#include "engine.h"
#include "wal.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* ---- Errors: negative. LMDB's own codes (-30799..-30780) and -errno pass through. */
enum {
    SNAPSHOT_EFORMAT = -31001,  /* the environment is not a usher snapshot, or another format */
    SNAPSHOT_ESHARD = -31002,   /* the snapshot belongs to another shard */
    SNAPSHOT_ECORRUPT = -31003, /* an item does not decode or does not fit */
    SNAPSHOT_EREPLAY = -31004,  /* a WAL record does not apply (see the error text) */
    SNAPSHOT_EWAL = -31005,     /* the WAL is corrupt or has a gap (see the error text) */
    SNAPSHOT_ETOOOLD = -31006,  /* asked for a point in time the kept WAL no longer covers */
    SNAPSHOT_EBUSY = -31007,    /* a snapshot is already being written */
};

/** Describes a snapshot, LMDB, or -errno error. Never NULL. */
const char *snapshot_strerror(int err);

/* ---- The store ----------------------------------------------------------------- */

typedef struct snapshot_store snapshot_store;

/**
 * Opens (creating if needed) the snapshot environment in `dir` for `shard`.
 * `map_bytes` 0 = 16 GiB (a sparse reservation; it grows when full).
 * Returns 0, SNAPSHOT_EFORMAT (another format version, or an environment
 * with data but no usher stamp), SNAPSHOT_ESHARD, an LMDB code or -errno.
 */
int snapshot_store_open(const char *dir, uint32_t shard, uint64_t map_bytes, snapshot_store **out);
void snapshot_store_close(snapshot_store *s);

/** LSN of the stored snapshot in *lsn (0 when there is none). */
int snapshot_store_lsn(snapshot_store *s, uint64_t *lsn);

/**
 * Writes `snap`, taken when the engine had applied every record up to
 * `lsn`, in one transaction. The caller must make sure records up to `lsn`
 * are durable in the WAL first. Blocking: call from a helper thread (or at
 * startup/shutdown). Returns 0 or an error; on error the stored snapshot is
 * the previous one, and the next snapshot must be full.
 */
int snapshot_store_write(snapshot_store *s, const engine_snapshot *snap, uint64_t lsn);

/**
 * Restores the stored snapshot into `e`, a fresh engine. Sets *lsn (0 and
 * nothing restored if there is no snapshot) and *clock_ms (the engine clock
 * at the snapshot). Returns 0, SNAPSHOT_ECORRUPT (an item that does not
 * decode or fit, or an LSN without engine state), SNAPSHOT_EFORMAT (a meta
 * value of the wrong width), an LMDB code or -errno.
 */
int snapshot_store_load(snapshot_store *s, engine *e, uint64_t *lsn, int64_t *clock_ms);

/** One stored item (snapshot_store_each); a non-zero return stops the walk. */
typedef int (*snapshot_item_cb)(void *arg, engine_item_kind kind, uint64_t key,
                                const uint8_t *value, uint32_t len);

/**
 * Reads the stored snapshot in one LMDB read transaction, from any thread
 * (while snapshots are being written): sets *lsn (0 when there is none: then
 * no callback) and *written_ms (wall clock of the write) before the first
 * call, then calls `cb` for every layout, showtime, live hold and booking, in
 * that order and by ascending id. Returns 0, the callback's non-zero value,
 * an LMDB code or -errno.
 */
int snapshot_store_each(snapshot_store *s, uint64_t *lsn, int64_t *written_ms, snapshot_item_cb cb,
                        void *arg);

/* ---- Journaling -------------------------------------------------------------------- */

/**
 * Encodes an engine record and appends it to the WAL with its type and time:
 * the one way engine changes enter a WAL, so that recovery can read them
 * back. Returns the LSN (> 0), a WAL error (wal_writer_append), an engine
 * encode error, or -ENOMEM (a layout record needs a buffer of its size).
 */
int64_t snapshot_record_append(wal_writer *w, const engine_record *rec);

/* ---- Recovery -------------------------------------------------------------------- */

/** Called for WAL records that are not engine records (types >= 100). */
typedef int (*snapshot_record_cb)(void *arg, const wal_record *rec);

typedef struct snapshot_recover_opts {
    const char *shard_dir; /* DATA_DIR/shard-N: holds wal/ and snapshot/ */
    uint32_t shard;
    engine_config cfg;           /* the engine's configuration */
    uint64_t stop_lsn;           /* apply records up to this LSN (0 = all) */
    int64_t stop_time_ms;        /* ... and with time_ms <= this (0 = no limit) */
    bool use_snapshot;           /* start from the stored snapshot when it is not too new */
    bool repair;                 /* cut a torn WAL tail (only when reading to the end) */
    snapshot_record_cb other_cb; /* NULL: other record types are an error */
    void *arg;
} snapshot_recover_opts;

typedef struct snapshot_recovery {
    bool had_snapshot;
    uint64_t snapshot_lsn;        /* 0 when recovery started from an empty engine */
    uint64_t stored_snapshot_lsn; /* LSN of the stored snapshot, used or not (0: none) */
    uint64_t replayed;            /* WAL records applied after the snapshot */
    uint64_t last_lsn;            /* LSN the engine state now reflects */
    uint64_t torn_bytes; /* bytes cut (or, without repair, found) after the last good record */
    char torn_segment[WAL_PATH_MAX + 32];
    const char *torn_reason;
    double seconds;
    char error[2 * WAL_PATH_MAX + 512]; /* on failure: what, where (file, offset, LSN) */
} snapshot_recovery;

/**
 * Rebuilds a shard's engine: the stored snapshot (if allowed and not past
 * the stop point), then the WAL records after it. A torn tail ends the log
 * and is reported (and cut when `repair`); corruption or a gap anywhere else
 * is an error with its location in rep->error. On success *out is the
 * engine (caller destroys it). Returns 0, SNAPSHOT_EWAL, SNAPSHOT_EREPLAY,
 * SNAPSHOT_ETOOOLD, SNAPSHOT_ECORRUPT, or another error.
 */
int snapshot_recover(const snapshot_recover_opts *o, engine **out, snapshot_recovery *rep);

/* ---- Scheduler ---------------------------------------------------------------------
 * Decides when to snapshot and does the work off the loop: on the loop
 * thread it copies the engine state (engine_snapshot_take) at the WAL's last
 * LSN; once the WAL reports that LSN durable, a libuv threadpool job writes
 * it to LMDB; when that commits, WAL segments wholly at or below the LSN are
 * dropped. */

typedef struct snapshot_policy {
    uint64_t wal_bytes;   /* snapshot after this many WAL bytes (0 = 64 MiB) */
    uint64_t interval_ms; /* ... or this long since the last one (0 = 60 s) */
} snapshot_policy;

typedef struct snapshot_scheduler snapshot_scheduler;

typedef struct snapshot_sched_stats {
    uint64_t taken, written, failed, last_lsn, last_items;
    uint64_t last_copy_ns, last_write_ns;
} snapshot_sched_stats;

int snapshot_scheduler_open(uv_loop_t *loop, engine *e, wal_writer *w, snapshot_store *s,
                            const snapshot_policy *p, snapshot_scheduler **out);

/** Call from the WAL durable callback: starts a write waiting for `durable_lsn`. */
void snapshot_scheduler_durable(snapshot_scheduler *sc, uint64_t durable_lsn);

/**
 * Call periodically (e.g. from a 1 s timer) with a monotonic clock: takes a
 * snapshot when the policy says so and none is in progress. Returns 1 if it
 * took one, 0 if not, or an error.
 */
int snapshot_scheduler_tick(snapshot_scheduler *sc, uint64_t mono_ms);

/** Takes a snapshot now (unless one is in progress: SNAPSHOT_EBUSY). */
int snapshot_scheduler_take(snapshot_scheduler *sc);

/** True while a snapshot is copied but not yet written. */
bool snapshot_scheduler_busy(const snapshot_scheduler *sc);

void snapshot_scheduler_stats(const snapshot_scheduler *sc, snapshot_sched_stats *out);

/**
 * Frees the scheduler. It must not be writing (the write's completion uses
 * the scheduler and the WAL writer); a snapshot still waiting for its LSN to
 * become durable (e.g. after the WAL failed) is simply discarded. Clean
 * shutdown order:
 *   1. snapshot_scheduler_take(sc)            (the final snapshot)
 *   2. run the loop until !snapshot_scheduler_busy(sc)
 *      (the still-open WAL makes the LSN durable, the write commits)
 *   3. snapshot_scheduler_close(sc)
 *   4. wal_writer_close(w, ...) and run the loop until it has closed.
 * Closing while a write is in progress aborts.
 */
void snapshot_scheduler_close(snapshot_scheduler *sc);

#endif /* USHER_SNAPSHOT_H */

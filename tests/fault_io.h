/*
 * fault_io.h - a fault-injecting wal_io for the WAL tests.
 *
 * Wraps wal_io_posix() and adds, per operation, a call counter and knobs:
 *
 *  - fail the Nth call of an operation (or the Nth and every later one) with
 *    a chosen -errno, without performing it;
 *  - make the Nth pwrite short (write only a prefix of the buffer and return
 *    the short count), or make every pwrite short;
 *  - block the Nth call of an operation until released, so a test can look
 *    at (or crash) the files while the WAL's writer thread is inside it;
 *  - a crash model, like SQLite's crash VFS: per file (by path) it tracks the
 *    length that was durable at the last successful fdatasync, and whether
 *    the file's creation was made durable by an fsync of its directory.
 *    fault_io_crash() truncates every tracked file back to its durable
 *    length; fault_io_crash_ex() can keep a prefix of the unsynced bytes,
 *    garbage-fill them, and make files whose creation was never synced
 *    vanish. After a crash every operation but close fails with -EIO (the
 *    process is considered dead), which also ends a blocked call.
 *
 * Call numbers are 1-based and count every call since fault_io_new(),
 * including failed ones. All functions are thread-safe: the WAL calls the
 * table from its writer thread while the test thread reads the counters.
 */
#ifndef USHER_TESTS_FAULT_IO_H
#define USHER_TESTS_FAULT_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wal.h"

typedef enum fault_op {
    FAULT_OPEN,
    FAULT_PWRITE,
    FAULT_FDATASYNC,
    FAULT_FSYNC_DIR,
    FAULT_FTRUNCATE,
    FAULT_RENAME,
    FAULT_UNLINK,
    FAULT_CLOSE,
    FAULT_OP_COUNT,
} fault_op;

typedef struct fault_io fault_io;

/** A new injector with no faults armed. Never NULL (aborts on OOM). */
fault_io *fault_io_new(void);
/** Frees the injector; closes nothing (the WAL owns its descriptors). */
void fault_io_free(fault_io *f);

/** The table to hand to the WAL; valid until fault_io_free(). */
const wal_io *fault_io_table(fault_io *f);

/** Calls of `op` so far (including failed and blocked ones). */
uint64_t fault_io_calls(fault_io *f, fault_op op);
/** Calls of `op` that were failed on purpose. */
uint64_t fault_io_injected(fault_io *f, fault_op op);
/** Bytes that pwrite calls reported written. */
uint64_t fault_io_bytes_written(fault_io *f);

/** The `nth` call of `op` fails with `err` (< 0) instead of running. 0 disarms. */
void fault_io_fail_nth(fault_io *f, fault_op op, uint64_t nth, int err);
/** The `nth` call of `op` and every later one fail with `err`. 0 disarms. */
void fault_io_fail_from(fault_io *f, fault_op op, uint64_t nth, int err);

/** The `nth` pwrite writes at most `max_bytes` bytes (0 makes it return 0). */
void fault_io_short_nth(fault_io *f, uint64_t nth, size_t max_bytes);
/** Every pwrite writes at most `max_bytes` (> 0) bytes; 0 turns this off. */
void fault_io_short_all(fault_io *f, size_t max_bytes);

/** The `nth` call of `op` blocks (before doing anything) until fault_io_release(). */
void fault_io_block_nth(fault_io *f, fault_op op, uint64_t nth);
/** Waits up to `timeout_ms` for a call to be blocked; true if one is. */
bool fault_io_wait_blocked(fault_io *f, uint64_t timeout_ms);
/** Lets a blocked call go on (fault_io_crash() does too; the call then fails with -EIO). */
void fault_io_release(fault_io *f);

/** Durable length the model holds for `path`, or -1 if the file is not tracked. */
int64_t fault_io_durable_len(fault_io *f, const char *path);

typedef struct fault_crash {
    /* Of each file's unsynced tail, this many bytes survive as written
     * (SIZE_MAX: all of them). */
    size_t keep_unsynced;
    /* The rest of the unsynced tail is overwritten with garbage instead of
     * being cut off. */
    bool garbage;
    /* Then the first this-many bytes of the unsynced tail read back as zeros
     * (pages that never reached the disk while later ones did). */
    size_t zero_unsynced_head;
    /* Files created since the last successful fsync_dir of their directory
     * disappear (otherwise they survive with their durable length). */
    bool drop_unsynced_creates;
    uint64_t seed; /* for the garbage */
} fault_crash;

/**
 * Simulates a power failure now: applies `how` to every tracked file (NULL:
 * drop every unsynced byte, keep every file). Returns the number of files it
 * changed, or -errno. Afterwards every operation except close fails with -EIO,
 * and a blocked call is released (and fails).
 */
int fault_io_crash_ex(fault_io *f, const fault_crash *how);
int fault_io_crash(fault_io *f);

#endif /* USHER_TESTS_FAULT_IO_H */

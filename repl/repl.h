/*
 * repl.h - the replication event format: WAL records and snapshot items as
 * NDJSON lines (docs/replication.md, format version 1).
 *
 * Pure functions over bytes: no I/O, no clock, no engine. The server's
 * replication stream (net/repl.c) runs them on libuv's threadpool; tools
 * may run them on a data directory. Every encoder appends one complete line
 * (ending in '\n') to a growable buffer, or nothing at all.
 */
#ifndef USHER_REPL_H
#define USHER_REPL_H

#include "catalog.h"
#include "engine.h"
#include "wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    REPL_FORMAT_VERSION = 1,
    REPL_EDECODE = -33001, /* a record or item does not decode */
    REPL_ETYPE = -33002,   /* a WAL record type the format does not know */
};

/** Describes a repl error (or -errno). Never NULL. */
const char *repl_strerror(int err);

/** A growable text buffer. Zero-initialise; free with repl_buf_free. */
typedef struct repl_buf {
    char *p;
    size_t len, cap;
} repl_buf;

void repl_buf_free(repl_buf *b);
/** Forgets the contents, keeps the memory. */
void repl_buf_clear(repl_buf *b);

/**
 * Formats `ms` (since the Unix epoch, UTC) as RFC 3339: "2026-11-21T09:30:00Z",
 * or with `millis` "2026-11-21T09:30:00.250Z". `out` gets at most 31 bytes.
 */
void repl_time_format(int64_t ms, bool millis, char out[32]);

/**
 * Appends the event line of one WAL record of shard `shard`: an engine record
 * (types 1..99) or a catalog change (CATALOG_REC_PUT / _DELETE). Returns 0,
 * REPL_EDECODE, REPL_ETYPE or -ENOMEM; on error the buffer is unchanged.
 */
int repl_event_encode(repl_buf *b, uint32_t shard, const wal_record *rec);

/** The line sent on an idle stream (not an event: no LSN). Returns 0 or -ENOMEM. */
int repl_heartbeat_encode(repl_buf *b, uint32_t shard, int64_t now_ms, uint64_t durable_lsn,
                          uint64_t next_lsn);

/** The last line of a stream that cannot go on. Returns 0 or -ENOMEM. */
int repl_error_encode(repl_buf *b, uint32_t shard, int64_t now_ms, const char *title,
                      const char *detail, uint64_t next_lsn);

/* ---- Snapshot lines (GET /api/replication/snapshot) --------------------------------- */

int repl_snapshot_begin_encode(repl_buf *b, uint32_t shard, uint64_t lsn, int64_t written_ms);
/** A catalog entity (its canonical JSON, `len` bytes); users lose their password hash. */
int repl_snapshot_catalog_encode(repl_buf *b, uint32_t shard, catalog_kind kind, uint64_t id,
                                 const char *json, size_t len);
/** A stored engine item (layout, showtime, hold or booking; META is refused). */
int repl_snapshot_item_encode(repl_buf *b, uint32_t shard, engine_item_kind kind, uint64_t key,
                              const uint8_t *value, uint32_t len);
int repl_snapshot_end_encode(repl_buf *b, uint32_t shard, uint64_t lsn, uint64_t rows);

/** "upi", "card", "wallet"; NULL for another value. */
const char *repl_payment_name(engine_payment p);

#endif /* USHER_REPL_H */

/*
 * batch.h - many independent HTTP requests over a client pool (client.h), with
 * retries: what a load tool needs for setup and read-back (create N showtimes,
 * register N users, read every user's bookings page by page).
 *
 * Job i (0 <= i < n) is turned into a request by build(); its answer (or the
 * transport failure) is judged by handle(), which says:
 *   HB_DONE   the job is finished;
 *   HB_NEXT   send another request for the same job at once (e.g. the next page;
 *             handle() may change *step, which build() sees);
 *   HB_RETRY  send the same step again after a pause: Retry-After when the answer
 *             has one (503), else 100 ms times the attempt number; after
 *             `max_attempts` the job fails;
 *   HB_FAIL   the job failed (the first failure is described in `error`).
 * Each connection of the pool carries one job at a time, so the pool's size is
 * the concurrency. hb_run() runs the pool's loop until every job is finished.
 *
 *   static void build(hb_batch *b, size_t i, uint32_t step, hb_request *rq) {
 *       snprintf(rq->path, sizeof(rq->path), "/api/seats/%zu", ids[i]);
 *   }
 *   static hb_step handle(hb_batch *b, size_t i, uint32_t *step, int err,
 *                         const hc_response *r) {
 *       if (err != 0 || r->status == 503) return HB_RETRY;
 *       return r->status == 200 ? HB_DONE : HB_FAIL;
 *   }
 *   hb_batch b = {.what = "seat maps", .n = count, .build = build, .handle = handle};
 *   if (hb_run(pool, &b) != 0) fprintf(stderr, "%s\n", b.error);
 */
#ifndef USHER_BENCH_BATCH_H
#define USHER_BENCH_BATCH_H

#include "client.h"

#include <stddef.h>
#include <stdint.h>

typedef enum hb_step { HB_DONE, HB_NEXT, HB_RETRY, HB_FAIL } hb_step;

/** A request for build() to fill; all fields start empty (method GET). */
typedef struct hb_request {
    const char *method;   /* "GET" unless set */
    char path[512];       /* required */
    const char *headers;  /* extra header lines ("Name: value\r\n"...) or NULL */
    char body[2048];      /* JSON body, "" for none */
    const char *big_body; /* a body too large for `body` (must outlive the call), or NULL */
} hb_request;

typedef struct hb_batch hb_batch;
struct hb_batch {
    const char *what; /* names the batch in messages */
    size_t n;         /* jobs */
    void *ctx;        /* for the callbacks */
    void (*build)(hb_batch *b, size_t job, uint32_t step, hb_request *rq);
    hb_step (*handle)(hb_batch *b, size_t job, uint32_t *step, int err, const hc_response *r);
    uint32_t max_attempts; /* per request, the first included (0 = 20) */
    /* Called about every 2 s while a batch of 1,000 jobs or more runs (may be NULL). */
    void (*progress)(hb_batch *b);
    /* results */
    size_t finished; /* jobs done or failed */
    size_t failed;
    char error[768]; /* the first failure */
    /* private */
    size_t next;
    uint64_t last_progress;
};

/**
 * Runs every job over the connections of `pool` (started if it was not), on the pool's
 * loop, which must not be running. Returns the number of failed jobs.
 */
size_t hb_run(hc_pool *pool, hb_batch *b);

#endif /* USHER_BENCH_BATCH_H */

/*
 * batch.c - independent requests over a client pool, with retries (see batch.h).
 */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    hb_batch *b;
    hc_conn *conn;
    size_t job;
    uint32_t step, attempts;
    uv_timer_t timer;
    uint32_t *open_timers;
} slot;

static void slot_issue(slot *s);

static void slot_start_next(slot *s)
{
    hb_batch *b = s->b;
    if (b->next >= b->n) {
        s->job = SIZE_MAX;
        return;
    }
    s->job = b->next++;
    s->step = 0;
    s->attempts = 0;
    slot_issue(s);
}

static void slot_fail(slot *s, const char *why)
{
    hb_batch *b = s->b;
    if (b->failed++ == 0) {
        int n = snprintf(b->error, sizeof(b->error), "%s (job %zu): %s", b->what, s->job, why);
        if (n < 0 || (size_t)n >= sizeof(b->error))
            b->error[sizeof(b->error) - 1] = '\0'; /* truncated: still a message */
    }
    b->finished++;
    slot_start_next(s);
}

/* "HTTP 409: {...}" or "no answer (timeout)", for messages. */
static void describe(char *buf, size_t len, int err, const hc_response *r, uint32_t attempts)
{
    int n;
    if (err != 0)
        n = snprintf(buf, len, "no answer (%s) after %u attempt%s", hc_strerror(err), attempts,
                     attempts == 1 ? "" : "s");
    else
        n = snprintf(buf, len, "HTTP %d after %u attempt%s: %.400s", r->status, attempts,
                     attempts == 1 ? "" : "s", r->body);
    if (n < 0 || (size_t)n >= len)
        buf[len - 1] = '\0';
}

static void slot_timer(uv_timer_t *t)
{
    slot_issue(t->data);
}

static void slot_answer(hc_conn *c, void *arg, int err, const hc_response *r)
{
    (void)c;
    slot *s = arg;
    hb_batch *b = s->b;
    hb_step st = b->handle(b, s->job, &s->step, err, r);
    s->attempts++;
    char why[600];
    switch (st) {
    case HB_DONE:
        b->finished++;
        slot_start_next(s);
        break;
    case HB_NEXT:
        s->attempts = 0;
        slot_issue(s);
        break;
    case HB_RETRY:
        if (s->attempts >= b->max_attempts) {
            describe(why, sizeof(why), err, r, s->attempts);
            slot_fail(s, why);
        } else {
            uint64_t ms = r != NULL && r->retry_after_s >= 0 ? (uint64_t)r->retry_after_s * 1000
                                                             : 100u * s->attempts;
            uv_timer_start(&s->timer, slot_timer, ms ? ms : 50, 0);
        }
        break;
    case HB_FAIL:
        describe(why, sizeof(why), err, r, s->attempts);
        slot_fail(s, why);
        break;
    }
}

static void slot_issue(slot *s)
{
    hb_batch *b = s->b;
    hb_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    b->build(b, s->job, s->step, &rq);
    hc_request h = {.method = rq.method, .path = rq.path, .headers = rq.headers};
    if (rq.big_body != NULL) {
        h.body = rq.big_body;
        h.body_len = strlen(rq.big_body);
    } else if (rq.body[0] != '\0') {
        h.body = rq.body;
        h.body_len = strlen(rq.body);
    }
    if (hc_send(s->conn, &h, slot_answer, s) != 0)
        slot_fail(s, "the request could not be sent (pool stopped or out of memory)");
}

static void slot_closed(uv_handle_t *h)
{
    slot *s = h->data;
    (*s->open_timers)--;
}

size_t hb_run(hc_pool *pool, hb_batch *b)
{
    uv_loop_t *loop = hc_pool_loop(pool);
    if (b->max_attempts == 0)
        b->max_attempts = 20;
    b->finished = b->failed = b->next = 0;
    b->error[0] = '\0';
    b->last_progress = uv_hrtime();
    uint32_t nslots = hc_pool_size(pool) < b->n ? hc_pool_size(pool) : (uint32_t)b->n;
    slot *slots = calloc(nslots ? nslots : 1, sizeof(*slots));
    if (slots == NULL) {
        snprintf(b->error, sizeof(b->error), "%s: out of memory", b->what);
        b->failed = b->finished = b->n;
        return b->n;
    }
    uint32_t open_timers = nslots;
    hc_pool_start(pool);
    for (uint32_t i = 0; i < nslots; i++) {
        slots[i].b = b;
        slots[i].conn = hc_pool_conn(pool, i);
        slots[i].open_timers = &open_timers;
        uv_timer_init(loop, &slots[i].timer);
        slots[i].timer.data = &slots[i];
    }
    for (uint32_t i = 0; i < nslots; i++)
        slot_start_next(&slots[i]);
    while (b->finished < b->n) {
        uv_run(loop, UV_RUN_ONCE);
        uint64_t now = uv_hrtime();
        if (b->progress != NULL && b->n >= 1000 && now - b->last_progress > UINT64_C(2000000000)) {
            b->last_progress = now;
            b->progress(b);
        }
    }
    for (uint32_t i = 0; i < nslots; i++)
        uv_close((uv_handle_t *)&slots[i].timer, slot_closed);
    while (open_timers > 0)
        uv_run(loop, UV_RUN_ONCE);
    free(slots);
    return b->failed;
}

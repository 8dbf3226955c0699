/*
 * mail.c - jobs between shards: the SPSC rings, durability waits, and the
 * catalog applier.
 *
 * Bounds. A shard keeps at most `outstanding_max` jobs away at any other
 * shard; past that net__job_send() refuses and the caller answers 503 with
 * Retry-After. Every job away comes back exactly once over the reverse ring,
 * so the reverse ring never holds more than `outstanding_max` replies and a
 * reply push cannot fail (asserted). Each ring has room for both directions'
 * worth (requests from A and A's replies to B's requests share the ring
 * A -> B), hence rings of 2 * outstanding_max slots.
 *
 * The bound follows the connection limit: every connection has at most
 * --pipeline requests in the server, and requests spread evenly over the
 * shards, so a shard may have its share of connections' requests away at
 * one other shard: connections_max / shards (at least 1,024, at most
 * 32,768). With 20,000 connections and 2 shards that is 10,000 per pair
 * (160 KiB of ring each way); with 32 shards, 1,024 (16 KiB per ring).
 */
#include "net_internal.h"

/* Mails taken from one peer's ring per wake-up, at most (see net__on_mail). */
enum { MAIL_BUDGET_MAX = 8192 };

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static net__ring *ring_of(net_server *s, uint32_t from, uint32_t to)
{
    return &s->rings[(size_t)from * s->nshards + to];
}

int net__mail_init(net_server *s)
{
    uint64_t want = (uint64_t)s->cfg.connections_max / s->nshards;
    want = want < NET_OUTSTANDING_MIN ? NET_OUTSTANDING_MIN : want;
    want = want > NET_OUTSTANDING_CAP ? NET_OUTSTANDING_CAP : want;
    s->outstanding_max = (uint32_t)want;
    uint32_t slots = 1;
    while (slots < 2 * s->outstanding_max)
        slots <<= 1; /* a reply must always fit: 2 * outstanding_max or more */
    size_t n = (size_t)s->nshards * s->nshards;
    s->rings = aligned_alloc(NET__RING_CACHE_LINE, n * sizeof(net__ring));
    if (s->rings == NULL)
        return -ENOMEM;
    memset(s->rings, 0, n * sizeof(net__ring));
    for (size_t i = 0; i < n; i++) {
        int rc = net__ring_init(&s->rings[i], slots, sizeof(net_mail));
        if (rc != 0)
            return rc;
    }
    return 0;
}

void net__mail_free(net_server *s)
{
    if (s->rings == NULL)
        return;
    for (size_t i = 0; i < (size_t)s->nshards * s->nshards; i++)
        net__ring_free(&s->rings[i]);
    free(s->rings);
    s->rings = NULL;
}

static void job_back(net_shard *sh, net_job *j)
{
    if (j->back != NULL) {
        j->back(sh, j);
        return;
    }
    net_request *r = j->req;
    r->busy = false;
    net__request_finish(r);
}

/* On the target: the job's answer is final; hand it back to its origin. */
static void job_deliver(net_shard *sh, net_job *j)
{
    if (j->origin == sh->id) {
        sh->local_busy--;
        job_back(sh, j);
        return;
    }
    net_server *s = sh->server;
    /* Once pushed, the job belongs to its origin again (which may free it
     * at once): read nothing from it after the push. */
    uint32_t origin = j->origin;
    net_mail m = {.kind = NET_MAIL_BACK, .job = j};
    bool ok = net__ring_push(ring_of(s, sh->id, origin), &m);
    NET_ASSERT(ok); /* bounded by the origin's outstanding count */
    uv_async_send(&s->shards[origin].mail);
}

bool net__job_send(net_shard *sh, net_job *j, uint32_t target)
{
    NET_ASSERT(target < sh->server->nshards);
    j->origin = sh->id;
    j->target = target;
    j->wait_lsn = 0;
    j->wait_catalog = false;
    j->next = NULL;
    if (target == sh->id) {
        sh->local_busy++;
        j->run(sh, j);
        return true;
    }
    if (sh->outstanding[target] >= sh->server->outstanding_max) {
        atomic_fetch_add(&sh->m.forward_refused, 1);
        return false;
    }
    net_server *s = sh->server;
    net_mail m = {.kind = NET_MAIL_RUN, .job = j};
    if (!net__ring_push(ring_of(s, sh->id, target), &m)) {
        atomic_fetch_add(&sh->m.forward_refused, 1);
        return false;
    }
    sh->outstanding[target]++;
    atomic_fetch_add(&sh->m.forwarded, 1);
    uv_async_send(&s->shards[target].mail);
    return true;
}

static void queue_push(net_job **head, net_job **tail, net_job *j)
{
    j->next = NULL;
    if (*tail != NULL)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void job_fail_unavailable(net_shard *sh, net_job *j);

void net__job_complete(net_shard *sh, net_job *j)
{
    NET_ASSERT(j->target == sh->id);
    if (j->wait_lsn > atomic_load(&sh->durable_lsn) && atomic_load(&sh->wal_error) != 0) {
        /* That sync will never come (fail-stop): not acknowledged. */
        job_fail_unavailable(sh, j);
        return;
    }
    if (j->wait_lsn > atomic_load(&sh->durable_lsn)) {
        /* LSNs handed out on one shard only grow, so the queue stays sorted. */
        NET_ASSERT(sh->waitq_tail == NULL || sh->waitq_tail->wait_lsn <= j->wait_lsn);
        queue_push(&sh->waitq, &sh->waitq_tail, j);
        sh->waitq_len++;
        return;
    }
    if (j->wait_catalog && j->wait_lsn > sh->cat_applied_lsn) {
        queue_push(&sh->catq, &sh->catq_tail, j);
        net__catalog_kick(sh);
        return;
    }
    job_deliver(sh, j);
}

void net__jobs_durable(net_shard *sh, uint64_t durable_lsn)
{
    while (sh->waitq != NULL && sh->waitq->wait_lsn <= durable_lsn) {
        net_job *j = sh->waitq;
        sh->waitq = j->next;
        if (sh->waitq == NULL)
            sh->waitq_tail = NULL;
        sh->waitq_len--;
        if (j->wait_catalog && j->wait_lsn > sh->cat_applied_lsn)
            queue_push(&sh->catq, &sh->catq_tail, j);
        else
            job_deliver(sh, j);
    }
    net__catalog_kick(sh);
}

/* Runs the catalog updates that waited for earlier changes to reach LMDB. */
static void cat_writes_run(net_shard *sh)
{
    net_job *writes = sh->cat_writes;
    sh->cat_writes = sh->cat_writes_tail = NULL;
    while (writes != NULL) {
        net_job *j = writes;
        writes = j->next;
        j->next = NULL;
        j->run(sh, j);
    }
}

static void job_fail_unavailable(net_shard *sh, net_job *j)
{

    net_request *r = j->req;
    if (j->part) {
        j->failed = true;
    } else {
        net__respond_reset(r);
        net__respond_problem(r, 503, "wal-failed", "Write-ahead log failed",
                             "the shard could not make this change durable; it was not "
                             "acknowledged and the shard refuses writes until restarted",
                             NULL, "Retry-After: 30\r\n");
    }
    job_deliver(sh, j);
}

void net__jobs_wal_failed(net_shard *sh)
{
    /* Fail-stop: nothing waiting for a sync that will never come is
     * acknowledged; every waiter hears 503 now. */
    /* The queue is detached first: answering a waiter can dispatch new
     * requests on the same connection (net__request_finish resumes its
     * parse), and anything they queue goes on a fresh, consistent list. */
    net_job *list = sh->waitq;
    sh->waitq = sh->waitq_tail = NULL;
    sh->waitq_len = 0;
    while (list != NULL) {
        net_job *j = list;
        list = j->next;
        job_fail_unavailable(sh, j);
    }
    /* Catalog updates parked behind changes that will never be durable run
     * now; the failed WAL refuses them. */
    cat_writes_run(sh);
}

/* ---- Incoming mail ------------------------------------------------------------- */

static void internal_calls(net_shard *sh)
{
    net_server *s = sh->server;
    uv_mutex_lock(&s->call_mu);
    net_request *r = s->call_inbox;
    s->call_inbox = NULL;
    uv_mutex_unlock(&s->call_mu);
    if (r != NULL)
        net__dispatch(r);
}

void net__on_mail(uv_async_t *a)
{
    net_shard *sh = a->data;
    net_server *s = sh->server;
    net_mail batch[64];
    for (uint32_t from = 0; from < s->nshards; from++) {
        if (from == sh->id)
            continue;
        net__ring *ring = ring_of(s, from, sh->id);
        size_t n;
        /* Bounded per wake-up so one busy peer cannot starve the others;
         * anything left gets another turn right away. The bound is what a
         * peer can have in the ring at once (jobs it sent, bounded by
         * outstanding_max, and replies to ours, bounded the same way): a
         * connection whose request crossed is then served once per loop
         * turn like one of our own. A smaller budget starved them: in a
         * 10,000-connection flash sale the shard not owning the showtime
         * got a third of the owner's throughput, and a 4x longer p90. */
        size_t budget = 2 * (size_t)s->outstanding_max;
        if (budget > MAIL_BUDGET_MAX)
            budget = MAIL_BUDGET_MAX; /* and the loop's sockets wait no longer than this */
        while (budget > 0 && (n = net__ring_pop_batch(ring, batch, 64)) > 0) {
            budget -= n < budget ? n : budget;
            for (size_t i = 0; i < n; i++) {
                net_job *j = batch[i].job;
                if (batch[i].kind == NET_MAIL_RUN) {
                    NET_ASSERT(j->target == sh->id && j->origin == from);
                    j->run(sh, j);
                } else {
                    NET_ASSERT(batch[i].kind == NET_MAIL_BACK && j->origin == sh->id);
                    NET_ASSERT(sh->outstanding[from] > 0);
                    sh->outstanding[from]--;
                    job_back(sh, j);
                }
            }
        }
        if (budget == 0)
            uv_async_send(&sh->mail);
    }
    if (sh->id == 0)
        internal_calls(sh);
}

bool net__jobs_idle(net_shard *sh)
{
    for (uint32_t i = 0; i < sh->server->nshards; i++) {
        if (sh->outstanding[i] != 0)
            return false;
    }
    return sh->local_busy == 0 && sh->waitq == NULL && sh->catq == NULL && !sh->cat_applying;
}

/* ---- Catalog changes ----------------------------------------------------------------- */

int64_t net__catalog_journal(net_shard *sh, const catalog_change *ch)
{
    size_t cap = 16 + ch->json_len;
    net_cat_pending *p = calloc(1, sizeof(*p));
    uint8_t *buf = malloc(cap);
    if (p == NULL || buf == NULL) {
        free(p);
        free(buf);
        return -ENOMEM;
    }
    int len = catalog_change_encode(ch, buf, cap);
    NET_ASSERT(len > 0);
    int64_t lsn = wal_writer_append(sh->wal, ch->put ? CATALOG_REC_PUT : CATALOG_REC_DELETE,
                                    net__now_ms(sh), buf, (size_t)len);
    if (lsn < 0) {
        free(p);
        free(buf);
        return lsn;
    }
    atomic_store(&sh->last_lsn, (uint64_t)lsn);
    NET_ASSERT(catalog_change_decode(ch->put ? CATALOG_REC_PUT : CATALOG_REC_DELETE, buf,
                                     (size_t)len, &p->ch) == 0);
    p->buf = buf;
    p->lsn = (uint64_t)lsn;
    if (sh->cat_pending_tail != NULL)
        sh->cat_pending_tail->next = p;
    else
        sh->cat_pending = p;
    sh->cat_pending_tail = p;
    return lsn;
}

static void cat_work(uv_work_t *w)
{
    net_shard *sh = w->data;
    size_t n = 0;
    for (net_cat_pending *p = sh->cat_batch; p != NULL; p = p->next)
        n++;
    catalog_change *chs = n > 0 ? calloc(n, sizeof(*chs)) : NULL;
    if (n > 0 && chs == NULL) {
        sh->cat_batch_rc = -ENOMEM;
        return;
    }
    size_t i = 0;
    for (net_cat_pending *p = sh->cat_batch; p != NULL; p = p->next)
        chs[i++] = p->ch;
    sh->cat_batch_rc = catalog_apply(sh->server->cat, sh->id, sh->cat_batch_lsn, chs, n);
    /* The error text is thread-local: copy it for the loop thread. */
    snprintf(sh->cat_error, sizeof(sh->cat_error), "%s",
             sh->cat_batch_rc != 0 ? catalog_last_error() : "");
    free(chs);
}

static void cat_waiters_fail(net_shard *sh)
{
    net_job *list = sh->catq; /* detached first, as in net__jobs_wal_failed */
    sh->catq = sh->catq_tail = NULL;
    while (list != NULL) {
        net_job *j = list;
        list = j->next;
        net__respond_reset(j->req);
        net__respond_problem(j->req, 503, "catalog-unavailable", "Catalog unavailable",
                             "the change is in the write-ahead log but the catalog store cannot "
                             "take it now (see the server log); it will appear once it can",
                             NULL, "Retry-After: 30\r\n");
        job_deliver(sh, j);
    }
}

static void cat_after(uv_work_t *w, int status)
{
    net_shard *sh = w->data;
    sh->cat_applying = false;
    if (status != 0 || sh->cat_batch_rc != 0) {
        /* The changes are durable in the WAL; LMDB will get them at the next
         * try (or from the WAL at restart). Waiters keep waiting. */
        sh->cat_failures++;
        if (sh->cat_failures == 1 || sh->cat_failures % 100 == 0)
            net__log("error", "catalog apply failed; will retry",
                     "shard=%" PRIu32 " error=\"%s\" detail=\"%s\" failures=%" PRIu32, sh->id,
                     catalog_strerror(sh->cat_batch_rc), sh->cat_error, sh->cat_failures);
        /* Put the batch back in front of what came since. */
        net_cat_pending *last = sh->cat_batch;
        if (last != NULL) {
            while (last->next != NULL)
                last = last->next;
            last->next = sh->cat_pending;
            if (sh->cat_pending == NULL)
                sh->cat_pending_tail = last;
            sh->cat_pending = sh->cat_batch;
        }
        sh->cat_batch = NULL;
        /* Waiters get an answer within about 5 s (50 tries at 100 ms): the
         * change is durable in the WAL and reaches LMDB once the cause
         * (e.g. a full disk) is gone, or at restart, but it cannot be
         * confirmed now. */
        if (sh->cat_failures >= 50)
            cat_waiters_fail(sh);
        return;
    }
    sh->cat_failures = 0;
    while (sh->cat_batch != NULL) {
        net_cat_pending *p = sh->cat_batch;
        sh->cat_batch = p->next;
        free(p->buf);
        free(p);
    }
    sh->cat_applied_lsn = sh->cat_batch_lsn;
    atomic_store(&sh->m.catalog_applied_lsn, sh->cat_applied_lsn);
    /* WAL segments the catalog no longer needs may now go. */
    wal_writer_keep_after(sh->wal, sh->cat_applied_lsn);
    while (sh->catq != NULL && sh->catq->wait_lsn <= sh->cat_applied_lsn) {
        net_job *j = sh->catq;
        sh->catq = j->next;
        if (sh->catq == NULL)
            sh->catq_tail = NULL;
        job_deliver(sh, j);
    }
    /* Updates that waited for earlier changes to land go now. */
    cat_writes_run(sh);
    net__catalog_kick(sh);
}

void net__catalog_kick(net_shard *sh)
{
    if (sh->cat_applying || sh->wal == NULL)
        return;
    uint64_t durable = atomic_load(&sh->durable_lsn);
    if (durable <= sh->cat_applied_lsn)
        return;
    /* Nothing to apply and nobody waiting: only move the applied LSN (so
     * the WAL floor and the recovery scan stay short) now and then. */
    bool have = sh->cat_pending != NULL && sh->cat_pending->lsn <= durable;
    if (!have && sh->catq == NULL && durable - sh->cat_applied_lsn < 4096 && !sh->stopping)
        return;
    /* Take every pending change that is durable. */
    net_cat_pending *batch = NULL, **tail = &batch;
    while (sh->cat_pending != NULL && sh->cat_pending->lsn <= durable) {
        net_cat_pending *p = sh->cat_pending;
        sh->cat_pending = p->next;
        p->next = NULL;
        *tail = p;
        tail = &p->next;
    }
    if (sh->cat_pending == NULL)
        sh->cat_pending_tail = NULL;
    sh->cat_batch = batch;
    sh->cat_batch_lsn = durable;
    sh->cat_applying = true;
    sh->cat_work.data = sh;
    int rc = uv_queue_work(&sh->loop, &sh->cat_work, cat_work, cat_after);
    NET_ASSERT(rc == 0);
}

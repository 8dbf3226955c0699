/*
 * crash_test.c - real crashes: a child process drives the engine, the WAL and
 * snapshots; the parent kills it with SIGKILL at random moments, recovers
 * the data directory, and checks that every operation the child
 * acknowledged (reported only after its record was durable) is in the
 * recovered state, that nothing is half-applied, and that no seat is sold
 * twice. The child is restarted on the same directory each round, so
 * recovery-then-continue is exercised too.
 *
 * Seed: USHER_CRASH_SEED (printed), rounds: USHER_CRASH_ROUNDS (default 60);
 * USHER_CRASH_KEEP=1 keeps the data directory for usher-replay.
 */
#include "engine.h"
#include "snapshot.h"
#include "wal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHOWTIMES 3
#define ROWS      6
#define COLS      12
#define USERS     20

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static engine_config test_config(void)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.holds_max = 4096;
    cfg.bookings_max = 1u << 16;
    cfg.showtimes_max = 16;
    cfg.layouts_max = 4;
    cfg.hold_ttl_ms = 2000;
    cfg.hold_max_lifetime_ms = 6000;
    return cfg;
}

/* ---- The child: a tiny journaled shard ------------------------------------------ */

typedef struct pending_ack {
    uint64_t lsn;
    char line[160];
} pending_ack;

typedef struct child {
    uv_loop_t loop;
    uv_timer_t timer;
    engine *e;
    wal_writer *w;
    snapshot_store *store;
    snapshot_scheduler *sched;
    int out;
    int64_t now_ms;
    pending_ack *acks;
    size_t nacks, cap;
} child;

static void child_die(const char *what, int rc)
{
    fprintf(stderr, "crash child: %s: %d\n", what, rc);
    _exit(3);
}

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    (void)w;
    child *c = arg;
    size_t keep = 0;
    for (size_t i = 0; i < c->nacks; i++) {
        if (c->acks[i].lsn <= lsn) {
            /* One write per line (< PIPE_BUF): the parent sees whole lines. */
            ssize_t n = write(c->out, c->acks[i].line, strlen(c->acks[i].line));
            if (n < 0)
                _exit(4);
        } else {
            c->acks[keep++] = c->acks[i];
        }
    }
    c->nacks = keep;
    snapshot_scheduler_durable(c->sched, lsn);
}

static void on_failed(wal_writer *w, int err, void *arg)
{
    (void)w;
    (void)arg;
    child_die("wal failed", err);
}

/* Journals a record; `line` (may be NULL) is acknowledged once it is durable. */
static void journal(child *c, const engine_record *rec, const char *line)
{
    int64_t lsn = snapshot_record_append(c->w, rec);
    if (lsn < 0)
        child_die("append", (int)lsn);
    if (line == NULL)
        return;
    if (c->nacks == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->acks = realloc(c->acks, c->cap * sizeof(*c->acks));
    }
    c->acks[c->nacks].lsn = (uint64_t)lsn;
    int n =
        snprintf(c->acks[c->nacks].line, sizeof(c->acks[0].line), "%" PRId64 " %s\n", lsn, line);
    if (n < 0 || (size_t)n >= sizeof(c->acks[0].line))
        child_die("ack line too long", n); /* a cut line would corrupt the parent's truth */
    c->nacks++;
}

static void seats_text(char *out, size_t len, const uint32_t *seats, uint32_t n)
{
    size_t o = 0;
    for (uint32_t i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, " %" PRIu32, seats[i]);
}

static void child_setup_catalog(child *c)
{
    engine_seat_spec seats[ROWS * COLS];
    char rows[ROWS][ENGINE_LABEL_MAX];
    for (int r = 0; r < ROWS; r++) {
        snprintf(rows[r], ENGINE_LABEL_MAX, "%c", 'A' + r);
        for (int k = 0; k < COLS; k++) {
            engine_seat_spec *s = &seats[r * COLS + k];
            memset(s, 0, sizeof(*s));
            snprintf(s->label, ENGINE_LABEL_MAX, "%c%d", 'A' + r, k + 1);
            s->row = (uint16_t)r;
            s->col = (uint16_t)(k + (k >= COLS / 2)); /* an aisle in the middle */
            s->category = (uint8_t)(r >= ROWS / 2);
        }
    }
    engine_layout_spec spec = {.seat_count = ROWS * COLS,
                               .seats = seats,
                               .row_count = ROWS,
                               .row_labels = (const char(*)[ENGINE_LABEL_MAX])rows,
                               .category_count = 2,
                               .best_row = ROWS - 2};
    strcpy(spec.category_names[0], "silver");
    strcpy(spec.category_names[1], "gold");
    engine_record rec;
    if (engine_layout_create(c->e, c->now_ms, 1, &spec, NULL, &rec) != 0)
        child_die("layout", -1);
    journal(c, &rec, NULL);
    uint32_t prices[2] = {20000, 35000};
    for (uint64_t s = 1; s <= SHOWTIMES; s++) {
        /* Starts far enough ahead that every refund tier gets used. */
        int64_t start = c->now_ms + (int64_t)s * 3 * 3600 * 1000 + 600000;
        if (engine_showtime_create(c->e, c->now_ms, s, 1, start, prices, 2, &rec) != 0)
            child_die("showtime", -1);
        journal(c, &rec, NULL);
    }
}

/* One random operation; acknowledgements carry what the parent checks. */
static void child_step(child *c)
{
    engine *e = c->e;
    engine_record rec;
    char line[160], seats[96];
    uint64_t user = 1 + rng() % USERS, st = 1 + rng() % SHOWTIMES;
    c->now_ms += (int64_t)(rng() % 40);
    engine_record expired[32];
    size_t n = engine_holds_expire(e, c->now_ms, expired, NULL, 32);
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "E %" PRIu64, expired[i].u.hold_end.hold_id);
        journal(c, &expired[i], line);
    }
    uint64_t ids[16];
    uint32_t nh = engine_user_holds(e, user, 0, ids, 8);
    uint32_t nb = engine_user_bookings(e, user, 0, ids + 8, 8);
    switch (rng() % 8) {
    case 0:
    case 1: {
        uint32_t want[4], k = 1 + (uint32_t)(rng() % 4);
        for (uint32_t i = 0; i < k; i++)
            want[i] = (uint32_t)(rng() % (ROWS * COLS));
        if (engine_hold_place(e, c->now_ms, st, user, want, k, NULL, NULL, &rec) == ENGINE_OK)
            break;
        return;
    }
    case 2:
        if (engine_hold_best(e, c->now_ms, st, user, 1 + (uint32_t)(rng() % 4),
                             (uint32_t)(rng() % 2), 0, &rec) == ENGINE_OK)
            break;
        return;
    case 3:
    case 4: {
        if (nh == 0)
            return;
        uint64_t booking;
        char key[24];
        int klen = snprintf(key, sizeof(key), "k%" PRIu64, rng() % 1000);
        bool replayed;
        if (engine_booking_confirm(e, c->now_ms, ids[rng() % (nh < 8 ? nh : 8)], user,
                                   ENGINE_PAY_CARD, key, (uint32_t)klen, &booking, &replayed,
                                   &rec) != ENGINE_OK ||
            replayed)
            return;
        break;
    }
    case 5:
        if (nb == 0 || engine_booking_cancel(e, c->now_ms, ids[8 + rng() % (nb < 8 ? nb : 8)], user,
                                             NULL, &rec) != ENGINE_OK)
            return;
        break;
    case 6:
        if (nh == 0 || engine_hold_release(e, c->now_ms, ids[rng() % (nh < 8 ? nh : 8)], user,
                                           &rec) != ENGINE_OK)
            return;
        break;
    default:
        if (nh == 0 || engine_hold_extend(e, c->now_ms, ids[rng() % (nh < 8 ? nh : 8)], user,
                                          &rec) != ENGINE_OK)
            return;
        break;
    }
    switch (rec.type) {
    case ENGINE_REC_HOLD_PLACE:
        seats_text(seats, sizeof(seats), rec.u.hold_place.seats, rec.u.hold_place.seat_count);
        snprintf(line, sizeof(line), "H %" PRIu64 " %" PRIu64 "%s", rec.u.hold_place.hold_id,
                 rec.u.hold_place.showtime_id, seats);
        break;
    case ENGINE_REC_BOOKING_CONFIRM: {
        engine_booking_info b;
        engine_booking_get(e, rec.u.booking_confirm.booking_id, &b);
        seats_text(seats, sizeof(seats), b.seats, b.seat_count);
        snprintf(line, sizeof(line), "C %" PRIu64 " %" PRIu64 " %" PRIu64 "%s", b.id, b.hold_id,
                 b.showtime_id, seats);
        break;
    }
    case ENGINE_REC_BOOKING_CANCEL:
        snprintf(line, sizeof(line), "X %" PRIu64, rec.u.booking_cancel.booking_id);
        break;
    case ENGINE_REC_HOLD_RELEASE:
        snprintf(line, sizeof(line), "R %" PRIu64, rec.u.hold_end.hold_id);
        break;
    default:
        snprintf(line, sizeof(line), "T %" PRIu64, rec.u.hold_extend.hold_id);
        break;
    }
    journal(c, &rec, line);
}

static void on_timer(uv_timer_t *t)
{
    child *c = t->data;
    /* A burst per turn: group commit gets real batches. */
    int burst = 1 + (int)(rng() % 40);
    for (int i = 0; i < burst; i++)
        child_step(c);
    snapshot_scheduler_tick(c->sched, uv_now(&c->loop));
}

static noreturn void child_main(const char *dir, uint64_t seed, int out)
{
    rng_state = seed;
    child c;
    memset(&c, 0, sizeof(c));
    c.out = out;
    char shard_dir[512], wal_dir[600], snap_dir[600];
    snprintf(shard_dir, sizeof(shard_dir), "%s/shard-0", dir);
    snprintf(wal_dir, sizeof(wal_dir), "%s/wal", shard_dir);
    snprintf(snap_dir, sizeof(snap_dir), "%s/snapshot", shard_dir);
    mkdir(shard_dir, 0755);
    snapshot_recover_opts ro = {
        .shard_dir = shard_dir, .cfg = test_config(), .use_snapshot = true, .repair = true};
    snapshot_recovery rep;
    int rc = snapshot_recover(&ro, &c.e, &rep);
    if (rc != 0) {
        fprintf(stderr, "crash child: recovery: %s\n", rep.error);
        _exit(5);
    }
    c.now_ms = engine_now_ms(c.e) > 0 ? engine_now_ms(c.e) : 1000000;
    uv_loop_init(&c.loop);
    wal_writer_config wc = {.dir = wal_dir,
                            .next_lsn = rep.last_lsn + 1,
                            .segment_bytes = 16 * 1024, /* rotate often */
                            .durable_cb = on_durable,
                            .failed_cb = on_failed,
                            .arg = &c};
    if ((rc = wal_writer_open(&c.loop, &wc, &c.w)) != 0)
        child_die("wal open", rc);
    if ((rc = snapshot_store_open(snap_dir, 0, 64u << 20, &c.store)) != 0)
        child_die("snapshot open", rc);
    snapshot_policy pol = {.wal_bytes = 24 * 1024, .interval_ms = 150};
    snapshot_scheduler_open(&c.loop, c.e, c.w, c.store, &pol, &c.sched);
    if (engine_showtime_get(c.e, 1, NULL, NULL, NULL) == false)
        child_setup_catalog(&c);
    uv_timer_init(&c.loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, on_timer, 0, 1);
    uv_run(&c.loop, UV_RUN_DEFAULT); /* until SIGKILL */
    _exit(6);
}

/* ---- The parent: the acknowledged truth --------------------------------------------- */

typedef struct acked_hold {
    uint64_t id, showtime;
    uint32_t seats[4], n;
    bool ended; /* an acknowledged release, expiry or confirm ended it */
} acked_hold;

typedef struct acked_booking {
    uint64_t id, showtime;
    uint32_t seats[4], n;
    bool cancelled;
} acked_booking;

typedef struct truth {
    uint64_t from_snapshot; /* recoveries that started from a snapshot */
    acked_hold *holds;
    size_t nholds;
    acked_booking *bookings;
    size_t nbookings;
    uint64_t max_lsn, lines;
} truth;

static acked_hold *find_hold(truth *t, uint64_t id)
{
    for (size_t i = t->nholds; i-- > 0;) {
        if (t->holds[i].id == id)
            return &t->holds[i];
    }
    return NULL;
}

static void truth_line(truth *t, char *line)
{
    uint64_t lsn;
    char kind;
    int off = 0;
    cr_assert_eq(sscanf(line, "%" SCNu64 " %c%n", &lsn, &kind, &off), 2, "bad ack line '%s'", line);
    cr_assert_gt(lsn, t->max_lsn, "acks arrive in LSN order ('%s')", line);
    t->max_lsn = lsn;
    t->lines++;
    char *p = line + off;
    uint64_t a, b, st;
    int used;
    switch (kind) {
    case 'H': {
        sscanf(p, "%" SCNu64 " %" SCNu64 "%n", &a, &st, &used);
        acked_hold h = {.id = a, .showtime = st};
        p += used;
        while (sscanf(p, "%" SCNu32 "%n", &h.seats[h.n], &used) == 1 && h.n < 4) {
            h.n++;
            p += used;
        }
        t->holds = realloc(t->holds, (t->nholds + 1) * sizeof(*t->holds));
        t->holds[t->nholds++] = h;
        break;
    }
    case 'C': {
        sscanf(p, "%" SCNu64 " %" SCNu64 " %" SCNu64 "%n", &a, &b, &st, &used);
        acked_booking bk = {.id = a, .showtime = st};
        p += used;
        while (sscanf(p, "%" SCNu32 "%n", &bk.seats[bk.n], &used) == 1 && bk.n < 4) {
            bk.n++;
            p += used;
        }
        t->bookings = realloc(t->bookings, (t->nbookings + 1) * sizeof(*t->bookings));
        t->bookings[t->nbookings++] = bk;
        acked_hold *h = find_hold(t, b);
        if (h != NULL)
            h->ended = true;
        break;
    }
    case 'X':
        sscanf(p, "%" SCNu64, &a);
        for (size_t i = 0; i < t->nbookings; i++) {
            if (t->bookings[i].id == a)
                t->bookings[i].cancelled = true;
        }
        break;
    case 'R':
    case 'E': {
        sscanf(p, "%" SCNu64, &a);
        acked_hold *h = find_hold(t, a);
        if (h != NULL)
            h->ended = true;
        break;
    }
    default:
        break; /* extensions need no check beyond durability */
    }
}

/* Reads whole lines from the pipe; a partial last line stays in `buf`. */
static void drain(int fd, char *buf, size_t *len, size_t cap, truth *t)
{
    for (;;) {
        ssize_t n = read(fd, buf + *len, cap - *len - 1);
        if (n <= 0)
            return;
        *len += (size_t)n;
        buf[*len] = '\0';
        char *start = buf, *nl;
        while ((nl = strchr(start, '\n')) != NULL) {
            *nl = '\0';
            truth_line(t, start);
            start = nl + 1;
        }
        *len -= (size_t)(start - buf);
        memmove(buf, start, *len);
    }
}

static void check_no_double_sale(const truth *t);

static void check_recovered(const char *dir, truth *t, uint64_t seed, int round)
{
    char shard_dir[512];
    snprintf(shard_dir, sizeof(shard_dir), "%s/shard-0", dir);
    snapshot_recover_opts ro = {
        .shard_dir = shard_dir, .cfg = test_config(), .use_snapshot = true, .repair = false};
    snapshot_recovery rep;
    engine *e = NULL;
    int rc = snapshot_recover(&ro, &e, &rep);
    cr_assert_eq(rc, 0, "seed %" PRIu64 " round %d: recovery failed: %s", seed, round, rep.error);
    cr_assert_geq(rep.last_lsn, t->max_lsn,
                  "seed %" PRIu64 " round %d: acknowledged LSN %" PRIu64
                  " lost (log ends at %" PRIu64 ")",
                  seed, round, t->max_lsn, rep.last_lsn);
    engine_check(e); /* aborts on any broken invariant: a half-applied change, a double sale */
    t->from_snapshot += rep.had_snapshot;

    for (size_t i = 0; i < t->nbookings; i++) {
        const acked_booking *bk = &t->bookings[i];
        engine_booking_info info;
        cr_assert(engine_booking_get(e, bk->id, &info),
                  "seed %" PRIu64 " round %d: acknowledged booking %" PRIu64 " missing", seed,
                  round, bk->id);
        cr_assert_eq(info.showtime_id, bk->showtime);
        cr_assert_eq(info.seat_count, bk->n);
        for (uint32_t k = 0; k < bk->n; k++)
            cr_assert_eq(info.seats[k], bk->seats[k], "booking %" PRIu64 " seats differ", bk->id);
        if (bk->cancelled)
            cr_assert_eq(info.status, ENGINE_BOOKING_STATUS_CANCELLED,
                         "acknowledged cancel of %" PRIu64 " lost", bk->id);
        else
            for (uint32_t k = 0; k < bk->n; k++) /* sold, unless a later unacked cancel */
                cr_assert(info.status == ENGINE_BOOKING_STATUS_CANCELLED ||
                              engine_seat_state_get(e, bk->showtime, bk->seats[k]) ==
                                  ENGINE_SEAT_SOLD,
                          "seat of confirmed booking %" PRIu64 " not sold", bk->id);
    }
    for (size_t i = 0; i < t->nholds; i++) {
        const acked_hold *h = &t->holds[i];
        engine_hold_info info;
        bool live = engine_hold_get(e, h->id, &info);
        if (h->ended) {
            cr_assert(!live, "hold %" PRIu64 " ended (acknowledged) but is live again", h->id);
            continue;
        }
        /* Live, or ended by a later record that was durable but not yet acked. */
        if (live) {
            cr_assert_eq(info.seat_count, h->n);
            for (uint32_t k = 0; k < h->n; k++)
                cr_assert_eq(info.seats[k], h->seats[k]);
        }
    }
    /* The acknowledged, uncancelled bookings never share a seat. */
    check_no_double_sale(t);
    /* The recovered state is where the next child starts: outcomes that were
     * durable but not acknowledged (a cancel, a release) are now settled
     * facts, and the child may resell those seats. */
    for (size_t i = 0; i < t->nbookings; i++) {
        engine_booking_info info;
        if (engine_booking_get(e, t->bookings[i].id, &info) &&
            info.status == ENGINE_BOOKING_STATUS_CANCELLED)
            t->bookings[i].cancelled = true;
    }
    for (size_t i = 0; i < t->nholds; i++) {
        engine_hold_info info;
        if (!engine_hold_get(e, t->holds[i].id, &info))
            t->holds[i].ended = true;
    }
    engine_destroy(e);
}

static void check_no_double_sale(const truth *t)
{
    for (size_t i = 0; i < t->nbookings; i++) {
        for (size_t j = i + 1; j < t->nbookings; j++) {
            const acked_booking *x = &t->bookings[i], *y = &t->bookings[j];
            if (x->cancelled || y->cancelled || x->showtime != y->showtime)
                continue;
            for (uint32_t a = 0; a < x->n; a++)
                for (uint32_t b = 0; b < y->n; b++)
                    cr_assert_neq(x->seats[a], y->seats[b], "seat %u sold twice", x->seats[a]);
        }
    }
}

Test(crash, sigkill_never_loses_an_acknowledged_operation, .timeout = 600)
{
    const char *env = getenv("USHER_CRASH_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
    env = getenv("USHER_CRASH_ROUNDS");
    int rounds = env ? atoi(env) : 60;
    fprintf(stderr, "crash: USHER_CRASH_SEED=%" PRIu64 " rounds=%d\n", seed, rounds);
    rng_state = seed;

    char dir[] = "/tmp/usher-crash-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    truth t = {0};
    static char buf[1 << 16];
    uint64_t kills = 0;
    for (int round = 0; round < rounds; round++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        uint64_t child_seed = rng();
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, child_seed, fds[1]);
        }
        close(fds[1]);
        /* Let it run a random while (mostly short, sometimes through
         * several snapshots), reading acks as they come. */
        int run_ms = 5 + (int)(rng() % (round % 7 == 0 ? 600 : 120));
        size_t len = 0;
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        do {
            drain(fds[0], buf, &len, sizeof(buf), &t);
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < run_ms);
        cr_assert_eq(kill(pid, SIGKILL), 0);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "seed %" PRIu64 " round %d: child died on its own (status %d)", seed, round,
                  status);
        kills++;
        drain(fds[0], buf, &len, sizeof(buf), &t); /* acks written before the kill */
        close(fds[0]);
        check_recovered(dir, &t, seed, round);
    }
    fprintf(stderr,
            "crash: %" PRIu64 " kills, %" PRIu64
            " acknowledged operations (%zu holds, %zu bookings), "
            "last acknowledged LSN %" PRIu64 "\n",
            kills, t.lines, t.nholds, t.nbookings, t.max_lsn);
    cr_assert_geq(kills, 50u);
    /* Snapshots were written and used, and the WAL behind them was dropped. */
    cr_assert_gt(t.from_snapshot, 0u, "no recovery started from a snapshot");
    char wal_dir[600];
    snprintf(wal_dir, sizeof(wal_dir), "%s/shard-0/wal", dir);
    wal_reader *r;
    cr_assert_eq(wal_reader_open(wal_dir, 1, NULL, &r), WAL_ENOTFOUND,
                 "segments below the snapshot were never dropped");
    fprintf(stderr, "crash: %" PRIu64 " of %d recoveries started from a snapshot\n",
            t.from_snapshot, rounds);
    cr_assert_gt(t.nbookings, 0u, "the run confirmed nothing: the test proved little");
    free(t.holds);
    free(t.bookings);
    /* usher-replay must accept what the crash left behind. */
    const char *replay = getenv("USHER_REPLAY");
    if (replay != NULL) {
        char verify[1200];
        snprintf(verify, sizeof(verify), "'%s' --data-dir '%s' verify >/dev/null", replay, dir);
        int status = system(verify);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "seed %" PRIu64 ": usher-replay verify failed on the crash data directory (%s)",
                  seed, dir);
    }
    if (getenv("USHER_CRASH_KEEP") != NULL) {
        fprintf(stderr, "crash: data directory kept: %s\n", dir);
        return;
    }
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

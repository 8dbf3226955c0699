-- usher-pgexport, migration 004: waiting lists, virtual queues and price changes (issue #7).
--
-- The stream's new event types (docs/replication.md): showtime.repriced, waitlist.joined,
-- waitlist.left, waitlist.offered, queue.configured, queue.joined, queue.left, queue.started,
-- queue.admitted; and snapshot.hold's new member "offer". Before this migration usher_apply sent
-- them all to booking_events only, so a waiting-list offer that was confirmed updated no
-- bookings row: its revenue was missing from every view.
--
-- This file:
--   bookings.source       'reserve' (a hold the user placed: booking.reserved) or 'waitlist'
--                         (a hold the engine placed for a waiter: waitlist.offered); existing rows
--                         become 'reserve', which they are.
--   usher_apply           replaced (CREATE OR REPLACE). PostgreSQL cannot extend a function, so
--                         the whole body is repeated: it is 002_apply.sql's, line for line, except
--                         the branches marked "004:" (waitlist.offered next to booking.reserved,
--                         showtime.repriced, and the other new types listed as booking_events
--                         only). Keep the two in step when changing either.
--   usher_snapshot_rows   replaced the same way: 002's body except the snapshot.hold branch,
--                         which reads "offer" into bookings.source (marked "004:").
--   waitlist_conversion, queue_activity
--                         views over booking_events (docs/analytics.md).

ALTER TABLE bookings
    ADD COLUMN source text NOT NULL DEFAULT 'reserve' CHECK (source IN ('reserve', 'waitlist'));

-- ---------------------------------------------------------------------------------------------
-- usher_apply: one batch of events of one shard, exactly once.
--
-- Locks the shard's export_state row, checks the whole batch first (format version 1, the
-- shard, LSNs export_state.lsn + 1, + 2, ...; any mismatch raises UR001 and the caller's
-- transaction fails as a whole), applies each event with static statements, records every event
-- in booking_events and moves export_state.lsn to the last LSN. Returns the shard's LSN after
-- the batch (unchanged for an empty array).
CREATE OR REPLACE FUNCTION usher_apply(p_shard integer, p_events jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_lsn     bigint;
    v_n       integer;
    v_bad     record;
    v_got     text;
    e         jsonb;
    d         jsonb;
    v_type    text;
    v_ts      timestamptz;
    v_st      bigint;
    -- the labels of the last showtime a booking.reserved named (reservations come in runs)
    v_lbl_st  bigint;
    v_labels  text[];
    v_slabels text[];
    v_seats   integer[];
BEGIN
    IF p_shard IS NULL THEN
        RAISE EXCEPTION 'usher_apply: shard is NULL' USING ERRCODE = '22023';
    END IF;
    IF p_events IS NOT NULL AND jsonb_typeof(p_events) <> 'array' THEN
        RAISE EXCEPTION 'usher_apply: shard %: events must be a JSON array, got a JSON %',
            p_shard, jsonb_typeof(p_events) USING ERRCODE = '22023';
    END IF;

    INSERT INTO export_state (shard) VALUES (p_shard) ON CONFLICT (shard) DO NOTHING;
    SELECT lsn INTO v_lsn FROM export_state WHERE shard = p_shard FOR UPDATE;

    v_n := coalesce(jsonb_array_length(p_events), 0);
    IF v_n = 0 THEN
        RETURN v_lsn;
    END IF;

    -- The exactly-once guard: the first event that is not what must come next.
    SELECT x.ord, x.ev INTO v_bad
      FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(ev, ord)
     WHERE NOT coalesce(jsonb_typeof(x.ev) = 'object'
                        AND x.ev->'v' = '1'::jsonb
                        AND x.ev->'shard' = to_jsonb(p_shard)
                        AND x.ev->'lsn' = to_jsonb(v_lsn + x.ord), false)
     ORDER BY x.ord
     LIMIT 1;
    IF FOUND THEN
        v_got := CASE WHEN jsonb_typeof(v_bad.ev) = 'object'
                      THEN coalesce(v_bad.ev->>'lsn', 'none') ELSE 'not an object' END;
        IF jsonb_typeof(v_bad.ev) = 'object' AND v_bad.ev->'v' IS DISTINCT FROM '1'::jsonb THEN
            RAISE EXCEPTION 'usher_apply: shard %: expected LSN %, got % with format version % (only 1 is known)',
                p_shard, v_lsn + v_bad.ord, v_got, coalesce(v_bad.ev->>'v', 'none')
                USING ERRCODE = 'UR001';
        ELSIF jsonb_typeof(v_bad.ev) = 'object' AND v_bad.ev->'shard' IS DISTINCT FROM to_jsonb(p_shard) THEN
            RAISE EXCEPTION 'usher_apply: shard %: expected LSN %, got % of shard %',
                p_shard, v_lsn + v_bad.ord, v_got, coalesce(v_bad.ev->>'shard', 'none')
                USING ERRCODE = 'UR001';
        ELSE
            RAISE EXCEPTION 'usher_apply: shard %: expected LSN %, got %', p_shard, v_lsn + v_bad.ord, v_got
                USING ERRCODE = 'UR001',
                      HINT = 'the batch must continue export_state.lsn without a gap or a repeat';
        END IF;
    END IF;

    -- Every event line, as received (its primary key (shard, lsn) is a second guard).
    INSERT INTO booking_events (shard, lsn, ts, type, hold_id, booking_id, data)
    SELECT p_shard, (x->>'lsn')::bigint, (x->>'ts')::timestamptz, x->>'type',
           (x->'data'->>'hold_id')::bigint, (x->'data'->>'booking_id')::bigint,
           coalesce(x->'data', '{}'::jsonb)
      FROM jsonb_array_elements(p_events) AS x;

    FOR e IN SELECT x FROM jsonb_array_elements(p_events) AS x LOOP
        v_type := e->>'type';
        d      := e->'data';
        v_ts   := (e->>'ts')::timestamptz;
        CASE v_type
        WHEN 'booking.reserved', 'waitlist.offered' THEN
            -- 004: waitlist.offered carries exactly booking.reserved's members; only source differs.
            v_st := (d->>'showtime_id')::bigint;
            IF v_lbl_st IS DISTINCT FROM v_st THEN
                v_labels := usher_showtime_labels(v_st);
                v_lbl_st := v_st;
            END IF;
            -- seats: a JSON array of integers, "[2, 3]" -> '{2, 3}' (a simple expression, much
            -- cheaper than a subquery per event); labels: plain array subscripts.
            v_seats := translate(d->>'seats', '[]', '{}')::integer[];
            v_slabels := usher_seat_labels(v_labels, v_seats);
            -- A plain INSERT: a hold_id seen before means an event applied twice, and fails.
            INSERT INTO bookings (hold_id, shard, showtime_id, user_id, seats, seat_labels, amount,
                                  currency, status, reserved_at, expires_at, source)
            VALUES ((d->>'hold_id')::bigint, p_shard, v_st, (d->>'user_id')::bigint, v_seats,
                    v_slabels, (d->>'amount')::bigint, coalesce(d->>'currency', 'INR'), 'held',
                    v_ts, (d->>'expires_at')::timestamptz,
                    CASE v_type WHEN 'waitlist.offered' THEN 'waitlist' ELSE 'reserve' END);
        WHEN 'booking.confirmed' THEN
            UPDATE bookings
               SET booking_id = (d->>'booking_id')::bigint, status = 'confirmed',
                   method = d->>'method', confirmed_at = v_ts
             WHERE hold_id = (d->>'hold_id')::bigint;
        WHEN 'hold.expired' THEN
            UPDATE bookings SET status = 'expired', ended_at = v_ts
             WHERE hold_id = (d->>'hold_id')::bigint AND status = 'held';
        WHEN 'hold.released' THEN
            UPDATE bookings SET status = 'released', ended_at = v_ts
             WHERE hold_id = (d->>'hold_id')::bigint AND status = 'held';
        WHEN 'hold.extended' THEN
            UPDATE bookings SET expires_at = (d->>'expires_at')::timestamptz
             WHERE hold_id = (d->>'hold_id')::bigint;
        WHEN 'booking.cancelled' THEN
            UPDATE bookings
               SET status = 'cancelled', refund = coalesce((d->>'refund')::bigint, 0),
                   cancelled_at = v_ts
             WHERE booking_id = (d->>'booking_id')::bigint;
        WHEN 'catalog.upsert' THEN
            PERFORM usher_catalog_upsert(p_shard, d->>'kind', (d->>'id')::bigint, d->'entity', v_ts);
        WHEN 'catalog.delete' THEN
            PERFORM usher_catalog_delete(d->>'kind', (d->>'id')::bigint, v_ts);
        WHEN 'layout.created' THEN
            PERFORM usher_layout_upsert(p_shard, d);
            v_lbl_st := NULL;
        WHEN 'layout.deleted' THEN
            DELETE FROM layouts WHERE shard = p_shard AND id = (d->>'layout_id')::bigint;
            v_lbl_st := NULL;
        WHEN 'showtime.opened' THEN
            PERFORM usher_showtime_open(p_shard, d, v_ts);
            v_lbl_st := NULL;
        WHEN 'showtime.repriced' THEN
            -- 004: the prices of holds placed from now on, in showtime.opened's representation (the
            -- JSON array of category prices, by index). Holds already placed keep their amount.
            UPDATE showtimes SET prices = d->'prices', updated_at = v_ts
             WHERE id = (d->>'showtime_id')::bigint;
        WHEN 'waitlist.joined', 'waitlist.left', 'queue.configured', 'queue.joined', 'queue.left',
             'queue.started', 'queue.admitted' THEN
            -- 004: booking_events only; the views waitlist_conversion and queue_activity read them.
            NULL;
        ELSE
            -- showtime.closed and types this version does not know: booking_events only.
            NULL;
        END CASE;
    END LOOP;

    v_lsn := v_lsn + v_n;
    UPDATE export_state
       SET lsn = v_lsn, events = events + v_n, updated_at = now()
     WHERE shard = p_shard;
    RETURN v_lsn;
END
$$;

-- ---------------------------------------------------------------------------------------------

-- p_rows: an array of snapshot lines (snapshot.catalog, .layout, .showtime, .hold, .booking;
-- snapshot.begin / snapshot.end lines and unknown types are skipped). Returns the number of
-- lines applied.
CREATE OR REPLACE FUNCTION usher_snapshot_rows(p_shard integer, p_rows jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r         jsonb;
    d         jsonb;
    v_n       integer := 0;
    v_st      bigint;
    v_seats   integer[];
    v_slabels text[];
    v_lbl_st  bigint;       -- as in usher_apply: the labels of the last showtime seen
    v_labels  text[];
BEGIN
    PERFORM usher_snapshot_check('usher_snapshot_rows', p_shard);
    IF p_rows IS NULL THEN
        RETURN 0;
    END IF;
    IF jsonb_typeof(p_rows) <> 'array' THEN
        RAISE EXCEPTION 'usher_snapshot_rows: shard %: rows must be a JSON array, got a JSON %',
            p_shard, jsonb_typeof(p_rows) USING ERRCODE = '22023';
    END IF;
    FOR r IN SELECT x FROM jsonb_array_elements(p_rows) AS x LOOP
        IF jsonb_typeof(r) <> 'object' OR r->'v' IS DISTINCT FROM '1'::jsonb
           OR r->'shard' IS DISTINCT FROM to_jsonb(p_shard) THEN
            RAISE EXCEPTION 'usher_snapshot_rows: shard %: a line of format version % and shard % (expected 1 and %)',
                p_shard, coalesce(r->>'v', 'none'), coalesce(r->>'shard', 'none'), p_shard
                USING ERRCODE = 'UR003';
        END IF;
        d := r->'data';
        IF r->>'type' IN ('snapshot.hold', 'snapshot.booking') THEN
            v_st := (d->>'showtime_id')::bigint;
            IF v_lbl_st IS DISTINCT FROM v_st THEN
                v_labels := usher_showtime_labels(v_st);
                v_lbl_st := v_st;
            END IF;
            v_seats := translate(d->>'seats', '[]', '{}')::integer[];
            v_slabels := usher_seat_labels(v_labels, v_seats);
        END IF;
        CASE r->>'type'
        WHEN 'snapshot.catalog' THEN
            PERFORM usher_catalog_upsert(p_shard, d->>'kind', (d->>'id')::bigint, d->'entity', NULL);
            INSERT INTO usher_snapshot_seen VALUES (d->>'kind', (d->>'id')::bigint)
                ON CONFLICT DO NOTHING;
        WHEN 'snapshot.layout' THEN
            PERFORM usher_layout_upsert(p_shard, d);
            INSERT INTO usher_snapshot_seen VALUES ('layout', (d->>'layout_id')::bigint)
                ON CONFLICT DO NOTHING;
            v_lbl_st := NULL;
        WHEN 'snapshot.showtime' THEN
            PERFORM usher_showtime_open(p_shard, d, NULL);
            v_lbl_st := NULL;
        WHEN 'snapshot.hold' THEN
            -- A live hold at the snapshot's LSN: becomes (or stays) 'held'.
            -- 004: "offer": true is a waiting-list offer (source 'waitlist'). A line without the
            -- member (a server before issue #7) leaves an existing row's source as it is.
            INSERT INTO bookings AS b (hold_id, shard, showtime_id, user_id, seats, seat_labels,
                                       amount, currency, status, reserved_at, expires_at, source)
            VALUES ((d->>'hold_id')::bigint, p_shard, v_st, (d->>'user_id')::bigint, v_seats,
                    v_slabels, (d->>'amount')::bigint, coalesce(d->>'currency', 'INR'), 'held',
                    (d->>'reserved_at')::timestamptz, (d->>'expires_at')::timestamptz,
                    CASE WHEN d->'offer' = 'true'::jsonb THEN 'waitlist' ELSE 'reserve' END)
            ON CONFLICT (hold_id) DO UPDATE
               SET status = 'held', ended_at = NULL,
                   reserved_at = coalesce(EXCLUDED.reserved_at, b.reserved_at),
                   expires_at = EXCLUDED.expires_at,
                   seat_labels = coalesce(b.seat_labels, EXCLUDED.seat_labels),
                   source = CASE WHEN d ? 'offer' THEN EXCLUDED.source ELSE b.source END;
            INSERT INTO usher_snapshot_seen VALUES ('hold', (d->>'hold_id')::bigint)
                ON CONFLICT DO NOTHING;
        WHEN 'snapshot.booking' THEN
            -- A booking (confirmed or cancelled); reserved_at stays NULL if the hold is new here.
            INSERT INTO bookings AS b (hold_id, booking_id, shard, showtime_id, user_id, seats,
                                       seat_labels, amount, refund, currency, method, status,
                                       reserved_at, confirmed_at, cancelled_at)
            VALUES ((d->>'hold_id')::bigint, (d->>'booking_id')::bigint, p_shard, v_st,
                    (d->>'user_id')::bigint, v_seats, v_slabels,
                    (d->>'amount')::bigint, coalesce((d->>'refund')::bigint, 0),
                    coalesce(d->>'currency', 'INR'), d->>'method', d->>'status',
                    NULL, (d->>'confirmed_at')::timestamptz, (d->>'cancelled_at')::timestamptz)
            ON CONFLICT (hold_id) DO UPDATE
               SET booking_id = EXCLUDED.booking_id, status = EXCLUDED.status,
                   method = EXCLUDED.method, refund = EXCLUDED.refund, ended_at = NULL,
                   confirmed_at = coalesce(EXCLUDED.confirmed_at, b.confirmed_at),
                   cancelled_at = coalesce(EXCLUDED.cancelled_at, b.cancelled_at),
                   seat_labels = coalesce(b.seat_labels, EXCLUDED.seat_labels);
            INSERT INTO usher_snapshot_seen VALUES ('hold', (d->>'hold_id')::bigint)
                ON CONFLICT DO NOTHING;
        ELSE
            CONTINUE;   -- snapshot.begin, snapshot.end, types this version does not know
        END CASE;
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Views over booking_events: the history this database saw (a snapshot bootstrap brings none).
-- A showtime has a row once it has an event of the kind; "departed" counts the *.left events
-- (left is an SQL keyword).

-- Per showtime: waitlist.joined and waitlist.left events; the offers (waitlist.offered) and what
-- became of them, by the hold's later event: booking.confirmed, hold.released or hold.expired
-- (an offer with none of these is still open). rate = confirmed / offered.
CREATE VIEW waitlist_conversion AS
WITH offers AS (
    SELECT e.hold_id, (e.data->>'showtime_id')::bigint AS showtime_id
      FROM booking_events e
     WHERE e.type = 'waitlist.offered'
), ev AS (
    SELECT (e.data->>'showtime_id')::bigint AS showtime_id, e.type
      FROM booking_events e
     WHERE e.type IN ('waitlist.joined', 'waitlist.left')
    UNION ALL
    SELECT o.showtime_id, 'waitlist.offered' FROM offers o
    UNION ALL
    SELECT o.showtime_id, e.type
      FROM offers o
      JOIN booking_events e ON e.hold_id = o.hold_id
     WHERE e.type IN ('booking.confirmed', 'hold.released', 'hold.expired')
)
SELECT ev.showtime_id,
       count(*) FILTER (WHERE ev.type = 'waitlist.joined')   AS joined,
       count(*) FILTER (WHERE ev.type = 'waitlist.left')     AS departed,
       count(*) FILTER (WHERE ev.type = 'waitlist.offered')  AS offered,
       count(*) FILTER (WHERE ev.type = 'booking.confirmed') AS confirmed,
       count(*) FILTER (WHERE ev.type = 'hold.released')     AS released,
       count(*) FILTER (WHERE ev.type = 'hold.expired')      AS expired,
       round((count(*) FILTER (WHERE ev.type = 'booking.confirmed'))::numeric
             / nullif(count(*) FILTER (WHERE ev.type = 'waitlist.offered'), 0), 4) AS rate
  FROM ev
 GROUP BY ev.showtime_id;

-- Per showtime: the queue as last configured (rate_per_second 0: removed; starts_at NULL then),
-- when it last started (queue.started), queue.joined and queue.left events, and admitted_through:
-- the places the admission cursor passed (queue.admitted's admitted_through, "places [0, N) are
-- admitted or left"), summed over the showtime's queues (a queue removed and configured again
-- starts at place 0). It counts admitted users plus those who left before their turn: which of
-- the two a place was is not in the stream.
CREATE VIEW queue_activity AS
WITH ev AS (
    SELECT (e.data->>'showtime_id')::bigint AS showtime_id, e.lsn, e.ts, e.type, e.data,
           -- which queue of the showtime: the number of removals (rate 0) up to this event
           count(*) FILTER (WHERE e.type = 'queue.configured'
                              AND e.data->'rate_per_second' = '0'::jsonb)
               OVER (PARTITION BY e.shard, e.data->>'showtime_id' ORDER BY e.lsn) AS queue_no
      FROM booking_events e
     WHERE e.type IN ('queue.configured', 'queue.joined', 'queue.left', 'queue.started',
                      'queue.admitted')
), admitted AS (
    SELECT showtime_id, sum(n)::bigint AS admitted_through
      FROM (SELECT showtime_id, queue_no, max((data->>'admitted_through')::bigint) AS n
              FROM ev WHERE type = 'queue.admitted'
             GROUP BY showtime_id, queue_no) x
     GROUP BY showtime_id
)
SELECT ev.showtime_id,
       (array_agg((ev.data->>'rate_per_second')::bigint ORDER BY ev.lsn DESC)
            FILTER (WHERE ev.type = 'queue.configured'))[1]               AS rate_per_second,
       (array_agg((ev.data->>'starts_at')::timestamptz ORDER BY ev.lsn DESC)
            FILTER (WHERE ev.type = 'queue.configured'))[1]               AS starts_at,
       max(ev.ts) FILTER (WHERE ev.type = 'queue.started')                AS started_at,
       count(*) FILTER (WHERE ev.type = 'queue.joined')                   AS joined,
       count(*) FILTER (WHERE ev.type = 'queue.left')                     AS departed,
       coalesce(max(a.admitted_through), 0)                               AS admitted_through
  FROM ev
  LEFT JOIN admitted a ON a.showtime_id = ev.showtime_id
 GROUP BY ev.showtime_id;

-- usher-pgexport, migration 002: the functions the exporter calls.
--
--   usher_apply(p_shard integer, p_events jsonb) RETURNS bigint
--       applies one batch of stream events (a JSON array, LSN order) exactly once.
--   usher_snapshot_begin(p_shard integer) RETURNS void
--   usher_snapshot_rows(p_shard integer, p_rows jsonb) RETURNS integer
--   usher_snapshot_end(p_shard integer, p_lsn bigint) RETURNS void
--       a snapshot bootstrap, all three in one transaction.
--
-- Errors the exporter must tell apart (SQLSTATE):
--   UR001  usher_apply refused a batch: an event of another format version or shard, or LSNs
--          not contiguous from export_state.lsn + 1. Nothing of the batch is applied.
--   UR002  usher_snapshot_end with an LSN older than the shard's export_state.lsn.
--   UR003  a snapshot call out of protocol: rows/end without a begin for that shard in the same
--          transaction, or a snapshot line of another shard or format version.
--   22023  an argument of the wrong shape (p_events not a JSON array, a NULL shard).
--
-- The helpers below (usher_catalog_upsert, ...) are shared by the event and snapshot paths; the
-- exporter does not call them.

CREATE FUNCTION usher_text_array(p jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(SELECT x FROM jsonb_array_elements_text(p) AS x)
$$;

-- The labels of a showtime's seats (index i + 1 holds seat i's label), or NULL while its
-- layout or showtime row has not arrived.
CREATE FUNCTION usher_showtime_labels(p_showtime bigint) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT l.seat_labels
      FROM showtimes s JOIN layouts l ON l.shard = s.shard AND l.id = s.layout_id
     WHERE s.id = p_showtime
$$;

-- The labels of `p_seats` (0-based seat indexes) in `p_labels`; NULL when the labels are unknown.
CREATE FUNCTION usher_seat_labels(p_labels text[], p_seats integer[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_out text[] := '{}';
    v_i   integer;
BEGIN
    IF p_labels IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH v_i IN ARRAY p_seats LOOP
        v_out := v_out || p_labels[v_i + 1];
    END LOOP;
    RETURN v_out;
END
$$;

-- catalog.upsert / snapshot.catalog. p_ts is the event's time; NULL for a snapshot line, which
-- then changes a row only when its document differs or the row was soft-deleted (so a bootstrap
-- does not touch updated_at of unchanged rows). Unknown kinds are ignored.
CREATE FUNCTION usher_catalog_upsert(p_shard integer, p_kind text, p_id bigint, p_entity jsonb,
                                     p_ts timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_ts timestamptz := coalesce(p_ts, now());
    v_force boolean := p_ts IS NOT NULL;
BEGIN
    IF p_id IS NULL OR p_entity IS NULL OR jsonb_typeof(p_entity) <> 'object' THEN
        RETURN;
    END IF;
    CASE p_kind
    WHEN 'theater' THEN
        INSERT INTO theaters AS t (id, name, city, address, doc, updated_at, deleted_at)
        VALUES (p_id, p_entity->>'name', p_entity->>'city', p_entity->>'address', p_entity, v_ts, NULL)
        ON CONFLICT (id) DO UPDATE
           SET name = EXCLUDED.name, city = EXCLUDED.city, address = EXCLUDED.address,
               doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at, deleted_at = NULL
         WHERE v_force OR t.doc IS DISTINCT FROM EXCLUDED.doc OR t.deleted_at IS NOT NULL;
    WHEN 'screen' THEN
        INSERT INTO screens AS t (id, theater_id, name, seat_count, doc, updated_at, deleted_at)
        VALUES (p_id, (p_entity->>'theater_id')::bigint, p_entity->>'name',
                (SELECT sum((r->>'seats')::integer)::integer
                   FROM jsonb_array_elements(CASE jsonb_typeof(p_entity->'layout'->'rows')
                                             WHEN 'array' THEN p_entity->'layout'->'rows'
                                             ELSE '[]'::jsonb END) AS r),
                p_entity, v_ts, NULL)
        ON CONFLICT (id) DO UPDATE
           SET theater_id = EXCLUDED.theater_id, name = EXCLUDED.name,
               seat_count = EXCLUDED.seat_count, doc = EXCLUDED.doc,
               updated_at = EXCLUDED.updated_at, deleted_at = NULL
         WHERE v_force OR t.doc IS DISTINCT FROM EXCLUDED.doc OR t.deleted_at IS NOT NULL;
    WHEN 'movie' THEN
        INSERT INTO movies AS t (id, title, genre, language, duration_min, doc, updated_at, deleted_at)
        VALUES (p_id, p_entity->>'title', p_entity->>'genre', p_entity->>'language',
                (p_entity->>'duration_min')::integer, p_entity, v_ts, NULL)
        ON CONFLICT (id) DO UPDATE
           SET title = EXCLUDED.title, genre = EXCLUDED.genre, language = EXCLUDED.language,
               duration_min = EXCLUDED.duration_min, doc = EXCLUDED.doc,
               updated_at = EXCLUDED.updated_at, deleted_at = NULL
         WHERE v_force OR t.doc IS DISTINCT FROM EXCLUDED.doc OR t.deleted_at IS NOT NULL;
    WHEN 'showtime' THEN
        -- Only the catalog's columns: layout_id, prices and seat_count come from showtime.opened.
        INSERT INTO showtimes AS t (id, shard, movie_id, screen_id, theater_id, starts_at, doc,
                                    updated_at, deleted_at)
        VALUES (p_id, p_shard, (p_entity->>'movie_id')::bigint, (p_entity->>'screen_id')::bigint,
                (p_entity->>'theater_id')::bigint,
                coalesce((p_entity->>'start_time')::timestamptz,
                         to_timestamp((p_entity->>'start_ms')::numeric / 1000)),
                p_entity, v_ts, NULL)
        ON CONFLICT (id) DO UPDATE
           SET shard = EXCLUDED.shard, movie_id = EXCLUDED.movie_id,
               screen_id = EXCLUDED.screen_id, theater_id = EXCLUDED.theater_id,
               starts_at = coalesce(EXCLUDED.starts_at, t.starts_at), doc = EXCLUDED.doc,
               updated_at = EXCLUDED.updated_at, deleted_at = NULL
         WHERE v_force OR t.doc IS DISTINCT FROM EXCLUDED.doc OR t.deleted_at IS NOT NULL;
    WHEN 'user' THEN
        INSERT INTO users AS t (id, name, email, role, created_at, updated_at, deleted_at)
        VALUES (p_id, p_entity->>'name', p_entity->>'email', p_entity->>'role',
                (p_entity->>'created_at')::timestamptz, v_ts, NULL)
        ON CONFLICT (id) DO UPDATE
           SET name = EXCLUDED.name, email = EXCLUDED.email, role = EXCLUDED.role,
               created_at = coalesce(EXCLUDED.created_at, t.created_at),
               updated_at = EXCLUDED.updated_at, deleted_at = NULL
         WHERE v_force OR t.name IS DISTINCT FROM EXCLUDED.name
               OR t.email IS DISTINCT FROM EXCLUDED.email OR t.role IS DISTINCT FROM EXCLUDED.role
               OR t.deleted_at IS NOT NULL;
    ELSE
        NULL;
    END CASE;
END
$$;

-- catalog.delete: a soft delete (deleted_at = the event's time). A row never seen is left alone.
CREATE FUNCTION usher_catalog_delete(p_kind text, p_id bigint, p_ts timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CASE p_kind
    WHEN 'theater'  THEN UPDATE theaters  SET deleted_at = p_ts WHERE id = p_id;
    WHEN 'screen'   THEN UPDATE screens   SET deleted_at = p_ts WHERE id = p_id;
    WHEN 'movie'    THEN UPDATE movies    SET deleted_at = p_ts WHERE id = p_id;
    WHEN 'showtime' THEN UPDATE showtimes SET deleted_at = p_ts WHERE id = p_id;
    WHEN 'user'     THEN UPDATE users     SET deleted_at = p_ts WHERE id = p_id;
    ELSE NULL;
    END CASE;
END
$$;

-- layout.created / snapshot.layout.
CREATE FUNCTION usher_layout_upsert(p_shard integer, p_data jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO layouts (shard, id, categories, seat_labels, seat_categories)
    VALUES (p_shard, (p_data->>'layout_id')::bigint,
            usher_text_array(p_data->'categories'),
            usher_text_array(p_data->'seat_labels'),
            ARRAY(SELECT x::smallint FROM jsonb_array_elements_text(p_data->'seat_categories') AS x))
    ON CONFLICT (shard, id) DO UPDATE
       SET categories = EXCLUDED.categories, seat_labels = EXCLUDED.seat_labels,
           seat_categories = EXCLUDED.seat_categories
$$;

-- showtime.opened / snapshot.showtime: only the engine's columns. seat_count is the layout's
-- number of seats, else the line's own seat_count (snapshot lines carry one), else kept.
CREATE FUNCTION usher_showtime_open(p_shard integer, p_data jsonb, p_ts timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO showtimes AS t (id, shard, layout_id, prices, starts_at, seat_count, updated_at)
    VALUES ((p_data->>'showtime_id')::bigint, p_shard, (p_data->>'layout_id')::bigint,
            p_data->'prices', (p_data->>'starts_at')::timestamptz,
            coalesce((SELECT cardinality(l.seat_labels) FROM layouts l
                       WHERE l.shard = p_shard AND l.id = (p_data->>'layout_id')::bigint),
                     (p_data->>'seat_count')::integer),
            p_ts)
    ON CONFLICT (id) DO UPDATE
       SET shard = EXCLUDED.shard, layout_id = EXCLUDED.layout_id, prices = EXCLUDED.prices,
           starts_at = coalesce(EXCLUDED.starts_at, t.starts_at),
           seat_count = coalesce(EXCLUDED.seat_count, t.seat_count),
           updated_at = coalesce(EXCLUDED.updated_at, t.updated_at)
$$;

-- ---------------------------------------------------------------------------------------------
-- usher_apply: one batch of events of one shard, exactly once.
--
-- Locks the shard's export_state row, checks the whole batch first (format version 1, the
-- shard, LSNs export_state.lsn + 1, + 2, ...; any mismatch raises UR001 and the caller's
-- transaction fails as a whole), applies each event with static statements, records every event
-- in booking_events and moves export_state.lsn to the last LSN. Returns the shard's LSN after
-- the batch (unchanged for an empty array).
CREATE FUNCTION usher_apply(p_shard integer, p_events jsonb)
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
        WHEN 'booking.reserved' THEN
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
                                  currency, status, reserved_at, expires_at)
            VALUES ((d->>'hold_id')::bigint, p_shard, v_st, (d->>'user_id')::bigint, v_seats,
                    v_slabels, (d->>'amount')::bigint, coalesce(d->>'currency', 'INR'), 'held',
                    v_ts, (d->>'expires_at')::timestamptz);
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
-- Snapshot bootstrap: usher_snapshot_begin, usher_snapshot_rows (any number of calls),
-- usher_snapshot_end, in one transaction.

CREATE FUNCTION usher_snapshot_begin(p_shard integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_shard IS NULL THEN
        RAISE EXCEPTION 'usher_snapshot_begin: shard is NULL' USING ERRCODE = '22023';
    END IF;
    INSERT INTO export_state (shard) VALUES (p_shard) ON CONFLICT (shard) DO NOTHING;
    PERFORM 1 FROM export_state WHERE shard = p_shard FOR UPDATE;
    -- What the snapshot listed: catalog entities by kind, holds (kind 'hold'), layouts.
    IF to_regclass('pg_temp.usher_snapshot_seen') IS NULL THEN
        CREATE TEMP TABLE usher_snapshot_seen (
            kind text   NOT NULL,
            id   bigint NOT NULL,
            PRIMARY KEY (kind, id)
        ) ON COMMIT DROP;
    ELSE
        TRUNCATE usher_snapshot_seen;   -- a second begin in the same transaction starts over
    END IF;
    PERFORM set_config('usher.snapshot_shard', p_shard::text, true);   -- until the transaction ends
END
$$;

CREATE FUNCTION usher_snapshot_check(p_fn text, p_shard integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_shard IS NULL OR coalesce(current_setting('usher.snapshot_shard', true), '') <> p_shard::text
       OR to_regclass('pg_temp.usher_snapshot_seen') IS NULL THEN
        RAISE EXCEPTION '%: no usher_snapshot_begin(%) in this transaction', p_fn, p_shard
            USING ERRCODE = 'UR003';
    END IF;
END
$$;

-- p_rows: an array of snapshot lines (snapshot.catalog, .layout, .showtime, .hold, .booking;
-- snapshot.begin / snapshot.end lines and unknown types are skipped). Returns the number of
-- lines applied.
CREATE FUNCTION usher_snapshot_rows(p_shard integer, p_rows jsonb)
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
            INSERT INTO bookings AS b (hold_id, shard, showtime_id, user_id, seats, seat_labels,
                                       amount, currency, status, reserved_at, expires_at)
            VALUES ((d->>'hold_id')::bigint, p_shard, v_st, (d->>'user_id')::bigint, v_seats,
                    v_slabels, (d->>'amount')::bigint, coalesce(d->>'currency', 'INR'), 'held',
                    (d->>'reserved_at')::timestamptz, (d->>'expires_at')::timestamptz)
            ON CONFLICT (hold_id) DO UPDATE
               SET status = 'held', ended_at = NULL,
                   reserved_at = coalesce(EXCLUDED.reserved_at, b.reserved_at),
                   expires_at = EXCLUDED.expires_at,
                   seat_labels = coalesce(b.seat_labels, EXCLUDED.seat_labels);
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

-- Ends a bootstrap: what the snapshot did not list is gone.
--   catalog rows of the kinds this shard carries (shard 0: theaters, screens, movies, users and
--   its showtimes; shard k > 0: its showtimes) get deleted_at = now() if not deleted already;
--   layouts of this shard are deleted;
--   holds of this shard still 'held' become 'lapsed' (ended_at = now()): they ended in events
--   this database never saw.
-- Then export_state.lsn = snapshot_lsn = p_lsn. Refuses (UR002) to move the LSN backwards.
CREATE FUNCTION usher_snapshot_end(p_shard integer, p_lsn bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_lsn bigint;
BEGIN
    PERFORM usher_snapshot_check('usher_snapshot_end', p_shard);
    SELECT lsn INTO v_lsn FROM export_state WHERE shard = p_shard FOR UPDATE;
    IF p_lsn IS NULL OR p_lsn < v_lsn THEN
        RAISE EXCEPTION 'usher_snapshot_end: shard %: snapshot LSN % is older than the applied LSN %',
            p_shard, coalesce(p_lsn::text, 'NULL'), v_lsn
            USING ERRCODE = 'UR002',
                  HINT = 'stream from export_state.lsn + 1 instead; a bootstrap never goes backwards';
    END IF;

    IF p_shard = 0 THEN
        UPDATE theaters SET deleted_at = now()
         WHERE deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'theater' AND s.id = theaters.id);
        UPDATE screens SET deleted_at = now()
         WHERE deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'screen' AND s.id = screens.id);
        UPDATE movies SET deleted_at = now()
         WHERE deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'movie' AND s.id = movies.id);
        UPDATE users SET deleted_at = now()
         WHERE deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'user' AND s.id = users.id);
    END IF;
    UPDATE showtimes SET deleted_at = now()
     WHERE shard = p_shard AND deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'showtime' AND s.id = showtimes.id);

    DELETE FROM layouts
     WHERE shard = p_shard
       AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'layout' AND s.id = layouts.id);

    UPDATE bookings SET status = 'lapsed', ended_at = now()
     WHERE shard = p_shard AND status = 'held'
       AND NOT EXISTS (SELECT 1 FROM usher_snapshot_seen s WHERE s.kind = 'hold' AND s.id = bookings.hold_id);

    UPDATE export_state
       SET lsn = p_lsn, snapshot_lsn = p_lsn, updated_at = now()
     WHERE shard = p_shard;
END
$$;

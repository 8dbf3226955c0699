-- usher-pgexport, migration 001: the core tables.
--
-- The exporter runs this file once, inside one transaction, and records its version in
-- schema_migrations (a table the exporter creates itself). See docs/analytics.md for what each
-- table holds and docs/replication.md for the event stream that fills them.
--
-- There are no foreign keys on purpose: the streams of different shards arrive in any order
-- (a booking's showtime may be known before its movie, its user only later), and a snapshot's
-- catalog may be newer than its seat state. Money columns are in minor units (paise).

-- Per shard: the last LSN applied. Updated in the same transaction as the effects of the events
-- (usher_apply), which is what makes the export exactly-once.
CREATE TABLE export_state (
    shard        integer PRIMARY KEY,
    lsn          bigint      NOT NULL DEFAULT 0,
    snapshot_lsn bigint      NOT NULL DEFAULT 0,
    events       bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Catalog. doc is the entity as the stream sent it (catalog.upsert's data.entity); the other
-- columns are copied out of it. A catalog.delete only sets deleted_at: history keeps its names.
CREATE TABLE theaters (
    id         bigint PRIMARY KEY,
    name       text,
    city       text,
    address    text,
    doc        jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz
);

CREATE TABLE screens (
    id         bigint PRIMARY KEY,
    theater_id bigint,
    name       text,
    seat_count integer,          -- sum of doc.layout.rows[].seats (blocked seats included)
    doc        jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz
);

CREATE TABLE movies (
    id           bigint PRIMARY KEY,
    title        text,
    genre        text,
    language     text,
    duration_min integer,
    doc          jsonb       NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz
);

-- Filled from two sources, in either order: catalog.upsert (doc, movie_id, screen_id,
-- theater_id, starts_at) and showtime.opened (layout_id, prices, starts_at, seat_count).
CREATE TABLE showtimes (
    id         bigint PRIMARY KEY,
    shard      integer NOT NULL,
    movie_id   bigint,
    screen_id  bigint,
    theater_id bigint,
    starts_at  timestamptz,
    layout_id  bigint,
    seat_count integer,          -- number of seats of the layout
    prices     jsonb,            -- showtime.opened's array: price of each category, by index
    doc        jsonb,
    updated_at timestamptz,
    deleted_at timestamptz
);

-- No password hash: the stream never sends one.
CREATE TABLE users (
    id         bigint PRIMARY KEY,
    name       text,
    email      text,
    role       text,
    created_at timestamptz,
    updated_at timestamptz,
    deleted_at timestamptz
);

-- Seat layouts as the engine of a shard knows them (layout.created). seat_labels[i + 1] and
-- seat_categories[i + 1] describe seat index i; a category is an index into categories
-- (0-based, as in the stream).
CREATE TABLE layouts (
    shard           integer,
    id              bigint,
    categories      text[]     NOT NULL,
    seat_labels     text[]     NOT NULL,
    seat_categories smallint[] NOT NULL,
    PRIMARY KEY (shard, id)
);

-- One row per hold: a reservation, whatever became of it.
--   held      placed, not ended (yet)            released  the user let it go
--   expired   its time ran out                   confirmed became a booking (booking_id)
--   cancelled a booking that was cancelled       lapsed    a hold a snapshot bootstrap no longer
--                                                          listed (it ended in events never seen)
CREATE TABLE bookings (
    hold_id      bigint PRIMARY KEY,
    booking_id   bigint UNIQUE,
    shard        integer   NOT NULL,
    showtime_id  bigint    NOT NULL,
    user_id      bigint    NOT NULL,
    seats        integer[] NOT NULL,   -- seat indexes (0-based) into the showtime's layout
    seat_labels  text[],               -- their labels, when the layout was known at insert
    amount       bigint    NOT NULL,
    refund       bigint    NOT NULL DEFAULT 0,
    currency     text      NOT NULL DEFAULT 'INR',
    method       text,
    status       text      NOT NULL
                 CHECK (status IN ('held', 'released', 'expired', 'confirmed', 'cancelled', 'lapsed')),
    reserved_at  timestamptz,
    expires_at   timestamptz,
    ended_at     timestamptz,
    confirmed_at timestamptz,
    cancelled_at timestamptz
);

-- Every event line of the stream, catalog ones too, as received.
CREATE TABLE booking_events (
    shard      integer     NOT NULL,
    lsn        bigint      NOT NULL,
    ts         timestamptz NOT NULL,
    type       text        NOT NULL,
    hold_id    bigint,
    booking_id bigint,
    data       jsonb       NOT NULL,
    PRIMARY KEY (shard, lsn)
);

CREATE INDEX bookings_showtime_idx     ON bookings (showtime_id);
CREATE INDEX bookings_user_idx         ON bookings (user_id);
CREATE INDEX bookings_confirmed_at_idx ON bookings (confirmed_at);
CREATE INDEX bookings_reserved_at_idx  ON bookings (reserved_at);
CREATE INDEX bookings_held_idx         ON bookings (shard) WHERE status = 'held';
CREATE INDEX booking_events_type_ts_idx  ON booking_events (type, ts);
CREATE INDEX booking_events_hold_idx     ON booking_events (hold_id) WHERE hold_id IS NOT NULL;
CREATE INDEX booking_events_booking_idx  ON booking_events (booking_id) WHERE booking_id IS NOT NULL;
CREATE INDEX showtimes_movie_idx   ON showtimes (movie_id);
CREATE INDEX showtimes_theater_idx ON showtimes (theater_id);
CREATE INDEX showtimes_shard_idx   ON showtimes (shard);
CREATE INDEX screens_theater_idx   ON screens (theater_id);

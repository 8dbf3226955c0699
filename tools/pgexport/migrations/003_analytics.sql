-- usher-pgexport, migration 003: the views of the admin dashboard.
--
-- Definitions used throughout (docs/analytics.md explains them):
--   a sale      a bookings row with status 'confirmed' or 'cancelled' (a hold that was paid for;
--               a cancelled booking stays a sale, its refund is subtracted);
--   gross       sum of the sales' amount; refunds: sum of their refund; net = gross - refunds;
--   tickets     number of seats of those sales;
--   a sale is counted on the day/hour of its confirmed_at (refunds too: by the sale they undo).
-- Money is in minor units (paise). Day, week (ISO, Monday) and month buckets, isodow and hour use
-- the session's TimeZone: run SET TIME ZONE 'Asia/Kolkata' first for Indian calendar days.
-- Ratios are numeric, rounded to 4 decimals; averages of money to 2 decimals.

CREATE VIEW revenue_daily AS
SELECT date_trunc('day', b.confirmed_at)      AS bucket,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net
  FROM bookings b
 WHERE b.status IN ('confirmed', 'cancelled') AND b.confirmed_at IS NOT NULL
 GROUP BY 1;

CREATE VIEW revenue_weekly AS
SELECT date_trunc('week', b.confirmed_at)     AS bucket,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net
  FROM bookings b
 WHERE b.status IN ('confirmed', 'cancelled') AND b.confirmed_at IS NOT NULL
 GROUP BY 1;

CREATE VIEW revenue_monthly AS
SELECT date_trunc('month', b.confirmed_at)    AS bucket,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net
  FROM bookings b
 WHERE b.status IN ('confirmed', 'cancelled') AND b.confirmed_at IS NOT NULL
 GROUP BY 1;

-- Sales whose showtime (or its movie, theater) is not known yet are grouped under NULL ids.
CREATE VIEW revenue_by_movie AS
SELECT s.movie_id,
       m.title,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN movies m    ON m.id = s.movie_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY s.movie_id, m.title;

CREATE VIEW revenue_by_theater AS
SELECT s.theater_id,
       t.name                                 AS theater,
       t.city,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN theaters t  ON t.id = s.theater_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY s.theater_id, t.name, t.city;

CREATE VIEW revenue_by_genre AS
SELECT m.genre,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN movies m    ON m.id = s.movie_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY m.genre;

-- One row. avg_price: gross per ticket (the price paid); avg_net_price: net per ticket.
CREATE VIEW avg_ticket_price AS
SELECT count(*)                                                        AS bookings,
       coalesce(sum(cardinality(b.seats)), 0)                          AS tickets,
       coalesce(sum(b.amount), 0)::bigint                              AS gross,
       coalesce(sum(b.amount - b.refund), 0)::bigint                   AS net,
       round(sum(b.amount) / nullif(sum(cardinality(b.seats)), 0), 2)  AS avg_price,
       round(sum(b.amount - b.refund) / nullif(sum(cardinality(b.seats)), 0), 2) AS avg_net_price
  FROM bookings b
 WHERE b.status IN ('confirmed', 'cancelled');

CREATE VIEW avg_ticket_price_by_movie AS
SELECT s.movie_id,
       m.title,
       count(*)                                                        AS bookings,
       sum(cardinality(b.seats))                                       AS tickets,
       round(sum(b.amount) / nullif(sum(cardinality(b.seats)), 0), 2)  AS avg_price,
       round(sum(b.amount - b.refund) / nullif(sum(cardinality(b.seats)), 0), 2) AS avg_net_price
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN movies m    ON m.id = s.movie_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY s.movie_id, m.title;

-- sold: seats of confirmed bookings (a cancelled booking's seats are free again);
-- held: seats of holds still 'held' whose expires_at is in the future (now()).
CREATE VIEW occupancy_by_showtime AS
SELECT s.id                                   AS showtime_id,
       s.movie_id,
       m.title,
       s.theater_id,
       t.name                                 AS theater,
       s.starts_at,
       s.seat_count,
       coalesce(x.sold, 0)                    AS sold,
       coalesce(x.held, 0)                    AS held,
       round(coalesce(x.sold, 0)::numeric / nullif(s.seat_count, 0), 4) AS occupancy
  FROM showtimes s
  LEFT JOIN movies m   ON m.id = s.movie_id
  LEFT JOIN theaters t ON t.id = s.theater_id
  LEFT JOIN (SELECT b.showtime_id,
                    sum(cardinality(b.seats)) FILTER (WHERE b.status = 'confirmed') AS sold,
                    sum(cardinality(b.seats)) FILTER (WHERE b.status = 'held'
                                                        AND b.expires_at > now())   AS held
               FROM bookings b
              GROUP BY b.showtime_id) x ON x.showtime_id = s.id;

-- Holds placed that day (by reserved_at; holds a snapshot brought have none and are left out)
-- and how many of them became bookings, whenever that happened.
CREATE VIEW conversion_daily AS
SELECT date_trunc('day', b.reserved_at)       AS day,
       count(*)                               AS reserved,
       count(*) FILTER (WHERE b.status IN ('confirmed', 'cancelled')) AS confirmed,
       round((count(*) FILTER (WHERE b.status IN ('confirmed', 'cancelled')))::numeric
             / count(*), 4)                   AS rate
  FROM bookings b
 WHERE b.reserved_at IS NOT NULL
 GROUP BY 1;

CREATE VIEW conversion_by_movie AS
SELECT s.movie_id,
       m.title,
       count(*)                               AS reserved,
       count(*) FILTER (WHERE b.status IN ('confirmed', 'cancelled')) AS confirmed,
       round((count(*) FILTER (WHERE b.status IN ('confirmed', 'cancelled')))::numeric
             / count(*), 4)                   AS rate
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN movies m    ON m.id = s.movie_id
 WHERE b.reserved_at IS NOT NULL
 GROUP BY s.movie_id, m.title;

-- Of the sales, how many were cancelled, and what the refunds gave back.
CREATE VIEW cancellation_rate_by_movie AS
SELECT s.movie_id,
       m.title,
       count(*)                                            AS bookings,
       count(*) FILTER (WHERE b.status = 'cancelled')      AS cancelled,
       round((count(*) FILTER (WHERE b.status = 'cancelled'))::numeric / count(*), 4) AS rate,
       sum(b.refund)::bigint                               AS refunds
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN movies m    ON m.id = s.movie_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY s.movie_id, m.title;

CREATE VIEW cancellation_rate_by_theater AS
SELECT s.theater_id,
       t.name                                              AS theater,
       t.city,
       count(*)                                            AS bookings,
       count(*) FILTER (WHERE b.status = 'cancelled')      AS cancelled,
       round((count(*) FILTER (WHERE b.status = 'cancelled'))::numeric / count(*), 4) AS rate,
       sum(b.refund)::bigint                               AS refunds
  FROM bookings b
  LEFT JOIN showtimes s ON s.id = b.showtime_id
  LEFT JOIN theaters t  ON t.id = s.theater_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY s.theater_id, t.name, t.city;

-- isodow: 1 = Monday ... 7 = Sunday; hour 0..23; only hours that had a confirmation.
CREATE VIEW peak_booking_hours AS
SELECT extract(isodow FROM b.confirmed_at)::integer AS isodow,
       extract(hour FROM b.confirmed_at)::integer   AS hour,
       count(*)                                     AS confirmations,
       sum(cardinality(b.seats))                    AS tickets
  FROM bookings b
 WHERE b.status IN ('confirmed', 'cancelled') AND b.confirmed_at IS NOT NULL
 GROUP BY 1, 2;

-- Per day: customers with a sale that day; new ones (their first sale ever is that day) and
-- returning ones (they had a sale on an earlier day).
CREATE VIEW customers_new_vs_returning AS
WITH sales AS (
    SELECT b.user_id, b.confirmed_at
      FROM bookings b
     WHERE b.status IN ('confirmed', 'cancelled') AND b.confirmed_at IS NOT NULL
), firsts AS (
    SELECT user_id, date_trunc('day', min(confirmed_at)) AS first_day
      FROM sales GROUP BY user_id
), days AS (
    SELECT DISTINCT date_trunc('day', confirmed_at) AS day, user_id FROM sales
)
SELECT d.day,
       count(*)                                      AS customers,
       count(*) FILTER (WHERE f.first_day = d.day)   AS new_customers,
       count(*) FILTER (WHERE f.first_day < d.day)   AS returning_customers
  FROM days d
  JOIN firsts f USING (user_id)
 GROUP BY d.day;

CREATE VIEW user_lifetime_value AS
SELECT b.user_id,
       u.name,
       u.email,
       count(*)                               AS bookings,
       sum(cardinality(b.seats))              AS tickets,
       sum(b.amount)::bigint                  AS gross,
       sum(b.refund)::bigint                  AS refunds,
       sum(b.amount - b.refund)::bigint       AS net,
       min(b.confirmed_at)                    AS first_booking,
       max(b.confirmed_at)                    AS last_booking
  FROM bookings b
  LEFT JOIN users u ON u.id = b.user_id
 WHERE b.status IN ('confirmed', 'cancelled')
 GROUP BY b.user_id, u.name, u.email;

CREATE VIEW top_users AS
SELECT *
  FROM user_lifetime_value
 ORDER BY net DESC, user_id
 LIMIT 100;

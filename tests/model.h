/*
 * model.h - a deliberately naive reference model of the seat engine.
 *
 * The model exists to be obviously right, not fast: one byte of state per
 * seat, plain arrays, linear scans and brute force everywhere. It is written
 * from the contract in engine/engine.h (and the semantics the model test
 * documents), never from the engine's code, and it uses only the engine's
 * public types so results and records can be compared field by field.
 *
 * Every mutation mirrors its engine_* counterpart: same arguments, same
 * result codes in the same refusal order, the same record on success.
 * A LAYOUT_CREATE record from the model carries no blob (the canonical
 * encoding is the engine's business); only its type, time and id compare.
 */
#ifndef USHER_TEST_MODEL_H
#define USHER_TEST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

typedef struct model model;

/** A model with a copy of `cfg`; NULL on allocation failure. */
model *model_create(const engine_config *cfg);
void model_destroy(model *m);

const engine_config *model_config(const model *m);
int64_t model_now_ms(const model *m);

/* ---- Mutations (mirror engine.h) ---------------------------------------- */

engine_result model_layout_create(model *m, int64_t now_ms, uint64_t layout_id,
                                  const engine_layout_spec *spec, engine_record *rec);
engine_result model_layout_delete(model *m, int64_t now_ms, uint64_t layout_id, engine_record *rec);
engine_result model_showtime_create(model *m, int64_t now_ms, uint64_t showtime_id,
                                    uint64_t layout_id, int64_t start_ms, const uint32_t *prices,
                                    uint32_t price_count, engine_record *rec);
engine_result model_showtime_delete(model *m, int64_t now_ms, uint64_t showtime_id,
                                    engine_record *rec);
engine_result model_hold_place(model *m, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                               const uint32_t *seats, uint32_t seat_count, uint32_t *conflicts,
                               uint32_t *conflict_count, engine_record *rec);
engine_result model_hold_best(model *m, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                              uint32_t count, uint32_t category, uint32_t options,
                              engine_record *rec);
engine_result model_hold_extend(model *m, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                engine_record *rec);
engine_result model_hold_release(model *m, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                 engine_record *rec);
size_t model_holds_expire(model *m, int64_t now_ms, engine_record *recs, engine_hold_info *expired,
                          size_t cap);
engine_result model_booking_confirm(model *m, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                    engine_payment payment, const char *idem_key,
                                    uint32_t idem_key_len, uint64_t *booking_id, bool *replayed,
                                    engine_record *rec);
engine_result model_booking_cancel(model *m, int64_t now_ms, uint64_t booking_id, uint64_t user_id,
                                   uint64_t *refund, engine_record *rec);

/** Refund policy of `cfg`, computed the long way. */
uint64_t model_refund(const engine_config *cfg, uint64_t amount, int64_t before_start_ms);

/* ---- Queries (mirror engine.h) ------------------------------------------ */

uint32_t model_layout_seat_count(const model *m, uint64_t layout_id);
int32_t model_layout_seat_find(const model *m, uint64_t layout_id, const char *label);
const engine_seat_spec *model_layout_seat(const model *m, uint64_t layout_id, uint32_t seat);
const char *model_layout_row_label(const model *m, uint64_t layout_id, uint32_t row);
uint32_t model_layout_row_count(const model *m, uint64_t layout_id);
uint32_t model_layout_category_count(const model *m, uint64_t layout_id);
const char *model_layout_category_name(const model *m, uint64_t layout_id, uint32_t cat);

bool model_showtime_get(const model *m, uint64_t showtime_id, uint64_t *layout_id,
                        int64_t *start_ms, uint32_t *prices);
int model_seat_state_get(const model *m, uint64_t showtime_id, uint32_t seat);
/** The showtime's seat states (one byte each) and their number; NULL if unknown. */
const uint8_t *model_seatmap(const model *m, uint64_t showtime_id, uint32_t *seat_count);
int32_t model_availability_get(const model *m, uint64_t showtime_id,
                               engine_category_counts *counts);

int64_t model_holds_next_expiry_ms(const model *m);
uint32_t model_holds_live(const model *m);
bool model_hold_get(const model *m, uint64_t hold_id, engine_hold_info *out);
bool model_booking_get(const model *m, uint64_t booking_id, engine_booking_info *out);
uint32_t model_user_holds(const model *m, uint64_t user_id, uint32_t offset, uint64_t *ids,
                          uint32_t cap);
uint32_t model_user_bookings(const model *m, uint64_t user_id, uint32_t offset, uint64_t *ids,
                             uint32_t cap);

/* ---- Enumeration, for the test's operation generator --------------------- */

size_t model_layout_count(const model *m);
uint64_t model_layout_id_at(const model *m, size_t i);
size_t model_showtime_count(const model *m);
uint64_t model_showtime_id_at(const model *m, size_t i);
/** Live holds in no particular order (the order changes as holds end). */
uint64_t model_live_hold_at(const model *m, size_t i);
/** Sequence numbers handed out so far: ids 1..n (with the prefix) were issued. */
uint64_t model_holds_issued(const model *m);
uint64_t model_bookings_issued(const model *m);
uint64_t model_hold_id(const model *m, uint64_t seq);
uint64_t model_booking_id(const model *m, uint64_t seq);
/** The user who placed hold seq / made booking seq (issued ones only). */
uint64_t model_hold_user(const model *m, uint64_t seq);
const engine_booking_info *model_booking_at(const model *m, uint64_t seq);

#endif /* USHER_TEST_MODEL_H */

/*
 * record.c - the stable binary encoding of engine records, and names.
 *
 * Encoding, version 1, little-endian: u8 version | u8 type | i64 time_ms |
 * fields of the type in declaration order (see engine_record in engine.h);
 * arrays are a u8 count followed by the elements. Decoding accepts exactly
 * one record: short input, trailing bytes and out-of-range values are errors.
 */
#include "engine_internal.h"

#include <string.h>

#define RECORD_VERSION 1

const char *engine_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case ENGINE_ENOMEM:
        return "out of memory";
    case ENGINE_EINVAL:
        return "invalid argument";
    case ENGINE_EDECODE:
        return "malformed engine record";
    case ENGINE_EREPLAY:
        return "record does not apply to the current engine state";
    case ENGINE_EBUFSIZE:
        return "buffer too small";
    default:
        return "unknown engine error";
    }
}

static const char *const result_names[ENGINE_RESULT_COUNT_] = {
    [ENGINE_OK] = "ok",
    [ENGINE_SEAT_TAKEN] = "seat_taken",
    [ENGINE_SEAT_BLOCKED] = "seat_blocked",
    [ENGINE_NOT_AVAILABLE] = "not_available",
    [ENGINE_UNKNOWN_SEAT] = "unknown_seat",
    [ENGINE_DUPLICATE_SEAT] = "duplicate_seat",
    [ENGINE_BAD_COUNT] = "bad_count",
    [ENGINE_UNKNOWN_CATEGORY] = "unknown_category",
    [ENGINE_UNKNOWN_SHOWTIME] = "unknown_showtime",
    [ENGINE_UNKNOWN_LAYOUT] = "unknown_layout",
    [ENGINE_UNKNOWN_HOLD] = "unknown_hold",
    [ENGINE_HOLD_EXPIRED] = "hold_expired",
    [ENGINE_HOLD_ENDED] = "hold_ended",
    [ENGINE_HOLD_EXTEND_LIMIT] = "hold_extend_limit",
    [ENGINE_UNKNOWN_BOOKING] = "unknown_booking",
    [ENGINE_BOOKING_CANCELLED] = "booking_cancelled",
    [ENGINE_NOT_OWNER] = "not_owner",
    [ENGINE_SHOW_STARTED] = "show_started",
    [ENGINE_BAD_PAYMENT] = "bad_payment",
    [ENGINE_BAD_IDEM_KEY] = "bad_idempotency_key",
    [ENGINE_IDEM_KEY_REUSED] = "idempotency_key_reused",
    [ENGINE_TIME_BACKWARDS] = "time_backwards",
    [ENGINE_EXISTS] = "exists",
    [ENGINE_BAD_LAYOUT] = "bad_layout",
    [ENGINE_BAD_PRICES] = "bad_prices",
    [ENGINE_LAYOUT_IN_USE] = "layout_in_use",
    [ENGINE_SHOWTIME_IN_USE] = "showtime_in_use",
    [ENGINE_CAPACITY] = "capacity",
    [ENGINE_SEATS_AVAILABLE] = "seats_available",
    [ENGINE_ALREADY_WAITING] = "already_waiting",
    [ENGINE_NOT_WAITING] = "not_waiting",
    [ENGINE_NO_QUEUE] = "no_queue",
    [ENGINE_QUEUE_STARTED] = "queue_started",
};

const char *engine_result_name(engine_result r)
{
    if ((unsigned)r >= ENGINE_RESULT_COUNT_ || result_names[r] == NULL)
        return "unknown";
    return result_names[r];
}

const char *engine_record_type_name(engine_record_type t)
{
    switch (t) {
    case ENGINE_REC_LAYOUT_CREATE:
        return "layout_create";
    case ENGINE_REC_LAYOUT_DELETE:
        return "layout_delete";
    case ENGINE_REC_SHOWTIME_CREATE:
        return "showtime_create";
    case ENGINE_REC_SHOWTIME_DELETE:
        return "showtime_delete";
    case ENGINE_REC_HOLD_PLACE:
        return "hold_place";
    case ENGINE_REC_HOLD_EXTEND:
        return "hold_extend";
    case ENGINE_REC_HOLD_RELEASE:
        return "hold_release";
    case ENGINE_REC_HOLD_EXPIRE:
        return "hold_expire";
    case ENGINE_REC_BOOKING_CONFIRM:
        return "booking_confirm";
    case ENGINE_REC_BOOKING_CANCEL:
        return "booking_cancel";
    case ENGINE_REC_SHOWTIME_PRICE:
        return "showtime_price";
    case ENGINE_REC_WAITLIST_JOIN:
        return "waitlist_join";
    case ENGINE_REC_WAITLIST_LEAVE:
        return "waitlist_leave";
    case ENGINE_REC_WAITLIST_OFFER:
        return "waitlist_offer";
    case ENGINE_REC_QUEUE_SET:
        return "queue_set";
    case ENGINE_REC_QUEUE_JOIN:
        return "queue_join";
    case ENGINE_REC_QUEUE_LEAVE:
        return "queue_leave";
    case ENGINE_REC_QUEUE_START:
        return "queue_start";
    case ENGINE_REC_QUEUE_ADMIT:
        return "queue_admit";
    }
    return "unknown";
}

int engine_record_encode(const engine_record *rec, uint8_t *buf, size_t cap)
{
    engine__wbuf w = {.p = buf, .cap = cap};
    engine__put_u8(&w, RECORD_VERSION);
    engine__put_u8(&w, (uint8_t)rec->type);
    engine__put_u64(&w, (uint64_t)rec->time_ms);
    switch (rec->type) {
    case ENGINE_REC_LAYOUT_CREATE:
        if (rec->u.layout_create.blob == NULL && rec->u.layout_create.blob_len != 0)
            return ENGINE_EINVAL;
        engine__put_u64(&w, rec->u.layout_create.layout_id);
        engine__put_u32(&w, rec->u.layout_create.blob_len);
        engine__put_bytes(&w, rec->u.layout_create.blob, rec->u.layout_create.blob_len);
        break;
    case ENGINE_REC_LAYOUT_DELETE:
        engine__put_u64(&w, rec->u.layout_delete.layout_id);
        break;
    case ENGINE_REC_SHOWTIME_CREATE:
        if (rec->u.showtime_create.price_count > ENGINE_CATEGORIES_MAX)
            return ENGINE_EINVAL;
        engine__put_u64(&w, rec->u.showtime_create.showtime_id);
        engine__put_u64(&w, rec->u.showtime_create.layout_id);
        engine__put_u64(&w, (uint64_t)rec->u.showtime_create.start_ms);
        engine__put_u8(&w, (uint8_t)rec->u.showtime_create.price_count);
        for (uint32_t i = 0; i < rec->u.showtime_create.price_count; i++)
            engine__put_u32(&w, rec->u.showtime_create.prices[i]);
        break;
    case ENGINE_REC_SHOWTIME_DELETE:
        engine__put_u64(&w, rec->u.showtime_delete.showtime_id);
        break;
    case ENGINE_REC_HOLD_PLACE:
    case ENGINE_REC_WAITLIST_OFFER:
        if (rec->u.hold_place.seat_count > ENGINE_HOLD_SEATS_MAX)
            return ENGINE_EINVAL;
        engine__put_u64(&w, rec->u.hold_place.hold_id);
        engine__put_u64(&w, rec->u.hold_place.showtime_id);
        engine__put_u64(&w, rec->u.hold_place.user_id);
        engine__put_u64(&w, (uint64_t)rec->u.hold_place.expires_ms);
        engine__put_u64(&w, rec->u.hold_place.amount);
        engine__put_u8(&w, (uint8_t)rec->u.hold_place.seat_count);
        for (uint32_t i = 0; i < rec->u.hold_place.seat_count; i++)
            engine__put_u32(&w, rec->u.hold_place.seats[i]);
        break;
    case ENGINE_REC_HOLD_EXTEND:
        engine__put_u64(&w, rec->u.hold_extend.hold_id);
        engine__put_u64(&w, (uint64_t)rec->u.hold_extend.expires_ms);
        break;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        engine__put_u64(&w, rec->u.hold_end.hold_id);
        break;
    case ENGINE_REC_BOOKING_CONFIRM:
        if (rec->u.booking_confirm.idem_key_len > ENGINE_IDEM_KEY_MAX)
            return ENGINE_EINVAL;
        engine__put_u64(&w, rec->u.booking_confirm.booking_id);
        engine__put_u64(&w, rec->u.booking_confirm.hold_id);
        engine__put_u8(&w, (uint8_t)rec->u.booking_confirm.payment);
        engine__put_u8(&w, (uint8_t)rec->u.booking_confirm.idem_key_len);
        engine__put_bytes(&w, rec->u.booking_confirm.idem_key, rec->u.booking_confirm.idem_key_len);
        break;
    case ENGINE_REC_BOOKING_CANCEL:
        engine__put_u64(&w, rec->u.booking_cancel.booking_id);
        engine__put_u64(&w, rec->u.booking_cancel.refund);
        break;
    case ENGINE_REC_SHOWTIME_PRICE:
        if (rec->u.showtime_price.price_count > ENGINE_CATEGORIES_MAX)
            return ENGINE_EINVAL;
        engine__put_u64(&w, rec->u.showtime_price.showtime_id);
        engine__put_u8(&w, (uint8_t)rec->u.showtime_price.price_count);
        for (uint32_t i = 0; i < rec->u.showtime_price.price_count; i++)
            engine__put_u32(&w, rec->u.showtime_price.prices[i]);
        break;
    case ENGINE_REC_WAITLIST_JOIN:
        if (rec->u.waitlist_join.count > ENGINE_HOLD_SEATS_MAX ||
            rec->u.waitlist_join.category > ENGINE_CATEGORY_ANY)
            return ENGINE_EINVAL;
        engine__put_u64(&w, rec->u.waitlist_join.showtime_id);
        engine__put_u64(&w, rec->u.waitlist_join.user_id);
        engine__put_u8(&w, (uint8_t)rec->u.waitlist_join.count);
        engine__put_u8(&w, (uint8_t)rec->u.waitlist_join.category);
        break;
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
        engine__put_u64(&w, rec->u.onsale_user.showtime_id);
        engine__put_u64(&w, rec->u.onsale_user.user_id);
        break;
    case ENGINE_REC_QUEUE_SET:
        engine__put_u64(&w, rec->u.queue_set.showtime_id);
        engine__put_u32(&w, rec->u.queue_set.rate_per_s);
        engine__put_u64(&w, (uint64_t)rec->u.queue_set.start_ms);
        break;
    case ENGINE_REC_QUEUE_START:
        engine__put_u64(&w, rec->u.queue_start.showtime_id);
        engine__put_u64(&w, rec->u.queue_start.seed);
        break;
    case ENGINE_REC_QUEUE_ADMIT:
        engine__put_u64(&w, rec->u.queue_admit.showtime_id);
        engine__put_u32(&w, rec->u.queue_admit.cursor);
        engine__put_u64(&w, rec->u.queue_admit.credit_milli);
        break;
    default:
        return ENGINE_EINVAL;
    }
    if (w.overflow)
        return ENGINE_EBUFSIZE;
    ENGINE_ASSERT(w.len <= (size_t)INT32_MAX);
    return (int)w.len;
}

int engine_record_decode(const uint8_t *buf, size_t len, engine_record *rec)
{
    engine__rbuf r = {.p = buf, .len = len};
    engine_record out;
    memset(&out, 0, sizeof(out));
    if (engine__get_u8(&r) != RECORD_VERSION)
        return ENGINE_EDECODE;
    out.type = (engine_record_type)engine__get_u8(&r);
    out.time_ms = (int64_t)engine__get_u64(&r);
    switch (out.type) {
    case ENGINE_REC_LAYOUT_CREATE:
        out.u.layout_create.layout_id = engine__get_u64(&r);
        out.u.layout_create.blob_len = engine__get_u32(&r);
        out.u.layout_create.blob = engine__get_bytes(&r, out.u.layout_create.blob_len);
        break;
    case ENGINE_REC_LAYOUT_DELETE:
        out.u.layout_delete.layout_id = engine__get_u64(&r);
        break;
    case ENGINE_REC_SHOWTIME_CREATE:
        out.u.showtime_create.showtime_id = engine__get_u64(&r);
        out.u.showtime_create.layout_id = engine__get_u64(&r);
        out.u.showtime_create.start_ms = (int64_t)engine__get_u64(&r);
        out.u.showtime_create.price_count = engine__get_u8(&r);
        if (out.u.showtime_create.price_count > ENGINE_CATEGORIES_MAX)
            return ENGINE_EDECODE;
        for (uint32_t i = 0; i < out.u.showtime_create.price_count; i++)
            out.u.showtime_create.prices[i] = engine__get_u32(&r);
        break;
    case ENGINE_REC_SHOWTIME_DELETE:
        out.u.showtime_delete.showtime_id = engine__get_u64(&r);
        break;
    case ENGINE_REC_HOLD_PLACE:
    case ENGINE_REC_WAITLIST_OFFER:
        out.u.hold_place.hold_id = engine__get_u64(&r);
        out.u.hold_place.showtime_id = engine__get_u64(&r);
        out.u.hold_place.user_id = engine__get_u64(&r);
        out.u.hold_place.expires_ms = (int64_t)engine__get_u64(&r);
        out.u.hold_place.amount = engine__get_u64(&r);
        out.u.hold_place.seat_count = engine__get_u8(&r);
        if (out.u.hold_place.seat_count > ENGINE_HOLD_SEATS_MAX)
            return ENGINE_EDECODE;
        for (uint32_t i = 0; i < out.u.hold_place.seat_count; i++)
            out.u.hold_place.seats[i] = engine__get_u32(&r);
        break;
    case ENGINE_REC_HOLD_EXTEND:
        out.u.hold_extend.hold_id = engine__get_u64(&r);
        out.u.hold_extend.expires_ms = (int64_t)engine__get_u64(&r);
        break;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        out.u.hold_end.hold_id = engine__get_u64(&r);
        break;
    case ENGINE_REC_BOOKING_CONFIRM: {
        out.u.booking_confirm.booking_id = engine__get_u64(&r);
        out.u.booking_confirm.hold_id = engine__get_u64(&r);
        uint8_t pay = engine__get_u8(&r);
        if (!r.bad && (pay < ENGINE_PAY_UPI || pay > ENGINE_PAY_WALLET))
            return ENGINE_EDECODE;
        out.u.booking_confirm.payment = (engine_payment)pay;
        out.u.booking_confirm.idem_key_len = engine__get_u8(&r);
        if (out.u.booking_confirm.idem_key_len > ENGINE_IDEM_KEY_MAX)
            return ENGINE_EDECODE;
        const uint8_t *key = engine__get_bytes(&r, out.u.booking_confirm.idem_key_len);
        if (key != NULL && out.u.booking_confirm.idem_key_len > 0)
            memcpy(out.u.booking_confirm.idem_key, key, out.u.booking_confirm.idem_key_len);
        break;
    }
    case ENGINE_REC_BOOKING_CANCEL:
        out.u.booking_cancel.booking_id = engine__get_u64(&r);
        out.u.booking_cancel.refund = engine__get_u64(&r);
        break;
    case ENGINE_REC_SHOWTIME_PRICE:
        out.u.showtime_price.showtime_id = engine__get_u64(&r);
        out.u.showtime_price.price_count = engine__get_u8(&r);
        if (out.u.showtime_price.price_count > ENGINE_CATEGORIES_MAX)
            return ENGINE_EDECODE;
        for (uint32_t i = 0; i < out.u.showtime_price.price_count; i++)
            out.u.showtime_price.prices[i] = engine__get_u32(&r);
        break;
    case ENGINE_REC_WAITLIST_JOIN:
        out.u.waitlist_join.showtime_id = engine__get_u64(&r);
        out.u.waitlist_join.user_id = engine__get_u64(&r);
        out.u.waitlist_join.count = engine__get_u8(&r);
        out.u.waitlist_join.category = engine__get_u8(&r);
        if (out.u.waitlist_join.count > ENGINE_HOLD_SEATS_MAX)
            return ENGINE_EDECODE;
        break;
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
        out.u.onsale_user.showtime_id = engine__get_u64(&r);
        out.u.onsale_user.user_id = engine__get_u64(&r);
        break;
    case ENGINE_REC_QUEUE_SET:
        out.u.queue_set.showtime_id = engine__get_u64(&r);
        out.u.queue_set.rate_per_s = engine__get_u32(&r);
        out.u.queue_set.start_ms = (int64_t)engine__get_u64(&r);
        break;
    case ENGINE_REC_QUEUE_START:
        out.u.queue_start.showtime_id = engine__get_u64(&r);
        out.u.queue_start.seed = engine__get_u64(&r);
        break;
    case ENGINE_REC_QUEUE_ADMIT:
        out.u.queue_admit.showtime_id = engine__get_u64(&r);
        out.u.queue_admit.cursor = engine__get_u32(&r);
        out.u.queue_admit.credit_milli = engine__get_u64(&r);
        break;
    default:
        return ENGINE_EDECODE;
    }
    if (r.bad || r.pos != r.len)
        return ENGINE_EDECODE;
    *rec = out;
    return 0;
}

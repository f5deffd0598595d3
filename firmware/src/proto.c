#include "proto.h"

#include <string.h>

#include "crc32.h"

uint16_t box_max_words_for(size_t max_body)
{
    long room = (long)max_body - (long)BOX_MIN_BODY - (long)BOX_WORDS_HEADER;
    long n;

    if (room <= 0)
        return 0;
    n = room * 8 / 17 + 1;
    if (n > 0xFFFF)
        n = 0xFFFF;
    while (n > 0 && 2 * n + (n + 7) / 8 > room)
        n--;
    return (uint16_t)n;
}

void box_words_at(const box_words_t *w, size_t i, uint16_t *word, uint8_t *parity)
{
    if (w->raw) {
        const uint8_t *p = w->raw + BOX_WORDS_HEADER;
        *word = get_u16(p + 2 * i);
        *parity = (uint8_t)(p[2u * w->count + i / 8] >> (i % 8) & 1u);
    } else {
        *word = w->words[i];
        *parity = (uint8_t)(w->parity[i] & 1u);
    }
}

static long encode_words(const box_words_t *w, uint8_t *out, size_t cap)
{
    size_t n = w->count, i, size = box_words_size(n);
    uint8_t *bits;

    if (size > cap)
        return -1;
    put_u32(out, w->offset);
    put_u16(out + 4, w->count);
    out[6] = w->flags;
    out[7] = 0;
    bits = out + BOX_WORDS_HEADER + 2 * n;
    memset(bits, 0, (n + 7) / 8);
    for (i = 0; i < n; i++) {
        uint16_t word;
        uint8_t p;
        box_words_at(w, i, &word, &p);
        put_u16(out + BOX_WORDS_HEADER + 2 * i, word);
        bits[i / 8] |= (uint8_t)(p << (i % 8));
    }
    return (long)size;
}

/* CONFIGURE's bus-shape fields that differ from the reference; -1 never (the caller
 * leaves room: 9 bytes at most), so the result is their length or 0. */
static size_t encode_shape(const box_config_t *c, uint8_t *out, size_t cap)
{
    size_t n = 0;

    if (c->handshake && n + 3 <= cap) {
        out[n++] = BOX_FIELD_HANDSHAKE;
        out[n++] = 1;
        out[n++] = c->handshake;
    }
    if (c->absent_lines && n + 3 <= cap) {
        out[n++] = BOX_FIELD_ABSENT_LINES;
        out[n++] = 1;
        out[n++] = c->absent_lines;
    }
    if (c->parity_bytes && n + 3 <= cap) {
        out[n++] = BOX_FIELD_PARITY_LINES;
        out[n++] = 1;
        out[n++] = 2;
    }
    return n;
}

/* The bus-shape fields of a CONFIGURE payload (p[0..len) after the fixed part). */
static int decode_shape(box_config_t *c, const uint8_t *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t tag, size, v;
        if (len - i < 2 || len - i - 2 < p[i + 1])
            return -BOX_BAD_LENGTH;
        tag = p[i];
        size = p[i + 1];
        v = size ? p[i + 2] : 0;
        i += 2u + size;
        if (tag < BOX_FIELD_HANDSHAKE || tag > BOX_FIELD_PARITY_LINES) {
            if (!c->unknown_field)
                c->unknown_field = tag ? tag : 0xFF;
            continue;
        }
        if (size != 1 || (tag == BOX_FIELD_HANDSHAKE && v > BOX_HS_STROBE) ||
            (tag == BOX_FIELD_ABSENT_LINES && (v & ~BOX_ABSENT_ALL)) ||
            (tag == BOX_FIELD_PARITY_LINES && v != 1 && v != 2)) {
            c->bad_field = tag;
            return -BOX_BAD_VALUE;
        }
        if (tag == BOX_FIELD_HANDSHAKE)
            c->handshake = v;
        else if (tag == BOX_FIELD_ABSENT_LINES)
            c->absent_lines = v;
        else
            c->parity_bytes = v == 2;
    }
    return 0;
}

long box_payload_encode(const box_msg_t *m, uint8_t *out, size_t cap)
{
    size_t i;

    switch (m->type) {
    case BOX_HELLO:
        if (cap < 4)
            return -1;
        out[0] = m->u.hello.min_version;
        out[1] = m->u.hello.max_version;
        put_u16(out + 2, m->u.hello.max_body);
        return 4;
    case BOX_INFO: {
        const box_info_t *in = &m->u.info;
        size_t name = strlen(in->board);
        if (name > BOX_BOARD_MAX || cap < BOX_INFO_FIXED + name)
            return -1;
        out[0] = in->version;
        memcpy(out + 1, in->firmware, 3);
        put_u32(out + 4, in->capabilities);
        put_u32(out + 8, in->out_words);
        put_u32(out + 12, in->in_words);
        put_u16(out + 16, in->max_body);
        put_u16(out + 18, in->max_words);
        put_u32(out + 20, in->build);
        memcpy(out + 24, in->pins, 2 * BOX_LINES);
        memcpy(out + BOX_INFO_FIXED, in->board, name);
        return (long)(BOX_INFO_FIXED + name);
    }
    case BOX_CONFIGURE: {
        const box_config_t *c = &m->u.configure;
        if (cap < 24)
            return -1;
        out[0] = c->parity;
        out[1] = c->role;
        put_u16(out + 2, c->duplex ? 1 : 0);
        put_u32(out + 4, c->active_low);
        put_u32(out + 8, c->handshake_timeout_us);
        put_u16(out + 12, c->setup_ns);
        put_u16(out + 14, c->hold_ns);
        put_u32(out + 16, c->turnaround_ns);
        put_u32(out + 20, c->max_burst_words);
        return (long)(BOX_CONFIG_FIXED + encode_shape(c, out + BOX_CONFIG_FIXED, cap - 24));
    }
    case BOX_RESET:
        if (cap < 1)
            return -1;
        out[0] = m->u.reset_defaults ? 1 : 0;
        return 1;
    case BOX_LINE_SET:
        if (cap < 4)
            return -1;
        out[0] = m->u.line_set_ready ? 1 : 0;
        out[1] = out[2] = out[3] = 0;
        return 4;
    case BOX_QUERY:
        if (cap < 1)
            return -1;
        out[0] = m->u.query_what;
        return 1;
    case BOX_WORDS_OUT:
    case BOX_WORDS_IN:
        return encode_words(&m->u.words, out, cap);
    case BOX_HOST_CREDITS:
    case BOX_BOX_CREDITS:
        if (cap < 8)
            return -1;
        put_u32(out, m->u.credits.received);
        put_u32(out + 4, m->u.credits.limit);
        return 8;
    case BOX_REPLY: {
        size_t r = m->u.reply.reason ? m->u.reply.reason_len : 0;
        if (cap < 4 + r)
            return -1;
        out[0] = m->u.reply.request;
        out[1] = m->u.reply.request_seq;
        out[2] = m->u.reply.status;
        out[3] = m->u.reply.detail;
        if (r)
            memcpy(out + 4, m->u.reply.reason, r);
        return (long)(4 + r);
    }
    case BOX_LINE_STATE: {
        const box_line_state_t *s = &m->u.line_state;
        if (cap < 8)
            return -1;
        put_u32(out, s->levels);
        out[4] = s->bus;
        out[5] = (uint8_t)((s->ready ? 1 : 0) | (s->peer_ready ? 2 : 0) | (s->role ? 4 : 0));
        out[6] = out[7] = 0;
        return 8;
    }
    case BOX_STATS:
        if (cap < 4 * BOX_STAT_COUNT)
            return -1;
        for (i = 0; i < BOX_STAT_COUNT; i++)
            put_u32(out + 4 * i, m->u.stats.v[i]);
        return 4 * BOX_STAT_COUNT;
    case BOX_ERROR:
        if (cap < 12)
            return -1;
        out[0] = m->u.error.code;
        out[1] = m->u.error.detail;
        out[2] = out[3] = 0;
        put_u32(out + 4, m->u.error.offset);
        put_u32(out + 8, m->u.error.value);
        return 12;
    default:
        return -1;
    }
}

#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (len < (n))                                                                             \
            return -BOX_BAD_LENGTH;                                                                \
    } while (0)

int box_payload_decode(uint8_t type, const uint8_t *p, size_t len, box_msg_t *m)
{
    size_t i;

    memset(m, 0, sizeof *m);
    m->type = type;
    switch (type) {
    case BOX_HELLO:
        NEED(4);
        m->u.hello.min_version = p[0];
        m->u.hello.max_version = p[1];
        m->u.hello.max_body = get_u16(p + 2);
        return 0;
    case BOX_INFO: {
        box_info_t *in = &m->u.info;
        size_t name = len - BOX_INFO_FIXED;
        NEED(BOX_INFO_FIXED);
        in->version = p[0];
        memcpy(in->firmware, p + 1, 3);
        in->capabilities = get_u32(p + 4);
        in->out_words = get_u32(p + 8);
        in->in_words = get_u32(p + 12);
        in->max_body = get_u16(p + 16);
        in->max_words = get_u16(p + 18);
        in->build = get_u32(p + 20);
        memcpy(in->pins, p + 24, 2 * BOX_LINES);
        if (name > BOX_BOARD_MAX)
            name = BOX_BOARD_MAX;
        memcpy(in->board, p + BOX_INFO_FIXED, name);
        in->board[name] = 0;
        return 0;
    }
    case BOX_CONFIGURE: {
        box_config_t *c = &m->u.configure;
        NEED(24);
        c->parity = p[0];
        c->role = p[1];
        c->duplex = (uint8_t)(get_u16(p + 2) & 1u);
        c->active_low = get_u32(p + 4);
        c->handshake_timeout_us = get_u32(p + 8);
        c->setup_ns = get_u16(p + 12);
        c->hold_ns = get_u16(p + 14);
        c->turnaround_ns = get_u32(p + 16);
        c->max_burst_words = get_u32(p + 20);
        if (c->parity > 2 || c->role > 1)
            return -BOX_BAD_VALUE;
        return decode_shape(c, p + BOX_CONFIG_FIXED, len - BOX_CONFIG_FIXED);
    }
    case BOX_RESET:
        NEED(1);
        m->u.reset_defaults = p[0] & 1u;
        return 0;
    case BOX_LINE_SET:
        NEED(4);
        m->u.line_set_ready = p[0] & 1u;
        return 0;
    case BOX_QUERY:
        NEED(1);
        m->u.query_what = p[0];
        return 0;
    case BOX_WORDS_OUT:
    case BOX_WORDS_IN: {
        box_words_t *w = &m->u.words;
        NEED(BOX_WORDS_HEADER);
        w->offset = get_u32(p);
        w->count = get_u16(p + 4);
        w->flags = p[6];
        if (len != box_words_size(w->count))
            return -BOX_BAD_LENGTH;
        w->raw = p;
        return 0;
    }
    case BOX_HOST_CREDITS:
    case BOX_BOX_CREDITS:
        NEED(8);
        m->u.credits.received = get_u32(p);
        m->u.credits.limit = get_u32(p + 4);
        return 0;
    case BOX_REPLY:
        NEED(4);
        m->u.reply.request = p[0];
        m->u.reply.request_seq = p[1];
        m->u.reply.status = p[2];
        m->u.reply.detail = p[3];
        if (len > 4) {
            m->u.reply.reason = (const char *)(p + 4);
            m->u.reply.reason_len = (uint8_t)(len - 4 < BOX_REASON_MAX ? len - 4 : BOX_REASON_MAX);
        }
        return p[2] > BOX_UNKNOWN_FIELD ? -BOX_BAD_VALUE : 0;
    case BOX_LINE_STATE:
        NEED(8);
        m->u.line_state.levels = get_u32(p);
        m->u.line_state.bus = p[4];
        m->u.line_state.ready = p[5] & 1u;
        m->u.line_state.peer_ready = (uint8_t)(p[5] >> 1 & 1u);
        m->u.line_state.role = (uint8_t)(p[5] >> 2 & 1u);
        return p[4] > BOX_BUS_DUPLEX ? -BOX_BAD_VALUE : 0;
    case BOX_STATS:
        NEED(4 * BOX_STAT_COUNT);
        for (i = 0; i < BOX_STAT_COUNT; i++)
            m->u.stats.v[i] = get_u32(p + 4 * i);
        return 0;
    case BOX_ERROR:
        NEED(12);
        m->u.error.code = p[0];
        m->u.error.detail = p[1];
        m->u.error.offset = get_u32(p + 4);
        m->u.error.value = get_u32(p + 8);
        return (p[0] < BOX_ERR_PARITY || p[0] > BOX_ERR_BUS) ? -BOX_BAD_VALUE : 0;
    default:
        return -BOX_BAD_VALUE;
    }
}

size_t box_body_finish(uint8_t *body, uint8_t type, uint8_t seq, size_t payload_len)
{
    size_t n = 2 + payload_len;

    body[0] = type;
    body[1] = seq;
    put_u32(body + n, crc32(body, n));
    return n + 4;
}

size_t box_wire_from_body(const uint8_t *body, size_t len, uint8_t *wire)
{
    size_t n = cobs_encode(body, len, wire);
    wire[n] = 0;
    return n + 1;
}

size_t box_frame_encode(const box_msg_t *m, uint8_t seq, uint8_t *scratch, uint8_t *wire)
{
    long n = box_payload_encode(m, scratch + 2, BOX_MAX_BODY - BOX_MIN_BODY);
    if (n < 0)
        return 0;
    return box_wire_from_body(scratch, box_body_finish(scratch, m->type, seq, (size_t)n), wire);
}

void box_rx_init(box_rx_t *rx, size_t max_body)
{
    rx->len = 0;
    rx->dropped = 0;
    rx->max_body = max_body < BOX_MAX_BODY ? max_body : BOX_MAX_BODY;
    rx->body_len = 0;
    rx->frame_bytes = 0;
    rx->bad_reason = 0;
}

static int rx_bad(box_rx_t *rx, uint8_t reason, size_t frame_bytes)
{
    rx->bad_reason = reason;
    rx->frame_bytes = frame_bytes;
    rx->len = 0;
    return BOX_RX_BAD;
}

int box_rx_push(box_rx_t *rx, uint8_t byte)
{
    long body;

    if (rx->dropped) {
        if (byte == 0)
            rx->dropped = 0;
        else
            rx->dropped++;
        return BOX_RX_NONE;
    }
    if (byte != 0) {
        if (rx->len >= COBS_MAX_ENCODED(rx->max_body)) {
            rx->dropped = rx->len + 1;
            return rx_bad(rx, BOX_BAD_TOO_LONG, rx->len + 1);
        }
        rx->buf[rx->len++] = byte;
        return BOX_RX_NONE;
    }
    if (rx->len == 0)
        return BOX_RX_NONE; /* a lone delimiter: sync / keep-alive */
    rx->frame_bytes = rx->len + 1;
    body = cobs_decode_inplace(rx->buf, rx->len);
    if (body < 0)
        return rx_bad(rx, BOX_BAD_COBS, rx->frame_bytes);
    if ((size_t)body > rx->max_body)
        return rx_bad(rx, BOX_BAD_TOO_LONG, rx->frame_bytes);
    if ((size_t)body < BOX_MIN_BODY)
        return rx_bad(rx, BOX_BAD_TOO_SHORT, rx->frame_bytes);
    if (crc32(rx->buf, (size_t)body - 4) != get_u32(rx->buf + body - 4))
        return rx_bad(rx, BOX_BAD_CRC, rx->frame_bytes);
    rx->body_len = (size_t)body;
    rx->len = 0;
    return BOX_RX_FRAME;
}

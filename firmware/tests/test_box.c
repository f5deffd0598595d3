/* Host tests of the firmware core: codec against the golden vectors
 * (tests/vectors/box/ JSON files, tests/vectors/datalink/frames.json, through
 * build/vectors.h), and the box's behaviour through the emulated line side
 * (sim/boxsim.c): credits, throttling, arbitration, timeouts, error reports. */
#include <stdlib.h>
#include <string.h>

#include "box.h"
#include "boxsim.h"
#include "crc32.h"
#include "minitest.h"
#include "parity.h"
#include "proto.h"
#include "vectors.h"

/* --- a host end for the behaviour tests ----------------------------------------- */

#define HOST_MSGS 256
#define HOST_WORDS 70000

typedef struct {
    box_rx_t rx;
    box_msg_t msgs[HOST_MSGS];
    uint32_t words_before[HOST_MSGS]; /* WORDS_IN words the host had when msgs[i] came */
    int n;
    uint16_t words[HOST_WORDS];
    uint8_t parity[HOST_WORDS];
    uint32_t n_words, next_offset;
    int words_gaps;
    uint8_t seq;
    uint32_t now;
    uint8_t scratch[BOX_MAX_BODY];
    uint8_t wire[BOX_MAX_WIRE];
} host_t;

static host_t *H;

static void host_reset(void)
{
    memset(H, 0, sizeof *H);
    box_rx_init(&H->rx, BOX_MAX_BODY);
}

static void host_send_seq(boxsim_t *s, const box_msg_t *m, uint8_t seq)
{
    size_t n = box_frame_encode(m, seq, H->scratch, H->wire);
    CHECK(n > 0);
    CHECK_EQ(boxsim_host_write(s, H->wire, n), n);
}

static void host_send(boxsim_t *s, const box_msg_t *m)
{
    host_send_seq(s, m, H->seq++);
}

/* Read everything the box has to say; keep messages, gather WORDS_IN words. */
static int host_pump(boxsim_t *s)
{
    uint8_t buf[300];
    size_t n, i;
    int frames = 0;

    while ((n = boxsim_host_read(s, buf, sizeof buf)) > 0) {
        for (i = 0; i < n; i++) {
            int r = box_rx_push(&H->rx, buf[i]);
            box_msg_t m;
            CHECK(r != BOX_RX_BAD);
            if (r != BOX_RX_FRAME)
                continue;
            frames++;
            CHECK_EQ(box_payload_decode(H->rx.buf[0], H->rx.buf + 2, H->rx.body_len - 6, &m), 0);
            if (m.type == BOX_WORDS_IN) {
                uint32_t k;
                if (m.u.words.offset != H->next_offset)
                    H->words_gaps++;
                for (k = 0; k < m.u.words.count && H->n_words < HOST_WORDS; k++) {
                    box_words_at(&m.u.words, k, &H->words[H->n_words], &H->parity[H->n_words]);
                    H->n_words++;
                }
                H->next_offset = m.u.words.offset + m.u.words.count;
            } else if (H->n < HOST_MSGS) {
                H->words_before[H->n] = H->n_words;
                H->msgs[H->n++] = m;
            }
        }
    }
    return frames;
}

static void step(boxsim_t *s, uint32_t us)
{
    H->now += us;
    boxsim_poll(s, H->now);
    host_pump(s);
}

static const box_msg_t *host_last(int type)
{
    int i;
    for (i = H->n - 1; i >= 0; i--)
        if (H->msgs[i].type == type)
            return &H->msgs[i];
    return NULL;
}

static int host_count(int type)
{
    int i, k = 0;
    for (i = 0; i < H->n; i++)
        k += H->msgs[i].type == type;
    return k;
}

static const box_error_t *host_error(int code)
{
    int i;
    for (i = H->n - 1; i >= 0; i--)
        if (H->msgs[i].type == BOX_ERROR && H->msgs[i].u.error.code == code)
            return &H->msgs[i].u.error;
    return NULL;
}

static void send_simple(boxsim_t *s, uint8_t type, uint8_t value)
{
    box_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    if (type == BOX_LINE_SET)
        m.u.line_set_ready = value;
    else if (type == BOX_RESET)
        m.u.reset_defaults = value;
    else if (type == BOX_QUERY)
        m.u.query_what = value;
    else if (type == BOX_HELLO) {
        m.u.hello.min_version = 1;
        m.u.hello.max_version = 1;
        m.u.hello.max_body = 0xFFFF;
    }
    host_send(s, &m);
}

static void send_config(boxsim_t *s, const box_config_t *c)
{
    box_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = BOX_CONFIGURE;
    m.u.configure = *c;
    host_send(s, &m);
}

static void send_credits(boxsim_t *s, uint32_t limit)
{
    box_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = BOX_HOST_CREDITS;
    m.u.credits.received = H->next_offset;
    m.u.credits.limit = limit;
    host_send(s, &m);
}

static void send_words(boxsim_t *s, uint32_t offset, const uint16_t *w, const uint8_t *p, size_t n,
                       int boundary)
{
    box_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = BOX_WORDS_OUT;
    m.u.words.offset = offset;
    m.u.words.count = (uint16_t)n;
    m.u.words.flags = (uint8_t)(boundary ? 1 : 0);
    m.u.words.words = w;
    m.u.words.parity = p;
    host_send(s, &m);
}

/* A box configured (duplex unless role_b_or_a >= 0), READY on both sides. */
static boxsim_t *ready_box(int duplex, int role)
{
    boxsim_t *s = boxsim_new();
    box_config_t c;

    host_reset();
    box_default_config(&c);
    c.duplex = (uint8_t)duplex;
    c.role = (uint8_t)role;
    send_simple(s, BOX_HELLO, 0);
    send_config(s, &c);
    send_simple(s, BOX_LINE_SET, 1);
    boxsim_set_peer_lines(s, 1u << (role == BOX_ROLE_A ? BOX_LINE_READY_B : BOX_LINE_READY_A));
    step(s, 10);
    step(s, 10);
    return s;
}

static void fill(uint16_t *w, uint8_t *p, size_t n, uint16_t start)
{
    size_t i;
    for (i = 0; i < n; i++) {
        w[i] = (uint16_t)(start + i * 7919u);
        p[i] = parity_line(w[i], BOX_PARITY_ODD);
    }
}

/* Let the peer take up to n words, polling between: returns how many it got. */
static size_t take_all(boxsim_t *s, uint16_t *w, uint8_t *p, size_t n)
{
    size_t got = 0;
    int idle = 0;
    while (got < n && idle < 3) {
        size_t k = boxsim_line_take(s, w + got, p + got, n - got);
        got += k;
        idle = k ? 0 : idle + 1;
        step(s, 1);
    }
    return got;
}

/* Offer n words to the box, polling between: returns how many it took. */
static size_t put_all(boxsim_t *s, const uint16_t *w, const uint8_t *p, size_t n)
{
    size_t done = 0;
    int idle = 0;
    while (done < n && idle < 3) {
        size_t k = boxsim_line_put(s, w + done, p + done, n - done);
        done += k;
        idle = k ? 0 : idle + 1;
        step(s, 1);
    }
    return done;
}

/* --- codec against the vectors ---------------------------------------------------- */

static void test_crc_check(void)
{
    CHECK_EQ(crc32((const uint8_t *)VEC_CRC_DATA, strlen(VEC_CRC_DATA)), VEC_CRC_VALUE);
}

static void test_cobs_vectors(void)
{
    size_t i;
    static uint8_t buf[2 * BOX_MAX_WIRE];

    for (i = 0; i < VEC_COBS_N; i++) {
        const vec_cobs_t *v = &VEC_COBS[i];
        size_t n = cobs_encode(v->dec, v->dec_len, buf);
        long d;
        CHECK_EQ(n, v->enc_len);
        CHECK(memcmp(buf, v->enc, v->enc_len) == 0);
        memcpy(buf, v->enc, v->enc_len);
        d = cobs_decode_inplace(buf, v->enc_len);
        CHECK_EQ(d, (long)v->dec_len);
        CHECK(d < 0 || memcmp(buf, v->dec, v->dec_len) == 0);
    }
    /* the Cheshire-Baker form with a closing 01 after a final 254-byte run decodes too */
    memset(buf, 0x41, 256);
    buf[0] = 0xFF;
    buf[255] = 0x01;
    CHECK_EQ(cobs_decode_inplace(buf, 256), 254);
    buf[0] = 0x05; /* runs past the end */
    CHECK_EQ(cobs_decode_inplace(buf, 3), -1);
    CHECK_EQ(cobs_decode_inplace(buf, 0), -1);
}

static void test_frame_vectors(void)
{
    size_t i, k;
    static uint8_t scratch[BOX_MAX_BODY], wire[BOX_MAX_WIRE], again[BOX_MAX_WIRE];
    static box_rx_t rx;

    CHECK(VEC_FRAMES_N > 20);
    for (i = 0; i < VEC_FRAMES_N; i++) {
        const vec_frame_t *v = &VEC_FRAMES[i];
        box_msg_t m;
        size_t n = box_frame_encode(&v->msg, v->seq, scratch, wire);
        int r = BOX_RX_NONE;

        CHECK_EQ(n, v->wire_len);
        if (n != v->wire_len || memcmp(wire, v->wire, n) != 0) {
            fprintf(stderr, "  frame %s: encoding differs\n", v->name);
            CHECK(0);
        }
        box_rx_init(&rx, VEC_MAX_BODY);
        for (k = 0; k < v->wire_len; k++) {
            r = box_rx_push(&rx, v->wire[k]);
            if (k + 1 < v->wire_len)
                CHECK_EQ(r, BOX_RX_NONE);
        }
        CHECK_EQ(r, BOX_RX_FRAME);
        CHECK_EQ(rx.body_len, v->body_len);
        CHECK(memcmp(rx.buf, v->body, v->body_len) == 0);
        CHECK_EQ(rx.buf[1], v->seq);
        CHECK_EQ(box_payload_decode(rx.buf[0], rx.buf + 2, rx.body_len - 6, &m), 0);
        CHECK_EQ(m.type, v->msg.type);
        n = box_frame_encode(&m, v->seq, scratch, again); /* decode, encode: same bytes */
        CHECK_EQ(n, v->wire_len);
        CHECK(memcmp(again, v->wire, v->wire_len) == 0);
    }
}

static void test_payload_errors(void)
{
    size_t i;
    for (i = 0; i < VEC_PAYLOAD_ERRORS_N; i++) {
        const vec_payload_error_t *v = &VEC_PAYLOAD_ERRORS[i];
        box_msg_t m;
        CHECK_EQ(crc32(v->body, v->body_len - 4), get_u32(v->body + v->body_len - 4));
        CHECK_EQ(box_payload_decode(v->body[0], v->body + 2, v->body_len - 6, &m), -v->reason);
    }
}

static void test_stream_vectors(void)
{
    size_t i, k;
    static box_rx_t rx;

    for (i = 0; i < VEC_STREAMS_N; i++) {
        const vec_stream_t *v = &VEC_STREAMS[i];
        size_t e = 0;
        box_rx_init(&rx, v->max_body);
        for (k = 0; k < v->input_len; k++) {
            int r = box_rx_push(&rx, v->input[k]);
            const vec_event_t *want;
            if (r == BOX_RX_NONE)
                continue;
            if (e >= v->n_events) {
                fprintf(stderr, "  stream %s: an extra event\n", v->name);
                CHECK(0);
                break;
            }
            want = &v->events[e++];
            if (r == BOX_RX_FRAME) {
                const vec_frame_t *f = &VEC_FRAMES[want->frame];
                CHECK_EQ(want->kind, 1);
                CHECK_EQ(rx.body_len, f->body_len);
                CHECK(rx.body_len != f->body_len || memcmp(rx.buf, f->body, f->body_len) == 0);
            } else {
                CHECK_EQ(want->kind, 2);
                CHECK_EQ(rx.bad_reason, want->reason);
                if (want->size >= 0)
                    CHECK_EQ(rx.frame_bytes, want->size);
            }
        }
        if (e != v->n_events)
            fprintf(stderr, "  stream %s: %zu of %zu events\n", v->name, e, v->n_events);
        CHECK_EQ(e, v->n_events);
    }
}

static void test_max_words(void)
{
    CHECK_EQ(box_max_words_for(4096), 1920);
    CHECK_EQ(box_max_words_for(BOX_MIN_BODY + BOX_WORDS_HEADER), 0);
    CHECK_EQ(box_max_words_for(BOX_MIN_BODY + BOX_WORDS_HEADER + 3), 1);
    CHECK(box_words_size(box_max_words_for(4096)) + BOX_MIN_BODY <= 4096);
    CHECK(box_words_size(box_max_words_for(4096) + 1) + BOX_MIN_BODY > 4096);
}

static void test_datalink_parity(void)
{
    size_t i, k;
    for (i = 0; i < VEC_DATALINK_N; i++) {
        const vec_datalink_t *v = &VEC_DATALINK[i];
        for (k = 0; k < v->n; k++) {
            CHECK_EQ(parity_line(v->words[k], BOX_PARITY_ODD), v->parity_odd[k]);
            CHECK(!parity_bad(v->words[k], v->parity_odd[k], BOX_PARITY_ODD));
            CHECK(parity_bad(v->words[k], v->parity_odd[k], BOX_PARITY_EVEN));
            CHECK(!parity_bad(v->words[k], 1, BOX_PARITY_NONE));
        }
    }
}

/* --- behaviour ---------------------------------------------------------------- */

static void test_hello_info(void)
{
    boxsim_t *s = boxsim_new();
    box_msg_t m;
    const box_msg_t *r;

    host_reset();
    step(s, 1);
    CHECK(host_last(BOX_BOX_CREDITS) != NULL); /* unprompted at power-up */
    send_simple(s, BOX_HELLO, 0);
    step(s, 1);
    r = host_last(BOX_INFO);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ(r->u.info.version, 1);
        CHECK_EQ(r->u.info.max_body, BOX_MAX_BODY);
        CHECK_EQ(r->u.info.max_words, box_max_words_for(BOX_MAX_BODY));
        CHECK_EQ(r->u.info.out_words, BOX_OUT_WORDS);
        CHECK_EQ(r->u.info.pins[2 * BOX_LINE_DIR], 39);
        CHECK_EQ(r->u.info.pins[2 * BOX_LINE_DIR + 1], 40);
        CHECK(strcmp(r->u.info.board, "boxsim") == 0);
        CHECK(r->u.info.capabilities & BOX_CAP_DUPLEX);
    }
    memset(&m, 0, sizeof m); /* a host that takes small frames only */
    m.type = BOX_HELLO;
    m.u.hello.min_version = 1;
    m.u.hello.max_version = 1;
    m.u.hello.max_body = 512;
    host_send(s, &m);
    step(s, 1);
    r = host_last(BOX_INFO);
    CHECK(r && r->u.info.max_words == box_max_words_for(512));
    m.u.hello.min_version = 2; /* a version this box does not speak */
    m.u.hello.max_version = 3;
    host_send(s, &m);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.request == BOX_HELLO && r->u.reply.status == BOX_UNSUPPORTED_VERSION);
    CHECK_EQ(host_count(BOX_INFO), 3);
    boxsim_free(s);
}

static void test_configure(void)
{
    boxsim_t *s = boxsim_new();
    box_config_t c;
    box_msg_t m;
    const box_msg_t *r;

    host_reset();
    box_default_config(&c);
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_OK && r->u.reply.request == BOX_CONFIGURE);
    CHECK(r && r->u.reply.request_seq == 0);
    c.handshake_timeout_us = 0;
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER && r->u.reply.request_seq == 1);
    box_default_config(&c);
    c.active_low = 1u << 30; /* no such line */
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER);
    /* a parity code out of range is answered, not dropped */
    memset(&m, 0, sizeof m);
    m.type = BOX_CONFIGURE;
    box_default_config(&m.u.configure);
    m.u.configure.parity = 3;
    host_send(s, &m);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER && r->u.reply.request_seq == 3);
    send_simple(s, BOX_LINE_SET, 1);
    box_default_config(&c);
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BUSY);
    CHECK(boxsim_lines(s) >> BOX_LINE_READY_B & 1u);
    boxsim_free(s);
}

/* CONFIGURE's bus-shape fields: what the box refuses (with the field and a reason), a
 * field it does not know, and what each accepted one does: no READY lines (the peer
 * counts as present, the box's READY is never driven), no PERR (a PERR the peer
 * cannot send is ignored), parity per byte (accepted on a board with PARITY_HI). */
static void test_configure_shape(void)
{
    boxsim_t *s = boxsim_new();
    box_config_t c;
    box_msg_t m;
    const box_msg_t *r;
    static uint8_t body[64];
    size_t n;
    uint16_t w[2] = {0x1234, 0x0001}, got[2];
    uint8_t p[2], gotp[2];

    host_reset();
    send_simple(s, BOX_HELLO, 0);
    step(s, 1);
    r = host_last(BOX_INFO);
    CHECK(r && (r->u.info.capabilities & BOX_CAP_SHAPE));
    box_default_config(&c);
    c.handshake = BOX_HS_TWO_PHASE;
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER);
    CHECK(r && r->u.reply.detail == BOX_FIELD_HANDSHAKE && r->u.reply.reason_len > 10);
    CHECK(r && memcmp(r->u.reply.reason, "two-phase", 9) == 0);
    c.handshake = BOX_HS_STROBE;
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER && r->u.reply.detail == BOX_FIELD_HANDSHAKE);
    box_default_config(&c);
    c.absent_lines = BOX_ABSENT_BREQ; /* a real bus: the arbiter needs it */
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER &&
          r->u.reply.detail == BOX_FIELD_ABSENT_LINES);
    /* a field this firmware does not know (tag 9): UNKNOWN_FIELD naming it */
    memset(&m, 0, sizeof m);
    m.type = BOX_CONFIGURE;
    box_default_config(&m.u.configure);
    n = (size_t)box_payload_encode(&m, body + 2, sizeof body - 6);
    CHECK_EQ(n, BOX_CONFIG_FIXED);
    body[2 + n] = 9;
    body[3 + n] = 1;
    body[4 + n] = 1;
    n = box_body_finish(body, BOX_CONFIGURE, H->seq++, n + 3);
    n = box_wire_from_body(body, n, H->wire);
    CHECK_EQ(boxsim_host_write(s, H->wire, n), n);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_UNKNOWN_FIELD && r->u.reply.detail == 9);
    /* a known field out of range: BAD_PARAMETER naming it */
    body[2 + BOX_CONFIG_FIXED] = BOX_FIELD_PARITY_LINES;
    body[4 + BOX_CONFIG_FIXED] = 3;
    n = box_body_finish(body, BOX_CONFIGURE, H->seq++, BOX_CONFIG_FIXED + 3);
    n = box_wire_from_body(body, n, H->wire);
    CHECK_EQ(boxsim_host_write(s, H->wire, n), n);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER &&
          r->u.reply.detail == BOX_FIELD_PARITY_LINES);
    /* accepted: two-phase, duplex, no READY, no PERR, no DIR, parity per byte */
    box_default_config(&c);
    c.handshake = BOX_HS_TWO_PHASE;
    c.duplex = 1;
    c.absent_lines = BOX_ABSENT_READY | BOX_ABSENT_PERR | BOX_ABSENT_DIR;
    c.parity_bytes = 1;
    send_config(s, &c);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_OK);
    send_simple(s, BOX_LINE_SET, 1);
    step(s, 1);
    step(s, 1);
    CHECK(!(boxsim_lines(s) >> BOX_LINE_READY_B & 1u)); /* not driven */
    r = host_last(BOX_LINE_STATE);
    CHECK(r && r->u.line_state.peer_ready && r->u.line_state.bus == BOX_BUS_DUPLEX);
    send_credits(s, 100);
    p[0] = parity_line(w[0], BOX_PARITY_ODD);
    p[1] = (uint8_t)(parity_line(w[1], BOX_PARITY_ODD) ^ 1u); /* bad */
    send_words(s, 0, w, p, 2, 1);
    step(s, 1);
    CHECK_EQ(take_all(s, got, gotp, 2), 2);
    step(s, 1);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_PERR_OUT), 0); /* no PERR line: nothing to hear */
    CHECK_EQ(put_all(s, w, p, 2), 2);
    step(s, 1);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_PERR_IN), 1); /* still checked and reported */
    CHECK_EQ(H->n_words, 2);
    boxsim_free(s);
}

static void test_duplex_datalink_roundtrip(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    size_t i, k;
    uint32_t offset = 0;
    static uint16_t w[512];
    static uint8_t p[512];

    CHECK_EQ(boxsim_bus(s), BOX_BUS_DUPLEX);
    send_credits(s, 100000);
    for (i = 0; i < VEC_DATALINK_N; i++) {
        const vec_datalink_t *v = &VEC_DATALINK[i];
        size_t got;
        send_words(s, offset, v->words, v->parity_odd, v->n, 1);
        offset += (uint32_t)v->n;
        step(s, 1);
        got = take_all(s, w, p, 512);
        CHECK_EQ(got, v->n);
        for (k = 0; k < got && k < v->n; k++) {
            CHECK_EQ(w[k], v->words[k]);
            CHECK_EQ(p[k], v->parity_odd[k]);
        }
        CHECK_EQ(put_all(s, v->words, v->parity_odd, v->n), v->n);
        step(s, 1);
    }
    CHECK_EQ(H->n_words, offset);
    CHECK_EQ(H->words_gaps, 0);
    for (i = 0, k = 0; i < VEC_DATALINK_N; i++) {
        size_t j;
        for (j = 0; j < VEC_DATALINK[i].n; j++, k++) {
            CHECK_EQ(H->words[k], VEC_DATALINK[i].words[j]);
            CHECK_EQ(H->parity[k], VEC_DATALINK[i].parity_odd[j]);
        }
    }
    CHECK_EQ(host_count(BOX_ERROR), 0);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_WORDS_OUT), offset);
    boxsim_free(s);
}

static void test_throttle_without_credit(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[1000];
    static uint8_t p[1000];
    uint32_t taken = 0, total = 40000, i;
    int idle = 0;

    fill(w, p, 1000, 3);
    while (idle < 5) { /* no credit: the box fills its ring, then holds ACK back */
        uint32_t at = taken % 1000;
        size_t n = boxsim_line_put(s, w + at, p + at, 1000 - at);
        taken += (uint32_t)n;
        idle = n ? 0 : idle + 1;
        step(s, 10);
    }
    CHECK_EQ(taken, BOX_IN_WORDS + BOXSIM_RX_DEPTH);
    CHECK_EQ(H->n_words, 0);
    for (i = 0; i < 20000 && H->n_words < total; i++) { /* credit as the host consumes */
        uint32_t at = taken % 1000, left = total - taken;
        send_credits(s, H->n_words + 4096);
        step(s, 10);
        taken += (uint32_t)boxsim_line_put(s, w + at, p + at, left < 1000 - at ? left : 1000 - at);
    }
    CHECK_EQ(taken, total);
    CHECK_EQ(H->n_words, total);
    CHECK_EQ(H->words_gaps, 0);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_DISCARDED_WORDS), 0);
    CHECK_EQ(host_count(BOX_ERROR), 0);
    for (i = 0; i < total; i++) { /* in order, none lost */
        if (H->words[i] != w[i % 1000]) {
            CHECK_EQ(H->words[i], w[i % 1000]);
            break;
        }
    }
    boxsim_free(s);
}

static void test_out_credits_and_overflow(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[2000], got[2000];
    static uint8_t p[2000], gotp[2000];
    const box_msg_t *c;
    const box_error_t *e;
    uint32_t sent = 0;

    c = host_last(BOX_BOX_CREDITS);
    CHECK(c && c->u.credits.limit == BOX_OUT_WORDS && c->u.credits.received == 0);
    fill(w, p, 2000, 11);
    while (sent < BOX_OUT_WORDS + BOXSIM_TX_DEPTH) { /* fill the engine and the ring */
        uint32_t n = BOX_OUT_WORDS + BOXSIM_TX_DEPTH - sent;
        if (n > 1900)
            n = 1900;
        send_words(s, sent, w, p, n, 0);
        sent += n;
        step(s, 1);
    }
    CHECK_EQ(host_count(BOX_ERROR), 0);
    send_words(s, sent, w, p, 10, 0); /* beyond the credit: dropped and reported */
    step(s, 1);
    e = host_error(BOX_ERR_OVERFLOW);
    CHECK(e && e->offset == sent && e->value == 10);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_OVERFLOW_WORDS), 10);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 2000), BOXSIM_TX_DEPTH);
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 2000), BOXSIM_TX_DEPTH);
    step(s, 200000); /* credits re-sent after the period */
    c = host_last(BOX_BOX_CREDITS);
    CHECK(c && c->u.credits.received == sent + 10); /* the dropped ones were skipped */
    CHECK(c && c->u.credits.limit == sent + 10 + 2 * BOXSIM_TX_DEPTH);
    boxsim_free(s);
}

static void test_parity_errors(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    uint16_t w[3] = {0x1234, 0x0000, 0xFFFF}, got[3];
    uint8_t p[3], bad[3], gotp[3];
    const box_error_t *e;
    int i;

    for (i = 0; i < 3; i++) {
        p[i] = parity_line(w[i], BOX_PARITY_ODD);
        bad[i] = p[i];
    }
    bad[1] ^= 1u;
    send_credits(s, 100);
    CHECK_EQ(boxsim_line_put(s, w, bad, 3), 3);
    step(s, 1);
    step(s, 1);
    e = host_error(BOX_ERR_PARITY);
    CHECK(e && e->detail == 0 && e->offset == 1 && e->value == (uint32_t)(0x0000 | bad[1] << 16));
    CHECK_EQ(H->n_words, 3);
    CHECK_EQ(H->parity[1], bad[1]); /* the host sees the bad parity line too */
    send_words(s, 0, w, bad, 3, 1);
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 3), 3);
    step(s, 1);
    e = host_error(BOX_ERR_PARITY);
    CHECK(e && e->detail == 1 && e->offset == 1);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_PERR_OUT), 1);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_PERR_IN), 1);
    (void)p;
    boxsim_free(s);
}

static void test_tx_timeout(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[20], got[20];
    static uint8_t p[20], gotp[20];
    const box_error_t *e;

    fill(w, p, 20, 5);
    send_words(s, 0, w, p, 12, 1); /* a frame of 12 words ... */
    send_words(s, 12, w, p, 8, 1); /* ... and one of 8 */
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 2), 2); /* the peer takes 2, then stalls */
    step(s, 1);
    step(s, 50000);
    CHECK(host_error(BOX_ERR_TIMEOUT) == NULL);
    step(s, 60000);
    e = host_error(BOX_ERR_TIMEOUT);
    CHECK(e && e->detail == BOX_PHASE_ACK_ASSERT && e->offset == 2 && e->value == 10);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_TIMEOUTS), 1);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_DISCARDED_WORDS), 10);
    step(s, 1);
    CHECK_EQ(take_all(s, got, gotp, 20), 8); /* the next frame goes out whole */
    CHECK_EQ(got[0], w[0]);
    CHECK_EQ(got[7], w[7]);
    boxsim_free(s);
}

static void test_rx_timeout(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    uint16_t w[2] = {0xA5C3, 0x1000};
    uint8_t p[2] = {1, 0};
    const box_error_t *e;

    send_credits(s, 100);
    boxsim_hold_req(s, 1);
    CHECK_EQ(boxsim_line_put(s, w, p, 2), 1); /* REQ stays up after the first word */
    step(s, 1);
    CHECK(boxsim_lines(s) >> BOX_LINE_ACK & 1u);
    step(s, 100001);
    step(s, 1);
    e = host_error(BOX_ERR_TIMEOUT);
    CHECK(e && e->detail == BOX_PHASE_REQ_RELEASE && e->offset == 0);
    CHECK(!(boxsim_lines(s) >> BOX_LINE_ACK & 1u)); /* ACK dropped */
    CHECK_EQ(boxsim_line_put(s, w + 1, p + 1, 1), 0); /* REQ not seen low yet */
    boxsim_hold_req(s, 0);
    CHECK_EQ(boxsim_line_put(s, w + 1, p + 1, 1), 1);
    step(s, 1);
    CHECK_EQ(H->n_words, 2);
    boxsim_free(s);
}

#define LINE(s, name) ((boxsim_lines(s) >> (name)) & 1u)

static void test_role_b_arbitration(void)
{
    boxsim_t *s = ready_box(0, BOX_ROLE_B);
    uint32_t peer = 1u << BOX_LINE_READY_A;
    static uint16_t w[9], got[9];
    static uint8_t p[9], gotp[9];
    box_config_t c;

    CHECK_EQ(boxsim_bus(s), BOX_BUS_IDLE);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_NONE);
    send_credits(s, 100);
    boxsim_set_peer_lines(s, peer | 1u << BOX_LINE_DIR); /* A takes the bus */
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_TURNAROUND);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_NONE); /* nothing driven before turnaround */
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_PEER);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_ANSWER);
    fill(w, p, 9, 1);
    CHECK_EQ(boxsim_line_put(s, w, p, 4), 4);
    step(s, 1);
    CHECK_EQ(H->n_words, 4);
    send_words(s, 0, w, p, 9, 1); /* the bridge has a frame to send: BREQ */
    step(s, 1);
    CHECK(LINE(s, BOX_LINE_BREQ));
    CHECK_EQ(boxsim_bus(s), BOX_BUS_PEER);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 9), 0);
    boxsim_set_peer_lines(s, peer); /* A hands the bus over */
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_TURNAROUND);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_NONE);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_OWN);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 9), 8);
    step(s, 1);
    CHECK(LINE(s, BOX_LINE_BREQ)); /* mid-frame: keeps the bus */
    CHECK_EQ(boxsim_line_take(s, got + 8, gotp + 8, 1), 1);
    step(s, 1);
    CHECK(!LINE(s, BOX_LINE_BREQ)); /* the frame is out: released */
    CHECK_EQ(boxsim_bus(s), BOX_BUS_IDLE);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_NONE);
    CHECK_EQ(got[8], w[8]);
    boxsim_set_peer_lines(s, peer | 1u << BOX_LINE_DIR);
    step(s, 1);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_PEER);
    /* A takes DIR while the box drives: a bus error, the box lets go at once */
    send_words(s, 9, w, p, 3, 1);
    step(s, 1);
    boxsim_set_peer_lines(s, peer);
    step(s, 1);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_OWN);
    boxsim_set_peer_lines(s, peer | 1u << BOX_LINE_DIR);
    step(s, 1);
    CHECK(boxsim_bus(s) != BOX_BUS_OWN);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_NONE);
    CHECK(host_error(BOX_ERR_BUS) != NULL);
    CHECK(!LINE(s, BOX_LINE_BREQ));
    boxsim_free(s);

    /* burst limit: hand over at the first boundary after max_burst_words */
    s = boxsim_new();
    host_reset();
    box_default_config(&c);
    c.max_burst_words = 4;
    send_config(s, &c);
    send_simple(s, BOX_LINE_SET, 1);
    boxsim_set_peer_lines(s, peer);
    send_words(s, 0, w, p, 3, 1);
    send_words(s, 3, w + 3, p + 3, 3, 1);
    send_words(s, 6, w + 6, p + 6, 3, 1);
    step(s, 1);
    CHECK(LINE(s, BOX_LINE_BREQ));
    step(s, 1);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_OWN);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 9), 6); /* two frames: 6 >= 4 words */
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_IDLE);
    step(s, 1);
    CHECK(!LINE(s, BOX_LINE_BREQ)); /* A gets the bus back before B asks again */
    boxsim_set_peer_lines(s, peer | 1u << BOX_LINE_DIR);
    step(s, 1);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_PEER);
    CHECK(LINE(s, BOX_LINE_BREQ)); /* asks again for the third */
    boxsim_set_peer_lines(s, peer);
    step(s, 1);
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 9), 3);
    step(s, 1);
    CHECK(!LINE(s, BOX_LINE_BREQ));
    send_words(s, 9, w, p, 3, 1); /* A never takes the bus: B asks again after a while */
    step(s, 1);
    CHECK(!LINE(s, BOX_LINE_BREQ));
    step(s, 100000);
    CHECK(LINE(s, BOX_LINE_BREQ));
    boxsim_free(s);
}

static void test_role_a_handover(void)
{
    boxsim_t *s = ready_box(0, BOX_ROLE_A);
    uint32_t peer = 1u << BOX_LINE_READY_B;
    static uint16_t w[6], got[6];
    static uint8_t p[6], gotp[6];

    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_OWN);
    CHECK(LINE(s, BOX_LINE_DIR));
    CHECK(LINE(s, BOX_LINE_READY_A));
    fill(w, p, 6, 9);
    send_credits(s, 100);
    send_words(s, 0, w, p, 3, 1);
    send_words(s, 3, w + 3, p + 3, 3, 1);
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 1), 1);
    boxsim_set_peer_lines(s, peer | 1u << BOX_LINE_BREQ); /* B asks mid-frame */
    step(s, 1);
    CHECK(LINE(s, BOX_LINE_DIR));
    CHECK_EQ(boxsim_line_take(s, got + 1, gotp + 1, 6), 2); /* the rest of that frame only */
    step(s, 1);
    CHECK(!LINE(s, BOX_LINE_DIR));
    CHECK_EQ(boxsim_bus(s), BOX_BUS_TURNAROUND);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_PEER);
    CHECK_EQ(boxsim_line_put(s, w, p, 2), 2);
    step(s, 1);
    CHECK_EQ(H->n_words, 2);
    boxsim_set_peer_lines(s, peer); /* B is done */
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_TURNAROUND);
    step(s, 1);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_OWN);
    CHECK(LINE(s, BOX_LINE_DIR));
    CHECK_EQ(boxsim_line_take(s, got + 3, gotp + 3, 6), 3);
    CHECK_EQ(got[5], w[5]);
    boxsim_free(s);
}

static void test_peer_gone(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[30];
    static uint8_t p[30];
    const box_msg_t *ls;

    fill(w, p, 30, 2);
    send_words(s, 0, w, p, 30, 1);
    step(s, 1);
    boxsim_set_peer_lines(s, 0); /* the scanner is gone */
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_IDLE);
    CHECK_EQ(boxsim_drive(s), BOX_DRIVE_NONE);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_DISCARDED_WORDS), 30);
    ls = host_last(BOX_LINE_STATE);
    CHECK(ls && !ls->u.line_state.peer_ready && ls->u.line_state.ready);
    boxsim_set_peer_lines(s, 1u << BOX_LINE_READY_A);
    step(s, 1);
    ls = host_last(BOX_LINE_STATE);
    CHECK(ls && ls->u.line_state.peer_ready && ls->u.line_state.bus == BOX_BUS_DUPLEX);
    boxsim_free(s);
}

/* The words the box took from the line before the peer's READY dropped reach the host
 * before the LINE_STATE that reports the drop (docs/box-protocol.md, section 6): a
 * host discards the words that come after it, and the peer counts them as handed over
 * (the scanner's last ACK). With the host's credit the words go first in the same
 * output; without it the LINE_STATE waits for them, REPLYs do not. */
static void check_words_before_drop(uint32_t credit)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[100];
    static uint8_t p[100];
    size_t done = 0;
    int i, drops = 0, guard = 0;

    fill(w, p, 100, 9);
    if (credit) {
        send_credits(s, credit);
        step(s, 10);
    }
    while (done < 100 && guard++ < 1000) { /* the box takes them; the host reads nothing */
        done += boxsim_line_put(s, w + done, p + done, 100 - done);
        boxsim_poll(s, H->now += 1);
    }
    CHECK_EQ(done, 100);
    boxsim_set_peer_lines(s, 0); /* the scanner sent them, then dropped READY */
    boxsim_poll(s, H->now += 1);
    host_pump(s);
    if (!credit) {
        CHECK_EQ(H->n_words, 0);
        send_simple(s, BOX_LINE_SET, 1); /* a REPLY does not wait for the words */
        step(s, 10);
        CHECK(host_last(BOX_REPLY) && host_last(BOX_REPLY)->u.reply.request == BOX_LINE_SET);
        send_credits(s, 4096);
        step(s, 10);
    }
    CHECK_EQ(H->n_words, 100);
    CHECK_EQ(H->words_gaps, 0);
    CHECK_EQ(H->words[99], w[99]);
    for (i = 0; i < H->n; i++) {
        const box_msg_t *m = &H->msgs[i];
        if (m->type == BOX_LINE_STATE && !m->u.line_state.peer_ready) {
            drops++;
            CHECK_EQ(H->words_before[i], 100); /* every word came before it */
        }
    }
    CHECK(drops > 0);
    boxsim_free(s);
}

static void test_words_before_drop_go_first(void)
{
    check_words_before_drop(4096);
    check_words_before_drop(0);
}

/* WORDS_OUT that arrive while the peer's READY is down (a frame already on its way when
 * it dropped) are dropped and counted in discarded_words, as the queued words are when
 * it drops: nothing reaches a side that was gone (docs/box-protocol.md, section 6). Their
 * positions still count, so the host's next words follow them without a gap. */
static void check_words_while_peer_gone(int duplex)
{
    boxsim_t *s = ready_box(duplex, BOX_ROLE_B);
    static uint16_t w[40], got[40];
    static uint8_t p[40], gotp[40];
    const box_msg_t *c;

    fill(w, p, 40, 6);
    boxsim_set_peer_lines(s, 0);
    step(s, 1);
    send_words(s, 0, w, p, 20, 1);
    step(s, 1);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_DISCARDED_WORDS), 20);
    step(s, 200000); /* CREDITS come at most 100 ms after a change */
    c = host_last(BOX_BOX_CREDITS);
    CHECK(c && c->u.credits.received == 20);
    boxsim_set_peer_lines(s, 1u << BOX_LINE_READY_A);
    step(s, 10);
    step(s, 10);
    send_words(s, 20, w + 20, p + 20, 5, 1);
    step(s, 1);
    CHECK(host_error(BOX_ERR_LOST_WORDS) == NULL);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_DISCARDED_WORDS), 20);
    if (duplex) { /* (role B would first have to win the bus: test_role_b_arbitration) */
        CHECK_EQ(take_all(s, got, gotp, 40), 5); /* none of those that came while it was gone */
        CHECK_EQ(got[0], w[20]);
        CHECK_EQ(got[4], w[24]);
    }
    boxsim_free(s);
}

static void test_words_while_peer_gone(void)
{
    check_words_while_peer_gone(1);
    check_words_while_peer_gone(0);
}

static void test_bad_frames(void)
{
    boxsim_t *s = boxsim_new();
    const uint8_t garbage[] = {0x05, 0x11, 0x22, 0x00};
    const box_error_t *e;
    const box_msg_t *r;
    box_msg_t m;
    size_t n;

    host_reset();
    boxsim_host_write(s, garbage, sizeof garbage);
    step(s, 1);
    e = host_error(BOX_ERR_BAD_FRAME);
    CHECK(e && e->detail == BOX_BAD_COBS && e->offset == 1 && e->value == 4);
    memset(&m, 0, sizeof m);
    m.type = BOX_LINE_SET;
    n = box_body_finish(H->scratch, BOX_LINE_SET, 0, (size_t)box_payload_encode(&m, H->scratch + 2, 8));
    H->scratch[2] ^= 0x01; /* the READY bit flipped after the CRC: a CRC error */
    n = box_wire_from_body(H->scratch, n, H->wire);
    boxsim_host_write(s, H->wire, n);
    step(s, 1);
    e = host_error(BOX_ERR_BAD_FRAME);
    CHECK(e && e->detail == BOX_BAD_CRC && e->offset == 2);
    m.type = BOX_INFO; /* a box message sent to the box: wrong direction */
    host_send(s, &m);
    step(s, 1);
    e = host_error(BOX_ERR_BAD_FRAME);
    CHECK(e && e->detail == BOX_BAD_DIRECTION);
    H->scratch[2] = 0; /* an unknown request type: answered */
    n = box_wire_from_body(H->scratch, box_body_finish(H->scratch, 0x3F, H->seq, 1), H->wire);
    boxsim_host_write(s, H->wire, n);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.request == 0x3F && r->u.reply.request_seq == H->seq &&
          r->u.reply.status == BOX_UNKNOWN_TYPE);
    CHECK(host_error(BOX_ERR_LOST_FRAMES) == NULL);
    m.type = BOX_QUERY; /* two frames lost: seq jumps by 3 */
    m.u.query_what = BOX_STATS;
    host_send_seq(s, &m, (uint8_t)(H->seq + 3));
    step(s, 1);
    e = host_error(BOX_ERR_LOST_FRAMES);
    CHECK(e && e->offset == (uint32_t)(H->seq + 1) && e->value == (uint32_t)(H->seq + 3));
    r = host_last(BOX_STATS);
    CHECK(r && r->u.stats.v[BOX_STAT_BAD_FRAMES] == 3 && r->u.stats.v[BOX_STAT_LOST_FRAMES] == 2);
    m.u.query_what = 0x42; /* not a report */
    host_send_seq(s, &m, (uint8_t)(H->seq + 4));
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.status == BOX_BAD_PARAMETER);
    boxsim_free(s);
}

static void test_lost_words(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[40], got[40];
    static uint8_t p[40], gotp[40];
    const box_error_t *e;

    fill(w, p, 40, 4);
    send_words(s, 0, w, p, 5, 0);
    send_words(s, 10, w + 10, p + 10, 5, 1); /* words 5-9 lost on the way */
    step(s, 1);
    e = host_error(BOX_ERR_LOST_WORDS);
    CHECK(e && e->offset == 5 && e->value == 10);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 40), 8);
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got + 8, gotp + 8, 40), 2);
    CHECK_EQ(got[4], w[4]);
    CHECK_EQ(got[5], w[10]);
    CHECK_EQ(got[9], w[14]);
    send_words(s, 12, w + 12, p + 12, 5, 1); /* overlaps what came: only 15, 16 are new */
    step(s, 1);
    CHECK_EQ(boxsim_line_take(s, got, gotp, 40), 2);
    CHECK_EQ(got[0], w[15]);
    CHECK_EQ(boxsim_stat(s, BOX_STAT_LOST_WORDS), 5);
    boxsim_free(s);
}

static void test_reset(void)
{
    boxsim_t *s = ready_box(1, BOX_ROLE_B);
    static uint16_t w[10];
    static uint8_t p[10];
    const box_msg_t *r;

    fill(w, p, 10, 8);
    send_words(s, 0, w, p, 10, 1);
    step(s, 1);
    send_simple(s, BOX_RESET, 0);
    step(s, 1);
    r = host_last(BOX_REPLY);
    CHECK(r && r->u.reply.request == BOX_RESET && r->u.reply.status == BOX_OK);
    r = host_last(BOX_BOX_CREDITS);
    CHECK(r && r->u.credits.received == 0 && r->u.credits.limit == BOX_OUT_WORDS);
    step(s, 1);
    CHECK_EQ(boxsim_bus(s), BOX_BUS_DUPLEX); /* READY kept: back up */
    send_simple(s, BOX_RESET, 1); /* defaults: READY dropped, configuration restored */
    step(s, 1);
    CHECK(!LINE(s, BOX_LINE_READY_B));
    CHECK_EQ(boxsim_bus(s), BOX_BUS_IDLE);
    send_simple(s, BOX_QUERY, BOX_LINE_STATE);
    step(s, 1);
    r = host_last(BOX_LINE_STATE);
    CHECK(r && !r->u.line_state.ready && r->u.line_state.bus == BOX_BUS_IDLE);
    boxsim_free(s);
}

int main(void)
{
    H = calloc(1, sizeof *H);
    if (!H)
        return 2;
    RUN(test_crc_check);
    RUN(test_cobs_vectors);
    RUN(test_frame_vectors);
    RUN(test_payload_errors);
    RUN(test_stream_vectors);
    RUN(test_max_words);
    RUN(test_datalink_parity);
    RUN(test_hello_info);
    RUN(test_configure);
    RUN(test_configure_shape);
    RUN(test_duplex_datalink_roundtrip);
    RUN(test_throttle_without_credit);
    RUN(test_out_credits_and_overflow);
    RUN(test_parity_errors);
    RUN(test_tx_timeout);
    RUN(test_rx_timeout);
    RUN(test_role_b_arbitration);
    RUN(test_role_a_handover);
    RUN(test_peer_gone);
    RUN(test_words_while_peer_gone);
    RUN(test_words_before_drop_go_first);
    RUN(test_bad_frames);
    RUN(test_lost_words);
    RUN(test_reset);
    free(H);
    return mt_summary();
}

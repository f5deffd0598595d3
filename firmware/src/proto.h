/* The interface-box protocol (docs/box-protocol.md): message codes, payload
 * layouts, frames. The Python twin is bridge/ports/boxproto.py; both are checked
 * against tests/vectors/box/ *.json.
 *
 * A frame on the wire is COBS(body) 0x00; body = type, seq, payload, CRC-32
 * (little-endian, over type, seq and payload). Multi-byte fields little-endian. */
#ifndef BOX_PROTO_H
#define BOX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cobs.h"

#define BOX_PROTOCOL_VERSION 1u
#define BOX_MIN_BODY 6u        /* type, seq, CRC-32 */
#define BOX_WORDS_HEADER 8u    /* offset u32, count u16, flags u8, reserved u8 */
#define BOX_LINES 25u
#define BOX_INFO_FIXED 74u     /* INFO payload before the board name */
#define BOX_BOARD_MAX 32u

/* Largest body this build accepts and sends (the INFO max_body). */
#ifndef BOX_MAX_BODY
#define BOX_MAX_BODY 4096u
#endif
#define BOX_MAX_WIRE (COBS_MAX_ENCODED(BOX_MAX_BODY) + 1u)

enum box_msg_type {
    BOX_HELLO = 0x01,
    BOX_CONFIGURE = 0x02,
    BOX_RESET = 0x03,
    BOX_LINE_SET = 0x04,
    BOX_QUERY = 0x05,
    BOX_WORDS_OUT = 0x10,
    BOX_HOST_CREDITS = 0x11,
    BOX_INFO = 0x81,
    BOX_REPLY = 0x82,
    BOX_LINE_STATE = 0x84,
    BOX_STATS = 0x85,
    BOX_ERROR = 0x86,
    BOX_WORDS_IN = 0x90,
    BOX_BOX_CREDITS = 0x91
};

enum box_status {
    BOX_OK = 0,
    BOX_UNSUPPORTED_VERSION = 1,
    BOX_BAD_PARAMETER = 2,
    BOX_BUSY = 3,
    BOX_UNKNOWN_TYPE = 4,
    BOX_UNKNOWN_FIELD = 5 /* CONFIGURE carried a field this firmware does not know */
};

enum box_role { BOX_ROLE_B = 0, BOX_ROLE_A = 1 };

enum box_bus {
    BOX_BUS_IDLE = 0,
    BOX_BUS_PEER = 1,
    BOX_BUS_OWN = 2,
    BOX_BUS_TURNAROUND = 3,
    BOX_BUS_DUPLEX = 4
};

enum box_capability {
    BOX_CAP_ROLE_B = 1,
    BOX_CAP_ROLE_A = 2,
    BOX_CAP_PERR = 4,
    BOX_CAP_DUPLEX = 8,
    BOX_CAP_POLARITY = 16,
    BOX_CAP_SHAPE = 32,        /* reads CONFIGURE's bus-shape fields (offset 24 on) */
    BOX_CAP_PARITY_BYTES = 64, /* PARITY_HI on the SPARE pair: parity per byte, two lines */
    BOX_CAP_TWO_PHASE = 128,   /* runs the two-phase (transition) handshake */
    BOX_CAP_STROBE = 256       /* runs the strobe handshake */
};

/* CONFIGURE's bus-shape fields (docs/box-protocol.md, "CONFIGURE"): after the 24 fixed
 * bytes, zero or more of tag u8, length u8, value. Sent only when they differ from
 * the reference (four-phase, all control lines, one parity line). */
#define BOX_CONFIG_FIXED 24u
enum box_config_field {
    BOX_FIELD_HANDSHAKE = 1,    /* u8: enum box_handshake */
    BOX_FIELD_ABSENT_LINES = 2, /* u8: BOX_ABSENT_* bits: control lines the bus lacks */
    BOX_FIELD_PARITY_LINES = 3  /* u8: 1 (PARITY over D0-D15) or 2 (per byte) */
};
enum box_handshake { BOX_HS_FOUR_PHASE = 0, BOX_HS_TWO_PHASE = 1, BOX_HS_STROBE = 2 };
enum {
    BOX_ABSENT_DIR = 1,
    BOX_ABSENT_BREQ = 2,
    BOX_ABSENT_READY = 4, /* READY_A and READY_B */
    BOX_ABSENT_PERR = 8,
    BOX_ABSENT_ALL = 15
};

enum box_error_code {
    BOX_ERR_PARITY = 1,
    BOX_ERR_TIMEOUT = 2,
    BOX_ERR_OVERFLOW = 3,
    BOX_ERR_BAD_FRAME = 4,
    BOX_ERR_LOST_WORDS = 5,
    BOX_ERR_LOST_FRAMES = 6,
    BOX_ERR_BUS = 7
};

enum box_phase {
    BOX_PHASE_NONE = 0,
    BOX_PHASE_ACK_ASSERT = 1,
    BOX_PHASE_ACK_RELEASE = 2,
    BOX_PHASE_REQ_RELEASE = 3,
    BOX_PHASE_TURNAROUND = 4
};

enum box_bad_reason {
    BOX_BAD_COBS = 1,
    BOX_BAD_CRC = 2,
    BOX_BAD_TOO_LONG = 3,
    BOX_BAD_TOO_SHORT = 4,
    BOX_BAD_LENGTH = 5,
    BOX_BAD_DIRECTION = 6,
    BOX_BAD_VALUE = 7
};

/* Lines, in the order of bridge.profile.LINE_NAMES: bit i of a line mask. */
enum box_line {
    BOX_LINE_D0 = 0,
    BOX_LINE_PARITY = 16,
    BOX_LINE_REQ = 17,
    BOX_LINE_ACK = 18,
    BOX_LINE_DIR = 19,
    BOX_LINE_READY_A = 20,
    BOX_LINE_READY_B = 21,
    BOX_LINE_PERR = 22,
    BOX_LINE_BREQ = 23,
    BOX_LINE_SPARE = 24
};

enum box_stat {
    BOX_STAT_WORDS_OUT,
    BOX_STAT_WORDS_IN,
    BOX_STAT_PERR_OUT,
    BOX_STAT_PERR_IN,
    BOX_STAT_TIMEOUTS,
    BOX_STAT_BAD_FRAMES,
    BOX_STAT_LOST_WORDS,
    BOX_STAT_OVERFLOW_WORDS,
    BOX_STAT_LOST_FRAMES,
    BOX_STAT_DISCARDED_WORDS,
    BOX_STAT_ERRORS_DROPPED,
    BOX_STAT_COUNT
};

typedef struct {
    uint8_t min_version, max_version;
    uint16_t max_body;
} box_hello_t;

typedef struct {
    uint8_t version;
    uint8_t firmware[3];
    uint32_t capabilities, out_words, in_words;
    uint16_t max_body, max_words;
    uint32_t build;
    uint8_t pins[2 * BOX_LINES];
    char board[BOX_BOARD_MAX + 1];
} box_info_t;

/* CONFIGURE: the physical layer's parameters (bridge.profile.Physical). */
typedef struct box_config {
    uint8_t parity; /* BOX_PARITY_NONE / ODD / EVEN (parity.h) */
    uint8_t role;   /* enum box_role */
    uint8_t duplex; /* emulated line side only */
    uint32_t active_low;
    uint32_t handshake_timeout_us;
    uint16_t setup_ns, hold_ns;
    uint32_t turnaround_ns;
    uint32_t max_burst_words;
    /* the bus-shape fields; all 0 = the reference bus */
    uint8_t handshake;    /* enum box_handshake */
    uint8_t absent_lines; /* BOX_ABSENT_* bits */
    uint8_t parity_bytes; /* 1: parity per byte, PARITY (D0-D7) and PARITY_HI (D8-D15) */
    /* decoding only: the tag of the first field not known (unknown_field) or out of
     * range (bad_field; box_payload_decode then returns -BOX_BAD_VALUE); 0: none */
    uint8_t unknown_field, bad_field;
} box_config_t;

/* WORDS_OUT / WORDS_IN. For encoding, words and parity (one byte 0/1 a word) point
 * at arrays; a decoded message points into its payload instead (raw != NULL):
 * use box_words_at(). */
typedef struct {
    uint32_t offset;
    uint16_t count;
    uint8_t flags; /* bit 0: BOUNDARY (WORDS_OUT) */
    const uint16_t *words;
    const uint8_t *parity;
    const uint8_t *raw; /* decoded: the payload */
} box_words_t;

typedef struct {
    uint32_t received, limit;
} box_credits_t;

typedef struct {
    uint8_t request, request_seq, status;
    uint8_t detail;     /* UNKNOWN_FIELD, BAD_PARAMETER of CONFIGURE: the field's tag */
    const char *reason; /* NULL, or reason_len ASCII bytes: why (after the 4 bytes) */
    uint8_t reason_len;
} box_reply_t;
#define BOX_REASON_MAX 64u

typedef struct {
    uint32_t levels;
    uint8_t bus, ready, peer_ready, role;
} box_line_state_t;

typedef struct {
    uint32_t v[BOX_STAT_COUNT];
} box_stats_t;

typedef struct {
    uint8_t code, detail;
    uint32_t offset, value;
} box_error_t;

typedef struct {
    uint8_t type;
    union {
        box_hello_t hello;
        box_info_t info;
        box_config_t configure;
        uint8_t reset_defaults;
        uint8_t line_set_ready;
        uint8_t query_what;
        box_words_t words;
        box_credits_t credits;
        box_reply_t reply;
        box_line_state_t line_state;
        box_stats_t stats;
        box_error_t error;
    } u;
} box_msg_t;

/* little-endian field access */
static inline void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Payload bytes of a WORDS message of n words. */
static inline size_t box_words_size(size_t n)
{
    return BOX_WORDS_HEADER + 2u * n + (n + 7u) / 8u;
}

/* The most words one WORDS frame carries within a body of max_body bytes. */
uint16_t box_max_words_for(size_t max_body);

/* Encode the payload of m into out (cap bytes); returns its length, or -1 when it
 * does not fit or m->type is unknown. */
long box_payload_encode(const box_msg_t *m, uint8_t *out, size_t cap);

/* Decode a payload of message type `type` into m; 0, or -(enum box_bad_reason):
 * -BOX_BAD_LENGTH for a wrong length, -BOX_BAD_VALUE for a field out of range,
 * -BOX_BAD_DIRECTION... never (the caller checks direction). An unknown type
 * gives -BOX_BAD_VALUE. m->u.words points into p. */
int box_payload_decode(uint8_t type, const uint8_t *p, size_t len, box_msg_t *m);

/* Word i (and its parity bit) of a WORDS message, encoded or decoded. */
void box_words_at(const box_words_t *w, size_t i, uint16_t *word, uint8_t *parity);

/* body[0..1] = type, seq and body[2..2+payload_len) written: append the CRC and
 * return the body length. */
size_t box_body_finish(uint8_t *body, uint8_t type, uint8_t seq, size_t payload_len);

/* The wire bytes of a body: COBS then the 0x00 delimiter; returns their number.
 * wire must hold COBS_MAX_ENCODED(len) + 1 bytes. */
size_t box_wire_from_body(const uint8_t *body, size_t len, uint8_t *wire);

/* Whole frame of message m with sequence number seq into wire (BOX_MAX_WIRE
 * bytes); scratch holds BOX_MAX_BODY bytes. Returns the wire length, 0 on error. */
size_t box_frame_encode(const box_msg_t *m, uint8_t seq, uint8_t *scratch, uint8_t *wire);

/* Incremental frame receiver: bytes in one at a time, a body (COBS undone, CRC
 * checked) or a bad-frame report out. Holds at most one frame: a longer run
 * without a delimiter is one BOX_BAD_TOO_LONG and is dropped up to the next 0x00. */
typedef struct {
    uint8_t buf[BOX_MAX_WIRE];
    size_t len;          /* bytes held */
    size_t dropped;      /* > 0: dropping an over-long frame */
    size_t max_body;
    /* result of the last box_rx_push that returned BOX_RX_FRAME / BOX_RX_BAD */
    size_t body_len;     /* the body is buf[0..body_len) */
    size_t frame_bytes;  /* wire bytes of that frame, delimiter included */
    uint8_t bad_reason;  /* enum box_bad_reason */
} box_rx_t;

enum { BOX_RX_NONE = 0, BOX_RX_FRAME = 1, BOX_RX_BAD = 2 };

void box_rx_init(box_rx_t *rx, size_t max_body);
int box_rx_push(box_rx_t *rx, uint8_t byte);

#endif

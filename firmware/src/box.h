/* The interface box's portable core: the box protocol toward the host, word rings
 * and credits, bus arbitration (DIR/BREQ), handshake timeouts and error reports
 * (docs/box-protocol.md). Sans-I/O: host bytes in and out through
 * box_host_input() / box_host_output(), time passed to box_poll(); the line side
 * through the hooks of platform.h. No malloc: a box_t is one static object. */
#ifndef BOX_BOX_H
#define BOX_BOX_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "proto.h"

/* Ring sizes in words (powers of two). 16 Ki words each: 96 KiB of RAM. */
#ifndef BOX_OUT_WORDS
#define BOX_OUT_WORDS 16384u
#endif
#ifndef BOX_IN_WORDS
#define BOX_IN_WORDS 16384u
#endif
#define BOX_ENGINE_SLOTS 32u    /* positions of words handed to the send engine */
#define BOX_ENGINE_INFLIGHT 16u /* at most this many at once */
#define BOX_BOUNDARIES 16u
#define BOX_GAPS 8u
#define BOX_REPLIES 8u
#define BOX_ERRORS 16u
#define BOX_CREDIT_PERIOD_US 100000u   /* BOX_CREDITS re-sent this often when changed */
#define BOX_KEEPALIVE_US 1000000u      /* ... and at least this often (lost-frame repair) */
#define BOX_LINE_STATE_PERIOD_US 1000000u

#if (BOX_OUT_WORDS & (BOX_OUT_WORDS - 1)) || (BOX_IN_WORDS & (BOX_IN_WORDS - 1))
#error "BOX_OUT_WORDS and BOX_IN_WORDS must be powers of two"
#endif

/* The arbiter's states (the rows of the tables in box.c). */
enum box_state {
    BOX_S_OFF,       /* READY missing on one side: drivers off */
    BOX_S_IDLE,      /* nobody owns the bus (role B) */
    BOX_S_TURN_PEER, /* waiting turnaround_ns before answering */
    BOX_S_PEER,      /* the peer drives, the box answers */
    BOX_S_TURN_OWN,  /* waiting turnaround_ns before driving */
    BOX_S_OWN,       /* the box drives */
    BOX_S_DUPLEX,    /* emulation: both ways, no bus */
    BOX_S_COUNT
};

typedef struct {
    uint32_t at; /* ring count where the jump happens */
    uint32_t to; /* stream position of the word there */
} box_gap_t;

typedef struct box {
    const box_platform_t *plat;
    box_config_t cfg;
    box_info_t info;
    uint32_t now;

    /* host link */
    box_rx_t rx;
    uint16_t host_max_body; /* the host's HELLO max_body, capped at ours */
    uint8_t host_seq_next;
    uint8_t host_seq_valid;
    uint8_t tx_seq;
    uint8_t body[BOX_MAX_BODY];
    uint8_t wire[BOX_MAX_WIRE];
    size_t wire_len, wire_pos;
    box_reply_t replies[BOX_REPLIES];
    unsigned n_replies;
    box_error_t errors[BOX_ERRORS];
    unsigned n_errors;
    uint8_t want_info, want_line_state, want_stats, want_credits;

    /* words toward the line */
    uint16_t out_words[BOX_OUT_WORDS];
    uint8_t out_parity[BOX_OUT_WORDS / 8];
    uint32_t out_head, out_tail; /* ring counts: words stored, words handed over */
    uint32_t out_recv;   /* stream position expected next from the host */
    uint32_t out_pushed; /* stream position of the word at the ring's tail */
    box_gap_t gaps[BOX_GAPS];
    unsigned n_gaps;
    uint32_t bounds[BOX_BOUNDARIES];
    unsigned n_bounds;
    uint8_t bound_ok;        /* the last word handed over ended a frame (or none yet) */
    uint32_t burst;          /* words sent in this bus tenure */
    uint32_t eng_pos[BOX_ENGINE_SLOTS];
    uint32_t eng_head, eng_tail; /* engine-local counts: handed over, completed */
    uint32_t credit_sent, credit_time;

    /* words toward the host */
    uint16_t in_words[BOX_IN_WORDS];
    uint8_t in_parity[BOX_IN_WORDS / 8];
    uint32_t in_taken; /* next position stored from the receive engine */
    uint32_t in_sent;  /* next position to send to the host */
    uint32_t host_limit;

    /* lines and bus */
    uint8_t ready;      /* this side's READY, as the host set it */
    uint8_t bus_line;   /* this side's BREQ (role B) or DIR (role A) */
    uint8_t state;      /* enum box_state */
    uint8_t yielded;    /* role B released the bus; A has not had it back yet */
    uint32_t yield_time;
    uint32_t timer;     /* start of the turnaround wait */
    uint32_t lines;     /* last lines_read() */
    uint32_t ls_sent_key, ls_time;
    uint8_t tx_phase, rx_phase;
    uint32_t tx_done_seen, tx_since, rx_since;

    uint32_t stats[BOX_STAT_COUNT];
} box_t;

/* Set up b (all state zeroed, default configuration, drivers off). capabilities:
 * enum box_capability bits this board has; pins: the 50-pin connector's pin pair
 * (+, -) of each line as wired on this board (NULL: the reference pin map). */
void box_init(box_t *b, const box_platform_t *plat, uint32_t capabilities, const char *board,
              const uint8_t *pins);

/* Bytes from the host, any amount, split anywhere; all are consumed. */
size_t box_host_input(box_t *b, const uint8_t *data, size_t len);

/* Up to cap bytes for the host (whole frames over successive calls); 0: nothing. */
size_t box_host_output(box_t *b, uint8_t *out, size_t cap);

/* Run the line side: engines, arbitration, timeouts, reports. now_us: a free-running
 * microsecond clock (wraps after 71 minutes; only differences are used). */
void box_poll(box_t *b, uint32_t now_us);

/* What LINE_STATE reports as the bus (enum box_bus). */
int box_bus(const box_t *b);

/* The default configuration (the reference profile's physical layer, role B). */
void box_default_config(box_config_t *cfg);

#endif

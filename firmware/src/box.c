/* The interface box's portable core (box.h; docs/box-protocol.md). */
#include "box.h"

#include <string.h>

#include "parity.h"
#include "version.h"

#define OUT_MASK (BOX_OUT_WORDS - 1u)
#define IN_MASK (BOX_IN_WORDS - 1u)

/* Serial arithmetic on 32-bit stream positions: a - b as a signed number. */
static int32_t delta(uint32_t a, uint32_t b)
{
    uint32_t d = a - b;
    return d & 0x80000000u ? -(int32_t)(~d) - 1 : (int32_t)d;
}

static int elapsed(const box_t *b, uint32_t since, uint32_t us)
{
    return (uint32_t)(b->now - since) >= us;
}

void box_default_config(box_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->parity = BOX_PARITY_ODD;
    cfg->role = BOX_ROLE_B;
    cfg->handshake_timeout_us = 100000u;
    cfg->setup_ns = 100;
    cfg->hold_ns = 100;
    cfg->turnaround_ns = 1000;
}

/* --- reports ------------------------------------------------------------------ */

static void report(box_t *b, uint8_t code, uint8_t detail, uint32_t offset, uint32_t value)
{
    box_error_t *e;

    if (b->n_errors == BOX_ERRORS) {
        b->stats[BOX_STAT_ERRORS_DROPPED]++;
        return;
    }
    e = &b->errors[b->n_errors++];
    e->code = code;
    e->detail = detail;
    e->offset = offset;
    e->value = value;
}

/* Queue a REPLY; detail and reason (NULL: none) say which CONFIGURE field was refused
 * and why. */
static void reply_why(box_t *b, uint8_t request, uint8_t seq, uint8_t status, uint8_t detail,
                      const char *reason)
{
    box_reply_t *r;
    size_t n = reason ? strlen(reason) : 0;

    if (b->n_replies == BOX_REPLIES) {
        b->stats[BOX_STAT_ERRORS_DROPPED]++;
        return;
    }
    r = &b->replies[b->n_replies++];
    r->request = request;
    r->request_seq = seq;
    r->status = status;
    r->detail = detail;
    r->reason = reason;
    r->reason_len = (uint8_t)(n < BOX_REASON_MAX ? n : BOX_REASON_MAX);
}

static void reply(box_t *b, uint8_t request, uint8_t seq, uint8_t status)
{
    reply_why(b, request, seq, status, 0, NULL);
}

/* This side's READY line (READY_A in role A, READY_B in role B), as the host set it;
 * never driven on a bus without READY lines. */
static void write_ready(box_t *b, int level)
{
    b->plat->line_write(b->plat->ctx,
                        b->cfg.role == BOX_ROLE_A ? BOX_LINE_READY_A : BOX_LINE_READY_B,
                        (b->cfg.absent_lines & BOX_ABSENT_READY) ? 0 : level);
}

/* --- words toward the line ----------------------------------------------------- */

static uint32_t out_queued(const box_t *b)
{
    return b->out_head - b->out_tail;
}

/* WORDS_OUT may go up to (not including) this stream position. */
static uint32_t out_limit(const box_t *b)
{
    return b->out_recv + (BOX_OUT_WORDS - out_queued(b));
}

/* After the word at the ring's tail left (or was dropped): take any jump in stream
 * positions recorded there. Keeps out_pushed == out_recv when the ring is empty. */
static void out_apply_gaps(box_t *b)
{
    while (b->n_gaps && b->gaps[0].at == b->out_tail) {
        b->out_pushed = b->gaps[0].to;
        memmove(b->gaps, b->gaps + 1, --b->n_gaps * sizeof b->gaps[0]);
    }
}

/* The next WORDS_OUT position is `to`, not out_recv (words lost on the way, or
 * dropped for lack of room): the words after this point are numbered from `to`. */
static void out_skip_to(box_t *b, uint32_t to)
{
    if (out_queued(b) == 0) {
        b->out_pushed = to;
    } else {
        if (b->n_gaps == BOX_GAPS) { /* merge with the last jump: positions in between */
            b->n_gaps--;             /* are then counted against the earlier words */
        }
        b->gaps[b->n_gaps].at = b->out_head;
        b->gaps[b->n_gaps].to = to;
        b->n_gaps++;
    }
    b->out_recv = to;
}

/* Drop queued words from the tail while their position is below `to`; returns
 * how many. */
static uint32_t out_drop_to(box_t *b, uint32_t to)
{
    uint32_t dropped = 0;

    while (b->out_tail != b->out_head && delta(b->out_pushed, to) < 0) {
        b->out_tail++;
        b->out_pushed++;
        dropped++;
        out_apply_gaps(b);
    }
    return dropped;
}

static void add_boundary(box_t *b, uint32_t pos)
{
    if (b->n_bounds == BOX_BOUNDARIES)
        b->n_bounds--; /* full: the newest replaces the last one (fewer hand-over points) */
    b->bounds[b->n_bounds++] = pos;
}

static void pop_passed_bounds(box_t *b)
{
    while (b->n_bounds && delta(b->bounds[0], b->out_pushed) < 0)
        memmove(b->bounds, b->bounds + 1, --b->n_bounds * sizeof b->bounds[0]);
}

static int peer_ready_in(const box_t *b, uint32_t lines);

static void words_out(box_t *b, const box_words_t *w)
{
    uint32_t offset = w->offset, end = w->offset + w->count;
    uint32_t i = 0, n = w->count, room, take;
    int32_t d = delta(offset, b->out_recv);

    if (d < 0) { /* a repeat of words already taken: keep only what is new */
        if ((uint32_t)-d >= n)
            return;
        i = (uint32_t)-d;
    } else if (d > 0) {
        report(b, BOX_ERR_LOST_WORDS, 0, b->out_recv, offset);
        b->stats[BOX_STAT_LOST_WORDS] += (uint32_t)d;
        out_skip_to(b, offset);
    }
    if (!(b->ready && peer_ready_in(b, b->plat->lines_read(b->plat->ctx)))) {
        /* A READY is down (a frame already on its way when the peer dropped): no line is
         * driven toward a side that is gone, so these words are dropped as the queued
         * ones were (docs/box-protocol.md, section 6); their positions still count. The
         * lines are read now: words that come before the next poll find them as they are. */
        b->stats[BOX_STAT_DISCARDED_WORDS] += n - i;
        out_skip_to(b, end);
        return;
    }
    room = BOX_OUT_WORDS - out_queued(b);
    take = n - i < room ? n - i : room;
    for (; take > 0; take--, i++) {
        uint16_t word;
        uint8_t p;
        uint32_t at = b->out_head & OUT_MASK;
        box_words_at(w, i, &word, &p);
        b->out_words[at] = word;
        if (p)
            b->out_parity[at / 8] |= (uint8_t)(1u << (at % 8));
        else
            b->out_parity[at / 8] &= (uint8_t)~(1u << (at % 8));
        b->out_head++;
        b->out_recv++;
    }
    if (i < n) {
        report(b, BOX_ERR_OVERFLOW, 0, b->out_recv, n - i);
        b->stats[BOX_STAT_OVERFLOW_WORDS] += n - i;
        out_skip_to(b, end);
    }
    if (w->flags & 1u)
        add_boundary(b, end);
}

static int engine_idle(const box_t *b);

/* Whether the arbiter wants the bus released at the next frame boundary. */
static int stop_at_boundary(const box_t *b)
{
    if (b->cfg.duplex)
        return 0;
    if (b->cfg.role == BOX_ROLE_A)
        return (b->lines >> BOX_LINE_BREQ) & 1u;
    return b->cfg.max_burst_words && b->burst >= b->cfg.max_burst_words;
}

/* Hand queued words to the send engine. At a frame boundary, role A lets the engine
 * drain before going on, so that a BREQ seen then is honoured at this boundary
 * (words already in the engine's FIFO cannot be taken back). */
static void push_words(box_t *b)
{
    unsigned room = b->plat->tx_room(b->plat->ctx);

    while (room > 0 && b->out_tail != b->out_head &&
           b->eng_head - b->eng_tail < BOX_ENGINE_INFLIGHT) {
        uint32_t at;
        if (b->bound_ok && !b->cfg.duplex) {
            if (b->cfg.role == BOX_ROLE_A && !engine_idle(b))
                break;
            if (stop_at_boundary(b))
                break;
        }
        at = b->out_tail & OUT_MASK;
        b->plat->tx_push(b->plat->ctx, b->out_words[at],
                         (uint8_t)(b->out_parity[at / 8] >> (at % 8) & 1u));
        b->eng_pos[b->eng_head++ % BOX_ENGINE_SLOTS] = b->out_pushed;
        b->out_tail++;
        b->out_pushed++;
        out_apply_gaps(b);
        b->burst++;
        room--;
        pop_passed_bounds(b);
        b->bound_ok = b->n_bounds && b->bounds[0] == b->out_pushed;
        if (b->bound_ok)
            memmove(b->bounds, b->bounds + 1, --b->n_bounds * sizeof b->bounds[0]);
    }
}

static int engine_idle(const box_t *b)
{
    return b->eng_head == b->eng_tail && b->tx_phase == BOX_PHASE_NONE;
}

/* Words handed to the engine and not completed are lost; count them. */
static void engine_forget(box_t *b)
{
    b->stats[BOX_STAT_DISCARDED_WORDS] += b->eng_head - b->eng_tail;
    b->eng_head = b->eng_tail = 0;
    b->tx_phase = 0;
    b->tx_done_seen = 0;
}

/* Drop what is queued up to the next frame boundary (after a timeout). */
static uint32_t drop_frame_rest(box_t *b)
{
    uint32_t to = b->out_recv, dropped;

    pop_passed_bounds(b);
    if (b->n_bounds) {
        to = b->bounds[0];
        memmove(b->bounds, b->bounds + 1, --b->n_bounds * sizeof b->bounds[0]);
    }
    dropped = out_drop_to(b, to);
    b->bound_ok = 1;
    return dropped;
}

/* --- bus arbitration: tables of (state, event) -> (actions, next state) --------- */

enum {
    EV_DOWN = 1u << 0,     /* READY missing on either side */
    EV_UP = 1u << 1,       /* READY on both sides */
    EV_TIMER = 1u << 2,    /* turnaround_ns since the timer started */
    EV_PEER_ON = 1u << 3,  /* role B: DIR asserted; role A: BREQ asserted */
    EV_PEER_OFF = 1u << 4, /* the same line deasserted */
    EV_WANT = 1u << 5,     /* words queued and our BREQ not yet asserted (role B) */
    EV_ASKED = 1u << 6,    /* our BREQ asserted and DIR deasserted (role B) */
    EV_DONE = 1u << 7,     /* at a frame boundary, engine idle, nothing more for now */
    EV_HANDOVER = 1u << 8, /* role A: BREQ asserted and at a frame boundary, engine idle */
    EV_TX_TIMEOUT = 1u << 9,
    EV_RX_TIMEOUT = 1u << 10
};

enum {
    A_DRIVE_NONE = 1u << 0,
    A_DRIVE_OWN = 1u << 1,
    A_DRIVE_ANSWER = 1u << 2,
    A_DRIVE_DUPLEX = 1u << 3,
    A_LINE_ON = 1u << 4,  /* assert our BREQ (B) or DIR (A) */
    A_LINE_OFF = 1u << 5,
    A_TIMER = 1u << 6,    /* start the turnaround timer */
    A_FORGET = 1u << 7,   /* the send engine's words are lost */
    A_DISCARD = 1u << 8,  /* drop every queued word (a side went away) */
    A_BUS_ERROR = 1u << 9,
    A_RESET_TX = 1u << 10,
    A_RESET_RX = 1u << 11,
    A_BURST = 1u << 12,   /* a new tenure: burst count to 0 */
    A_YIELD = 1u << 13    /* role B gave the bus up: no new BREQ before A had it back */
};

#define ANY 0xFF

typedef struct {
    uint8_t state;
    uint16_t event;
    uint16_t actions;
    uint8_t next;
} box_row_t;

/* Role B, the responder (docs/link-profile.md, section 1.2). First matching row wins. */
static const box_row_t table_b[] = {
    {ANY, EV_DOWN, A_DRIVE_NONE | A_LINE_OFF | A_FORGET | A_DISCARD, BOX_S_OFF},
    {BOX_S_OFF, EV_UP, 0, BOX_S_IDLE},
    {BOX_S_IDLE, EV_PEER_ON, A_TIMER, BOX_S_TURN_PEER},
    {BOX_S_IDLE, EV_WANT, A_LINE_ON, BOX_S_IDLE},
    {BOX_S_IDLE, EV_ASKED, A_TIMER, BOX_S_TURN_OWN},
    {BOX_S_TURN_PEER, EV_PEER_OFF, 0, BOX_S_IDLE},
    {BOX_S_TURN_PEER, EV_TIMER, A_DRIVE_ANSWER, BOX_S_PEER},
    {BOX_S_PEER, EV_RX_TIMEOUT, A_RESET_RX, BOX_S_PEER},
    {BOX_S_PEER, EV_WANT, A_LINE_ON, BOX_S_PEER},
    {BOX_S_PEER, EV_PEER_OFF, A_DRIVE_NONE, BOX_S_IDLE},
    {BOX_S_TURN_OWN, EV_PEER_ON, A_TIMER, BOX_S_TURN_PEER},
    {BOX_S_TURN_OWN, EV_TIMER, A_DRIVE_OWN | A_BURST, BOX_S_OWN},
    {BOX_S_OWN, EV_PEER_ON,
     A_DRIVE_NONE | A_FORGET | A_LINE_OFF | A_BUS_ERROR | A_TIMER, BOX_S_TURN_PEER},
    {BOX_S_OWN, EV_TX_TIMEOUT, A_DRIVE_NONE | A_FORGET | A_LINE_OFF, BOX_S_IDLE},
    {BOX_S_OWN, EV_DONE, A_DRIVE_NONE | A_LINE_OFF | A_YIELD, BOX_S_IDLE},
};

/* Role A, the initiator: owns the bus by default, hands it over when B asks. */
static const box_row_t table_a[] = {
    {ANY, EV_DOWN, A_DRIVE_NONE | A_LINE_OFF | A_FORGET | A_DISCARD, BOX_S_OFF},
    {BOX_S_OFF, EV_UP, A_TIMER, BOX_S_TURN_OWN},
    {BOX_S_TURN_OWN, EV_PEER_ON, A_TIMER, BOX_S_TURN_PEER},
    {BOX_S_TURN_OWN, EV_TIMER, A_LINE_ON | A_DRIVE_OWN | A_BURST, BOX_S_OWN},
    {BOX_S_OWN, EV_TX_TIMEOUT, A_DRIVE_NONE | A_FORGET | A_LINE_OFF | A_TIMER, BOX_S_TURN_OWN},
    {BOX_S_OWN, EV_HANDOVER, A_DRIVE_NONE | A_LINE_OFF | A_TIMER, BOX_S_TURN_PEER},
    {BOX_S_TURN_PEER, EV_PEER_OFF, A_TIMER, BOX_S_TURN_OWN},
    {BOX_S_TURN_PEER, EV_TIMER, A_DRIVE_ANSWER, BOX_S_PEER},
    {BOX_S_PEER, EV_RX_TIMEOUT, A_RESET_RX, BOX_S_PEER},
    {BOX_S_PEER, EV_PEER_OFF, A_DRIVE_NONE | A_TIMER, BOX_S_TURN_OWN},
};

/* Duplex (an emulated line side): both engines, no bus. */
static const box_row_t table_duplex[] = {
    {ANY, EV_DOWN, A_DRIVE_NONE | A_FORGET | A_DISCARD, BOX_S_OFF},
    {BOX_S_OFF, EV_UP, A_DRIVE_DUPLEX, BOX_S_DUPLEX},
    {BOX_S_DUPLEX, EV_TX_TIMEOUT, A_RESET_TX | A_FORGET, BOX_S_DUPLEX},
    {BOX_S_DUPLEX, EV_RX_TIMEOUT, A_RESET_RX, BOX_S_DUPLEX},
};

static int own_line(const box_t *b)
{
    return b->cfg.role == BOX_ROLE_A ? BOX_LINE_DIR : BOX_LINE_BREQ;
}

static int peer_line(const box_t *b)
{
    return b->cfg.role == BOX_ROLE_A ? BOX_LINE_BREQ : BOX_LINE_DIR;
}

/* The peer's READY in the line levels `lines` (a bus without READY lines: always). */
static int peer_ready_in(const box_t *b, uint32_t lines)
{
    int line;

    if (b->cfg.absent_lines & BOX_ABSENT_READY)
        return 1;
    line = b->cfg.role == BOX_ROLE_A ? BOX_LINE_READY_B : BOX_LINE_READY_A;
    return (lines >> line) & 1u;
}

/* The peer's READY as the last poll read it. */
static int peer_ready(const box_t *b)
{
    return peer_ready_in(b, b->lines);
}

static void set_own_line(box_t *b, int on)
{
    b->bus_line = (uint8_t)on;
    b->plat->line_write(b->plat->ctx, own_line(b), on);
}

static void discard_all(box_t *b)
{
    b->stats[BOX_STAT_DISCARDED_WORDS] += out_queued(b);
    b->out_tail = b->out_head;
    b->n_gaps = 0;
    b->out_pushed = b->out_recv;
    b->n_bounds = 0;
    b->bound_ok = 1;
}

static void do_actions(box_t *b, unsigned act)
{
    const box_platform_t *p = b->plat;

    if (act & A_FORGET)
        engine_forget(b);
    if (act & A_DISCARD)
        discard_all(b);
    if (act & A_DRIVE_NONE)
        p->set_drive(p->ctx, BOX_DRIVE_NONE);
    if (act & A_LINE_OFF)
        set_own_line(b, 0);
    if (act & A_LINE_ON)
        set_own_line(b, 1);
    if (act & A_DRIVE_OWN) {
        engine_forget(b);
        p->set_drive(p->ctx, BOX_DRIVE_OWN);
    }
    if (act & A_DRIVE_ANSWER)
        p->set_drive(p->ctx, BOX_DRIVE_ANSWER);
    if (act & A_DRIVE_DUPLEX) {
        engine_forget(b);
        p->set_drive(p->ctx, BOX_DRIVE_DUPLEX);
    }
    if (act & A_RESET_TX)
        p->engine_reset(p->ctx, BOX_ENGINE_TX);
    if (act & A_RESET_RX)
        p->engine_reset(p->ctx, BOX_ENGINE_RX);
    if (act & A_TIMER)
        b->timer = b->now;
    if (act & A_BURST)
        b->burst = 0;
    if (act & A_YIELD) {
        b->yielded = 1;
        b->yield_time = b->now;
    }
    if (act & A_BUS_ERROR)
        report(b, BOX_ERR_BUS, b->state, b->out_pushed, 0);
}

static unsigned events(const box_t *b, unsigned timeouts)
{
    unsigned ev = timeouts;
    int up = b->ready && peer_ready(b);
    int peer_on = (b->lines >> peer_line(b)) & 1u;
    uint32_t turn_us = (b->cfg.turnaround_ns + 999u) / 1000u;
    int at_boundary = engine_idle(b) && b->bound_ok;

    ev |= up ? EV_UP : EV_DOWN;
    ev |= peer_on ? EV_PEER_ON : EV_PEER_OFF;
    if (elapsed(b, b->timer, turn_us ? turn_us : 1u))
        ev |= EV_TIMER;
    if (out_queued(b) && !b->bus_line &&
        (!b->yielded || elapsed(b, b->yield_time, b->cfg.handshake_timeout_us)))
        ev |= EV_WANT;
    if (b->bus_line && !peer_on)
        ev |= EV_ASKED;
    if (at_boundary && (out_queued(b) == 0 || stop_at_boundary(b)))
        ev |= EV_DONE;
    if (at_boundary && peer_on)
        ev |= EV_HANDOVER;
    return ev;
}

static const box_row_t *table_for(const box_t *b, size_t *rows)
{
    if (b->cfg.duplex) {
        *rows = sizeof table_duplex / sizeof table_duplex[0];
        return table_duplex;
    }
    if (b->cfg.role == BOX_ROLE_A) {
        *rows = sizeof table_a / sizeof table_a[0];
        return table_a;
    }
    *rows = sizeof table_b / sizeof table_b[0];
    return table_b;
}

/* One step of the arbiter: the first row matching the state and a present event. */
static int arbitrate(box_t *b, unsigned timeouts)
{
    size_t rows, i;
    const box_row_t *t = table_for(b, &rows);
    unsigned ev;

    if ((b->lines >> peer_line(b)) & 1u)
        b->yielded = 0; /* A has had the bus back */
    ev = events(b, timeouts);

    for (i = 0; i < rows; i++) {
        if ((t[i].state == ANY ? b->state != BOX_S_OFF : t[i].state == b->state) &&
            (ev & t[i].event)) {
            int changed = t[i].actions != 0 || t[i].next != b->state;
            do_actions(b, t[i].actions);
            b->state = t[i].next;
            return changed;
        }
    }
    return 0;
}

int box_bus(const box_t *b)
{
    switch (b->state) {
    case BOX_S_TURN_PEER:
    case BOX_S_TURN_OWN:
        return BOX_BUS_TURNAROUND;
    case BOX_S_PEER:
        return BOX_BUS_PEER;
    case BOX_S_OWN:
        return BOX_BUS_OWN;
    case BOX_S_DUPLEX:
        return BOX_BUS_DUPLEX;
    default:
        return BOX_BUS_IDLE;
    }
}

/* --- the line side, once a poll ------------------------------------------------ */

static void take_words(box_t *b)
{
    const box_platform_t *p = b->plat;

    while (p->rx_count(p->ctx) > 0 && b->in_taken - b->in_sent < BOX_IN_WORDS) {
        uint32_t v = p->rx_pop(p->ctx);
        uint32_t at = b->in_taken & IN_MASK;
        b->in_words[at] = (uint16_t)v;
        if (v & BOX_RX_PARITY)
            b->in_parity[at / 8] |= (uint8_t)(1u << (at % 8));
        else
            b->in_parity[at / 8] &= (uint8_t)~(1u << (at % 8));
        if (v & BOX_RX_PERR) {
            report(b, BOX_ERR_PARITY, 0, b->in_taken, v & 0x1FFFFu);
            b->stats[BOX_STAT_PERR_IN]++;
        }
        b->in_taken++;
        b->stats[BOX_STAT_WORDS_IN]++;
    }
}

/* PERR reports and completions of the send engine; returns the timeouts seen. */
static unsigned watch_engines(box_t *b)
{
    const box_platform_t *p = b->plat;
    box_engine_status_t st;
    uint32_t index;
    unsigned timeouts = 0;

    p->engine_status(p->ctx, &st);
    while (p->tx_perr_pop(p->ctx, &index)) {
        if (b->cfg.absent_lines & BOX_ABSENT_PERR)
            continue; /* no PERR line on this bus: nothing the peer says */
        if (b->eng_head - index <= BOX_ENGINE_SLOTS && delta(b->eng_head, index) > 0) {
            report(b, BOX_ERR_PARITY, 1, b->eng_pos[index % BOX_ENGINE_SLOTS], 0);
            b->stats[BOX_STAT_PERR_OUT]++;
        }
    }
    while (b->eng_tail != st.tx_done && b->eng_tail != b->eng_head) {
        b->eng_tail++;
        b->stats[BOX_STAT_WORDS_OUT]++;
    }
    /* a handshake edge not answered within handshake_timeout_us */
    if (st.tx_phase == BOX_PHASE_NONE || st.tx_phase != b->tx_phase ||
        st.tx_done != b->tx_done_seen) {
        b->tx_since = b->now;
    } else if (elapsed(b, b->tx_since, b->cfg.handshake_timeout_us)) {
        uint32_t pos = b->eng_head != b->eng_tail ? b->eng_pos[b->eng_tail % BOX_ENGINE_SLOTS]
                                                  : b->out_pushed;
        uint32_t lost = b->eng_head - b->eng_tail;
        b->stats[BOX_STAT_TIMEOUTS]++;
        lost += drop_frame_rest(b);
        b->stats[BOX_STAT_DISCARDED_WORDS] += lost - (b->eng_head - b->eng_tail);
        report(b, BOX_ERR_TIMEOUT, st.tx_phase, pos, lost);
        timeouts |= EV_TX_TIMEOUT;
        b->tx_since = b->now;
    }
    b->tx_phase = st.tx_phase;
    b->tx_done_seen = st.tx_done;
    if (st.rx_phase != BOX_PHASE_REQ_RELEASE || b->rx_phase != BOX_PHASE_REQ_RELEASE) {
        b->rx_since = b->now;
    } else if (elapsed(b, b->rx_since, b->cfg.handshake_timeout_us)) {
        uint32_t pos = b->in_taken + p->rx_count(p->ctx) - 1u;
        b->stats[BOX_STAT_TIMEOUTS]++;
        report(b, BOX_ERR_TIMEOUT, BOX_PHASE_REQ_RELEASE, pos, 0);
        timeouts |= EV_RX_TIMEOUT;
        b->rx_since = b->now;
    }
    b->rx_phase = st.rx_phase;
    return timeouts;
}

static void watch_reports(box_t *b)
{
    uint32_t key = b->lines & (1u << BOX_LINE_DIR | 1u << BOX_LINE_BREQ | 1u << BOX_LINE_READY_A |
                               1u << BOX_LINE_READY_B);
    uint32_t limit = out_limit(b);

    key |= (uint32_t)box_bus(b) << 25 | (uint32_t)b->ready << 29;
    if (key != b->ls_sent_key || elapsed(b, b->ls_time, BOX_LINE_STATE_PERIOD_US))
        b->want_line_state = 1;
    if (limit != b->credit_sent) {
        uint32_t gained = limit - b->credit_sent;
        if (gained >= BOX_OUT_WORDS / 4 || out_queued(b) == 0 ||
            elapsed(b, b->credit_time, BOX_CREDIT_PERIOD_US))
            b->want_credits = 1;
    } else if (elapsed(b, b->credit_time, BOX_KEEPALIVE_US)) {
        b->want_credits = 1;
    }
}

void box_poll(box_t *b, uint32_t now_us)
{
    unsigned timeouts, steps;

    b->now = now_us;
    b->lines = b->plat->lines_read(b->plat->ctx);
    timeouts = watch_engines(b);
    take_words(b);
    for (steps = 0; steps < 4; steps++) { /* settle: a few table steps a poll */
        if (!arbitrate(b, timeouts))
            break;
        timeouts = 0;
        b->lines = b->plat->lines_read(b->plat->ctx);
    }
    if (b->state == BOX_S_OWN || b->state == BOX_S_DUPLEX)
        push_words(b);
    watch_reports(b);
}

/* --- requests from the host ---------------------------------------------------- */

static void stream_reset(box_t *b)
{
    const box_platform_t *p = b->plat;

    p->set_drive(p->ctx, BOX_DRIVE_NONE);
    engine_forget(b);
    b->stats[BOX_STAT_DISCARDED_WORDS] += out_queued(b);
    while (p->rx_count(p->ctx) > 0)
        (void)p->rx_pop(p->ctx);
    b->out_recv = b->out_pushed = b->out_head = b->out_tail = 0;
    b->n_gaps = b->n_bounds = 0;
    b->bound_ok = 1;
    b->in_taken = b->in_sent = b->host_limit = 0;
    b->n_errors = 0;
    b->state = BOX_S_OFF;
    set_own_line(b, 0);
    b->want_credits = 1;
    b->want_line_state = 1;
}

/* Why this box cannot run the bus shape of c (NULL: it can); *field: the tag. */
static const char *shape_refused(const box_t *b, const box_config_t *c, uint8_t *field)
{
    uint32_t caps = b->info.capabilities;

    *field = BOX_FIELD_HANDSHAKE;
    if (c->handshake == BOX_HS_TWO_PHASE && !(caps & BOX_CAP_TWO_PHASE))
        return "two-phase handshake: not on this board (no TWO_PHASE)";
    if (c->handshake == BOX_HS_STROBE && !(caps & BOX_CAP_STROBE))
        return "strobe handshake: not on this board (no STROBE)";
    if (c->handshake == BOX_HS_TWO_PHASE && c->parity != BOX_PARITY_NONE &&
        !(c->absent_lines & BOX_ABSENT_PERR))
        return "two-phase: no PERR answer; control_lines must omit PERR";
    if (c->handshake == BOX_HS_STROBE && c->parity != BOX_PARITY_NONE &&
        !(c->absent_lines & BOX_ABSENT_PERR))
        return "strobe: no PERR answer; control_lines must omit PERR";
    *field = BOX_FIELD_PARITY_LINES;
    if (c->parity_bytes && c->parity != BOX_PARITY_NONE && !(caps & BOX_CAP_PARITY_BYTES))
        return "two parity lines: this board has no PARITY_HI (SPARE) GPIO";
    *field = BOX_FIELD_ABSENT_LINES;
    if ((c->absent_lines & (BOX_ABSENT_DIR | BOX_ABSENT_BREQ)) && !c->duplex)
        return "no DIR or no BREQ: the arbiter needs both to hand the bus over";
    *field = 0;
    return NULL;
}

static int config_ok(const box_t *b, const box_config_t *c)
{
    uint32_t caps = b->info.capabilities;

    if (c->handshake_timeout_us == 0 || c->active_low >> BOX_LINES)
        return 0;
    if (c->role == BOX_ROLE_A && !(caps & BOX_CAP_ROLE_A))
        return 0;
    if (c->role == BOX_ROLE_B && !(caps & BOX_CAP_ROLE_B))
        return 0;
    if (c->duplex && !(caps & BOX_CAP_DUPLEX))
        return 0;
    if (c->active_low && !(caps & BOX_CAP_POLARITY))
        return 0;
    if (c->parity != BOX_PARITY_NONE && !(c->absent_lines & BOX_ABSENT_PERR) &&
        !(caps & BOX_CAP_PERR))
        return 0;
    return 1;
}

static void configure(box_t *b, const box_config_t *c)
{
    set_own_line(b, 0);
    b->cfg = *c;
    b->plat->configure(b->plat->ctx, &b->cfg);
    set_own_line(b, 0);
    b->state = BOX_S_OFF;
}

static int known_type(uint8_t type)
{
    switch (type) {
    case BOX_HELLO: case BOX_CONFIGURE: case BOX_RESET: case BOX_LINE_SET: case BOX_QUERY:
    case BOX_WORDS_OUT: case BOX_HOST_CREDITS: case BOX_INFO: case BOX_REPLY:
    case BOX_LINE_STATE: case BOX_STATS: case BOX_ERROR: case BOX_WORDS_IN:
    case BOX_BOX_CREDITS:
        return 1;
    default:
        return 0;
    }
}

static void bad_frame(box_t *b, uint8_t reason, size_t bytes)
{
    b->stats[BOX_STAT_BAD_FRAMES]++;
    report(b, BOX_ERR_BAD_FRAME, reason, b->stats[BOX_STAT_BAD_FRAMES], (uint32_t)bytes);
}

static void handle(box_t *b, uint8_t type, uint8_t seq, const uint8_t *payload, size_t len)
{
    box_msg_t m;
    int err;

    if (!known_type(type)) {
        if (type & 0x80u)
            bad_frame(b, BOX_BAD_DIRECTION, b->rx.frame_bytes);
        else
            reply(b, type, seq, BOX_UNKNOWN_TYPE); /* a request newer than this firmware */
        return;
    }
    err = box_payload_decode(type, payload, len, &m);
    if (err == -BOX_BAD_VALUE && type == BOX_CONFIGURE) {
        reply_why(b, type, seq, BOX_BAD_PARAMETER, m.u.configure.bad_field,
                  m.u.configure.bad_field ? "a bus-shape field out of range" : NULL);
        return;
    }
    if (err < 0) {
        bad_frame(b, (uint8_t)-err, b->rx.frame_bytes);
        return;
    }
    if (type & 0x80u) {
        bad_frame(b, BOX_BAD_DIRECTION, b->rx.frame_bytes);
        return;
    }
    switch (type) {
    case BOX_HELLO:
        b->host_max_body = m.u.hello.max_body < BOX_MAX_BODY ? m.u.hello.max_body : BOX_MAX_BODY;
        if (b->host_max_body < BOX_MIN_BODY + BOX_WORDS_HEADER + 3u)
            b->host_max_body = BOX_MIN_BODY + BOX_WORDS_HEADER + 3u;
        if (m.u.hello.min_version > BOX_PROTOCOL_VERSION ||
            m.u.hello.max_version < BOX_PROTOCOL_VERSION)
            reply(b, type, seq, BOX_UNSUPPORTED_VERSION);
        b->want_info = 1;
        b->want_credits = 1;
        b->want_line_state = 1;
        break;
    case BOX_CONFIGURE: {
        const char *why;
        uint8_t field;
        if (b->ready)
            reply(b, type, seq, BOX_BUSY);
        else if (m.u.configure.unknown_field)
            reply_why(b, type, seq, BOX_UNKNOWN_FIELD, m.u.configure.unknown_field,
                      "a CONFIGURE field this firmware does not know");
        else if ((why = shape_refused(b, &m.u.configure, &field)) != NULL)
            reply_why(b, type, seq, BOX_BAD_PARAMETER, field, why);
        else if (!config_ok(b, &m.u.configure))
            reply(b, type, seq, BOX_BAD_PARAMETER);
        else {
            configure(b, &m.u.configure);
            reply(b, type, seq, BOX_OK);
        }
        break;
    }
    case BOX_RESET:
        stream_reset(b);
        if (m.u.reset_defaults) {
            box_config_t c;
            b->ready = 0;
            write_ready(b, 0);
            box_default_config(&c);
            configure(b, &c);
        }
        reply(b, type, seq, BOX_OK);
        break;
    case BOX_LINE_SET:
        b->ready = m.u.line_set_ready;
        write_ready(b, b->ready);
        reply(b, type, seq, BOX_OK);
        break;
    case BOX_QUERY:
        switch (m.u.query_what) {
        case BOX_INFO:
            b->want_info = 1;
            break;
        case BOX_LINE_STATE:
            b->want_line_state = 1;
            break;
        case BOX_STATS:
            b->want_stats = 1;
            break;
        case BOX_BOX_CREDITS:
            b->want_credits = 1;
            break;
        default:
            reply(b, type, seq, BOX_BAD_PARAMETER);
        }
        break;
    case BOX_WORDS_OUT:
        words_out(b, &m.u.words);
        break;
    case BOX_HOST_CREDITS:
        if (delta(m.u.credits.limit, b->host_limit) > 0)
            b->host_limit = m.u.credits.limit;
        break;
    default:
        break;
    }
}

static void frame_in(box_t *b)
{
    const uint8_t *body = b->rx.buf;
    uint8_t type = body[0], seq = body[1];

    if (type == BOX_HELLO) {
        b->host_seq_valid = 0;
    } else if (b->host_seq_valid && seq != b->host_seq_next) {
        report(b, BOX_ERR_LOST_FRAMES, 0, b->host_seq_next, seq);
        b->stats[BOX_STAT_LOST_FRAMES] += (uint8_t)(seq - b->host_seq_next);
    }
    b->host_seq_next = (uint8_t)(seq + 1u);
    b->host_seq_valid = 1;
    handle(b, type, seq, body + 2, b->rx.body_len - BOX_MIN_BODY);
}

size_t box_host_input(box_t *b, const uint8_t *data, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        int r = box_rx_push(&b->rx, data[i]);
        if (r == BOX_RX_FRAME) {
            frame_in(b);
        } else if (r == BOX_RX_BAD) {
            bad_frame(b, b->rx.bad_reason, b->rx.frame_bytes);
        }
    }
    return len;
}

/* --- frames to the host -------------------------------------------------------- */

static size_t words_in_frame(box_t *b, uint8_t *payload)
{
    uint32_t avail = b->in_taken - b->in_sent;
    int32_t credit = delta(b->host_limit, b->in_sent);
    uint32_t n = box_max_words_for(b->host_max_body), i;
    uint8_t *bits;

    if (credit <= 0 || avail == 0)
        return 0;
    if (avail < n)
        n = avail;
    if ((uint32_t)credit < n)
        n = (uint32_t)credit;
    put_u32(payload, b->in_sent);
    put_u16(payload + 4, (uint16_t)n);
    payload[6] = payload[7] = 0;
    bits = payload + BOX_WORDS_HEADER + 2 * n;
    memset(bits, 0, (n + 7) / 8);
    for (i = 0; i < n; i++) {
        uint32_t at = (b->in_sent + i) & IN_MASK;
        put_u16(payload + BOX_WORDS_HEADER + 2 * i, b->in_words[at]);
        bits[i / 8] |= (uint8_t)((b->in_parity[at / 8] >> (at % 8) & 1u) << (i % 8));
    }
    b->in_sent += n;
    return box_words_size(n);
}

/* Whether a LINE_STATE reporting the peer's READY down must wait: words the box took
 * from the line before the drop (in the in ring, or still in the receive engine's FIFO)
 * go to the host first, within its credit, because a host discards the words that come
 * after the drop and the peer counts them as handed over (docs/box-protocol.md, section
 * 6). Only the LINE_STATE waits: REPLYs, INFO, ERRORs, CREDITS and STATS do not. */
static int drop_waits_for_words(const box_t *b)
{
    return b->want_line_state && !peer_ready(b) &&
           (b->in_taken != b->in_sent || b->plat->rx_count(b->plat->ctx) > 0);
}

/* Compose the next frame by priority; 0 when there is nothing to send. */
static int next_frame(box_t *b)
{
    box_msg_t m;
    uint8_t *payload = b->body + 2;
    long n = 0;

    memset(&m, 0, sizeof m);
    if (b->n_replies) {
        m.type = BOX_REPLY;
        m.u.reply = b->replies[0];
        memmove(b->replies, b->replies + 1, --b->n_replies * sizeof b->replies[0]);
    } else if (b->want_info) {
        b->want_info = 0;
        m.type = BOX_INFO;
        m.u.info = b->info;
        m.u.info.max_words = box_max_words_for(b->host_max_body);
    } else if (b->n_errors) {
        m.type = BOX_ERROR;
        m.u.error = b->errors[0];
        memmove(b->errors, b->errors + 1, --b->n_errors * sizeof b->errors[0]);
    } else if (drop_waits_for_words(b) && (n = (long)words_in_frame(b, payload)) > 0) {
        m.type = BOX_WORDS_IN; /* the words before the peer's drop, then its LINE_STATE */
    } else if (b->want_line_state && !drop_waits_for_words(b)) {
        b->want_line_state = 0;
        m.type = BOX_LINE_STATE;
        m.u.line_state.levels = b->lines;
        m.u.line_state.bus = (uint8_t)box_bus(b);
        m.u.line_state.ready = b->ready;
        m.u.line_state.peer_ready = (uint8_t)peer_ready(b);
        m.u.line_state.role = b->cfg.role;
        b->ls_sent_key = (b->lines & (1u << BOX_LINE_DIR | 1u << BOX_LINE_BREQ |
                                      1u << BOX_LINE_READY_A | 1u << BOX_LINE_READY_B)) |
                         (uint32_t)box_bus(b) << 25 | (uint32_t)b->ready << 29;
        b->ls_time = b->now;
    } else if (b->want_credits) {
        b->want_credits = 0;
        m.type = BOX_BOX_CREDITS;
        m.u.credits.received = b->out_recv;
        m.u.credits.limit = out_limit(b);
        b->credit_sent = m.u.credits.limit;
        b->credit_time = b->now;
    } else if (b->want_stats) {
        b->want_stats = 0;
        m.type = BOX_STATS;
        memcpy(m.u.stats.v, b->stats, sizeof b->stats);
    } else {
        n = (long)words_in_frame(b, payload);
        if (n == 0)
            return 0;
        m.type = BOX_WORDS_IN;
    }
    if (m.type != BOX_WORDS_IN)
        n = box_payload_encode(&m, payload, BOX_MAX_BODY - BOX_MIN_BODY);
    if (n < 0)
        return 0;
    b->wire_len = box_wire_from_body(b->body, box_body_finish(b->body, m.type, b->tx_seq++,
                                                              (size_t)n), b->wire);
    b->wire_pos = 0;
    return 1;
}

size_t box_host_output(box_t *b, uint8_t *out, size_t cap)
{
    size_t n = 0;

    while (n < cap) {
        size_t k;
        if (b->wire_pos == b->wire_len && !next_frame(b))
            break;
        k = b->wire_len - b->wire_pos;
        if (k > cap - n)
            k = cap - n;
        memcpy(out + n, b->wire + b->wire_pos, k);
        b->wire_pos += k;
        n += k;
    }
    return n;
}

/* --- set-up ---------------------------------------------------------------------- */

void box_init(box_t *b, const box_platform_t *plat, uint32_t capabilities, const char *board,
              const uint8_t *pins)
{
    unsigned i;
    size_t name = strlen(board);

    memset(b, 0, sizeof *b);
    b->plat = plat;
    box_rx_init(&b->rx, BOX_MAX_BODY);
    b->host_max_body = BOX_MAX_BODY;
    b->info.version = BOX_PROTOCOL_VERSION;
    b->info.firmware[0] = BOX_FW_MAJOR;
    b->info.firmware[1] = BOX_FW_MINOR;
    b->info.firmware[2] = BOX_FW_PATCH;
    b->info.capabilities = capabilities | BOX_CAP_SHAPE; /* this core reads them */
    b->info.out_words = BOX_OUT_WORDS;
    b->info.in_words = BOX_IN_WORDS;
    b->info.max_body = BOX_MAX_BODY;
    b->info.max_words = box_max_words_for(BOX_MAX_BODY);
    b->info.build = BOX_BUILD;
    for (i = 0; i < BOX_LINES; i++) {
        b->info.pins[2 * i] = pins ? pins[2 * i] : (uint8_t)(2 * i + 1);
        b->info.pins[2 * i + 1] = pins ? pins[2 * i + 1] : (uint8_t)(2 * i + 2);
    }
    if (name > BOX_BOARD_MAX)
        name = BOX_BOARD_MAX;
    memcpy(b->info.board, board, name);
    b->info.board[name] = 0;
    b->bound_ok = 1;
    b->state = BOX_S_OFF;
    box_default_config(&b->cfg);
    plat->configure(plat->ctx, &b->cfg);
    plat->set_drive(plat->ctx, BOX_DRIVE_NONE);
    plat->line_write(plat->ctx, BOX_LINE_READY_B, 0);
    plat->line_write(plat->ctx, BOX_LINE_BREQ, 0);
    b->want_credits = 1;
    b->want_line_state = 1;
}

/* An emulated line side behind platform.h, and the libboxcore API (boxsim.h). */
#include "boxsim.h"

#include <stdlib.h>
#include <string.h>

#include "box.h"
#include "parity.h"
#include "version.h"

#define PERR_DEPTH 32u

struct boxsim {
    box_t box;
    box_platform_t plat;
    box_config_t cfg;
    int drive;
    uint32_t tx_fifo[BOXSIM_TX_DEPTH]; /* word | parity << 16 */
    uint32_t tx_head, tx_tail, tx_done;
    uint32_t perr[PERR_DEPTH];
    uint32_t perr_head, perr_tail;
    uint32_t rx_fifo[BOXSIM_RX_DEPTH];
    uint32_t rx_head, rx_tail;
    int hold_req;    /* fault armed */
    int rx_stuck;    /* ACK asserted, REQ never drops */
    int rx_wait_low; /* engine restarted: waits for REQ to be seen deasserted */
    uint32_t own_lines, peer_lines;
    uint32_t last; /* last word on the data lines (word | parity << 16) */
};

static int tx_running(const boxsim_t *s)
{
    return s->drive == BOX_DRIVE_OWN || s->drive == BOX_DRIVE_DUPLEX;
}

static int rx_running(const boxsim_t *s)
{
    return s->drive == BOX_DRIVE_ANSWER || s->drive == BOX_DRIVE_DUPLEX;
}

static void tx_clear(boxsim_t *s)
{
    s->tx_head = s->tx_tail = s->tx_done = 0;
}

static void p_configure(void *ctx, const box_config_t *cfg)
{
    ((boxsim_t *)ctx)->cfg = *cfg;
}

static void p_set_drive(void *ctx, int mode)
{
    boxsim_t *s = ctx;
    s->drive = mode;
    tx_clear(s); /* engines restart with counters at 0; received words stay readable */
    s->rx_wait_low = s->rx_wait_low || s->rx_stuck; /* REQ still up: wait for it to drop */
    s->rx_stuck = 0;
}

static unsigned p_tx_room(void *ctx)
{
    boxsim_t *s = ctx;
    return tx_running(s) ? BOXSIM_TX_DEPTH - (s->tx_head - s->tx_tail) : 0u;
}

static void p_tx_push(void *ctx, uint16_t word, uint8_t parity)
{
    boxsim_t *s = ctx;
    if (s->tx_head - s->tx_tail < BOXSIM_TX_DEPTH)
        s->tx_fifo[s->tx_head++ % BOXSIM_TX_DEPTH] = word | (uint32_t)(parity & 1u) << 16;
}

static int p_tx_perr_pop(void *ctx, uint32_t *index)
{
    boxsim_t *s = ctx;
    if (s->perr_head == s->perr_tail)
        return 0;
    *index = s->perr[s->perr_tail++ % PERR_DEPTH];
    return 1;
}

static unsigned p_rx_count(void *ctx)
{
    boxsim_t *s = ctx;
    return s->rx_head - s->rx_tail;
}

static uint32_t p_rx_pop(void *ctx)
{
    boxsim_t *s = ctx;
    return s->rx_head == s->rx_tail ? 0u : s->rx_fifo[s->rx_tail++ % BOXSIM_RX_DEPTH];
}

static void p_engine_status(void *ctx, box_engine_status_t *st)
{
    boxsim_t *s = ctx;
    st->tx_done = s->tx_done;
    st->tx_phase = (uint8_t)(tx_running(s) && s->tx_head != s->tx_tail ? BOX_PHASE_ACK_ASSERT
                                                                       : BOX_PHASE_NONE);
    st->rx_phase = (uint8_t)(s->rx_stuck ? BOX_PHASE_REQ_RELEASE : BOX_PHASE_NONE);
}

static void p_engine_reset(void *ctx, int which)
{
    boxsim_t *s = ctx;
    if (which == BOX_ENGINE_TX)
        tx_clear(s);
    if (which == BOX_ENGINE_RX) {
        s->rx_wait_low = s->rx_wait_low || s->rx_stuck;
        s->rx_stuck = 0;
    }
}

static uint32_t p_lines_read(void *ctx)
{
    boxsim_t *s = ctx;
    uint32_t peer = s->box.cfg.role == BOX_ROLE_A
                        ? (1u << BOX_LINE_READY_B | 1u << BOX_LINE_BREQ)
                        : (1u << BOX_LINE_READY_A | 1u << BOX_LINE_DIR);
    uint32_t v = (s->own_lines & ~peer) | (s->peer_lines & peer);
    v |= s->last & 0x1FFFFu;
    if (s->rx_stuck)
        v |= 1u << BOX_LINE_REQ | 1u << BOX_LINE_ACK;
    if (tx_running(s) && s->tx_head != s->tx_tail)
        v |= 1u << BOX_LINE_REQ;
    return v;
}

static void p_line_write(void *ctx, int line, int level)
{
    boxsim_t *s = ctx;
    if (level)
        s->own_lines |= 1u << line;
    else
        s->own_lines &= ~(1u << line);
}

const char *boxsim_version(void)
{
    static char v[16];
    v[0] = (char)('0' + BOX_FW_MAJOR);
    v[1] = '.';
    v[2] = (char)('0' + BOX_FW_MINOR);
    v[3] = '.';
    v[4] = (char)('0' + BOX_FW_PATCH);
    v[5] = 0;
    return v;
}

boxsim_t *boxsim_new(void)
{
    boxsim_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->plat.ctx = s;
    s->plat.configure = p_configure;
    s->plat.set_drive = p_set_drive;
    s->plat.tx_room = p_tx_room;
    s->plat.tx_push = p_tx_push;
    s->plat.tx_perr_pop = p_tx_perr_pop;
    s->plat.rx_count = p_rx_count;
    s->plat.rx_pop = p_rx_pop;
    s->plat.engine_status = p_engine_status;
    s->plat.engine_reset = p_engine_reset;
    s->plat.lines_read = p_lines_read;
    s->plat.line_write = p_line_write;
    box_init(&s->box, &s->plat,
             BOX_CAP_ROLE_B | BOX_CAP_ROLE_A | BOX_CAP_PERR | BOX_CAP_DUPLEX | BOX_CAP_POLARITY |
                 BOX_CAP_PARITY_BYTES | BOX_CAP_TWO_PHASE | BOX_CAP_STROBE,
             "boxsim", NULL);
    return s;
}

void boxsim_free(boxsim_t *sim)
{
    free(sim);
}

size_t boxsim_host_write(boxsim_t *sim, const uint8_t *data, size_t len)
{
    return box_host_input(&sim->box, data, len);
}

size_t boxsim_host_read(boxsim_t *sim, uint8_t *out, size_t cap)
{
    return box_host_output(&sim->box, out, cap);
}

void boxsim_poll(boxsim_t *sim, uint32_t now_us)
{
    box_poll(&sim->box, now_us);
}

size_t boxsim_line_take(boxsim_t *sim, uint16_t *words, uint8_t *parity, size_t max)
{
    size_t n = 0;

    if (!tx_running(sim))
        return 0;
    while (n < max && sim->tx_tail != sim->tx_head) {
        uint32_t v = sim->tx_fifo[sim->tx_tail++ % BOXSIM_TX_DEPTH];
        uint16_t w = (uint16_t)v;
        uint8_t p = (uint8_t)(v >> 16 & 1u);
        if (parity_bad(w, p, sim->cfg.parity) && sim->perr_head - sim->perr_tail < PERR_DEPTH)
            sim->perr[sim->perr_head++ % PERR_DEPTH] = sim->tx_done;
        sim->tx_done++;
        sim->last = v;
        words[n] = w;
        parity[n] = p;
        n++;
    }
    return n;
}

size_t boxsim_line_put(boxsim_t *sim, const uint16_t *words, const uint8_t *parity, size_t n)
{
    size_t i;

    if (!rx_running(sim) || sim->rx_stuck || sim->rx_wait_low)
        return 0;
    for (i = 0; i < n; i++) {
        uint8_t p = parity[i] & 1u;
        uint32_t v = words[i] | (uint32_t)p << 16;
        if (sim->rx_head - sim->rx_tail == BOXSIM_RX_DEPTH)
            break; /* the engine's FIFO is full: ACK is held back, the peer waits */
        if (parity_bad(words[i], p, sim->cfg.parity))
            v |= BOX_RX_PERR;
        sim->rx_fifo[sim->rx_head++ % BOXSIM_RX_DEPTH] = v;
        sim->last = v & 0x1FFFFu;
        if (sim->hold_req) {
            sim->rx_stuck = 1;
            return i + 1;
        }
    }
    return i;
}

void boxsim_set_peer_lines(boxsim_t *sim, uint32_t levels)
{
    sim->peer_lines = levels;
}

int boxsim_ready(boxsim_t *sim)
{
    return sim->box.ready;
}

uint32_t boxsim_lines(boxsim_t *sim)
{
    return p_lines_read(sim);
}

void boxsim_hold_req(boxsim_t *sim, int hold)
{
    sim->hold_req = hold;
    if (!hold) {
        sim->rx_stuck = 0;
        sim->rx_wait_low = 0;
    }
}

int boxsim_bus(boxsim_t *sim)
{
    return box_bus(&sim->box);
}

int boxsim_drive(boxsim_t *sim)
{
    return sim->drive;
}

uint32_t boxsim_stat(boxsim_t *sim, int which)
{
    return which >= 0 && which < BOX_STAT_COUNT ? sim->box.stats[which] : 0u;
}

/* Interface box firmware for the RP2040 (Raspberry Pi Pico): the thin glue
 * between the portable core (firmware/src, box.h) and the chip. PIO0 runs
 * acr_send (SM0) and acr_bus (SM1); PIO1 runs acr_recv (SM0). CONFIGURE's handshake
 * swaps acr_send/acr_recv for acr_send_2ph/acr_recv_2ph (two-phase) or
 * acr_send_strobe/acr_recv_strobe (strobe), with the drivers off. The host link is
 * USB CDC through TinyUSB. Build: firmware/README.md (Pico SDK).
 *
 * Everything runs in one loop on core 0: tud_task(), host bytes in, box_poll(),
 * host bytes out. The PIO state machines run the handshake on their own; the
 * loop only feeds and drains their FIFOs and watches for stalls. */
#include <string.h>

#include "hardware/clocks.h"
#include "hardware/gpio.h"
#include "hardware/pio.h"
#include "pico/stdlib.h"
#include "tusb.h"

#include "acr_bus.pio.h"
#include "acr_recv.pio.h"
#include "acr_recv_2ph.pio.h"
#include "acr_recv_strobe.pio.h"
#include "acr_send.pio.h"
#include "acr_send_2ph.pio.h"
#include "acr_send_strobe.pio.h"
#include "board.h"
#include "box.h"
#include "parity.h"

#define TX_PIO pio0
#define RX_PIO pio1
#define SM_SEND 0
#define SM_BUS 1
#define SM_RECV 0

static box_t box;
static box_platform_t plat;

static struct {
    uint off_send, off_bus, off_recv;
    uint32_t setup_hold; /* bits 17-31 of every word handed to acr_send */
    uint recv_entry;
    uint8_t parity;
    int drive;
    uint32_t pushed; /* words handed to acr_send since its start */
    uint8_t handshake; /* enum box_handshake of the programs loaded */
} g;

static const pio_program_t *const send_programs[] = {
    &acr_send_program, &acr_send_2ph_program, &acr_send_strobe_program};
static const pio_program_t *const recv_programs[] = {
    &acr_recv_program, &acr_recv_2ph_program, &acr_recv_strobe_program};

static void load_programs(uint8_t handshake);

/* line bit (enum box_line) -> GPIO, -1 where the board has no such line */
static const int8_t line_gpio[BOX_LINES] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    PIN_PARITY, PIN_REQ, PIN_ACK, PIN_DIR, PIN_READY_A, PIN_READY_B, PIN_PERR, PIN_BREQ, -1,
};

static uint32_t ns_to_loops(uint32_t ns, uint32_t max)
{
    uint32_t cycle_ps = 1000000000u / (clock_get_hz(clk_sys) / 1000u); /* ~8000 at 125 MHz */
    uint32_t cycles = (ns * 1000u + cycle_ps - 1u) / cycle_ps;
    cycles = cycles > 2u ? cycles - 2u : 0u; /* the program adds 2 cycles itself */
    return cycles > max ? max : cycles;
}

static void p_configure(void *ctx, const box_config_t *cfg)
{
    int line;
    (void)ctx;
    for (line = 0; line < (int)BOX_LINES; line++) {
        int pin = line_gpio[line];
        int inv = ((cfg->active_low ^ BOARD_INVERT_MASK) >> line) & 1u;
        if (pin < 0)
            continue;
        gpio_set_inover((uint)pin, inv ? GPIO_OVERRIDE_INVERT : GPIO_OVERRIDE_NORMAL);
        gpio_set_outover((uint)pin, inv ? GPIO_OVERRIDE_INVERT : GPIO_OVERRIDE_NORMAL);
    }
    if (cfg->absent_lines & BOX_ABSENT_PERR) {
        /* no PERR line: acr_recv's PERR side-set never reaches the pin, and acr_send's
         * `jmp pin` reads it deasserted (whatever the unconnected receiver says) */
        gpio_set_oeover(PIN_PERR, GPIO_OVERRIDE_LOW);
        gpio_set_inover(PIN_PERR, GPIO_OVERRIDE_LOW);
    } else {
        gpio_set_oeover(PIN_PERR, GPIO_OVERRIDE_NORMAL);
    }
    g.setup_hold = ns_to_loops(cfg->setup_ns, 127u) << 17 | ns_to_loops(cfg->hold_ns, 255u) << 24;
    g.parity = cfg->parity;
    load_programs(cfg->handshake);
    if (g.handshake == BOX_HS_TWO_PHASE)
        g.recv_entry = g.off_recv + acr_recv_2ph_offset_start;
    else if (g.handshake == BOX_HS_STROBE)
        g.recv_entry = g.off_recv + acr_recv_strobe_offset_start;
    else
        g.recv_entry = g.off_recv + (cfg->parity == BOX_PARITY_NONE ? acr_recv_offset_start_nocheck
                                                                    : acr_recv_offset_start_check);
}

/* acr_bus: go to state `target` (an offset in the program) with these directions. */
static void bus_to(uint target, uint32_t dirs)
{
    pio_sm_put_blocking(TX_PIO, SM_BUS, dirs | (g.off_bus + target) << 18);
    while (!pio_sm_is_tx_fifo_empty(TX_PIO, SM_BUS) || pio_sm_get_pc(TX_PIO, SM_BUS) != g.off_bus + target)
        tight_loop_contents();
}

static void send_start(void)
{
    pio_sm_set_enabled(TX_PIO, SM_SEND, false);
    pio_sm_clear_fifos(TX_PIO, SM_SEND);
    pio_sm_restart(TX_PIO, SM_SEND);
    pio_sm_exec(TX_PIO, SM_SEND, pio_encode_set(pio_x, 0));
    pio_sm_exec(TX_PIO, SM_SEND, pio_encode_jmp(g.off_send) | pio_encode_sideset(1, 0)); /* REQ low */
    g.pushed = 0;
    pio_sm_set_enabled(TX_PIO, SM_SEND, true);
}

static void send_stop(void)
{
    pio_sm_set_enabled(TX_PIO, SM_SEND, false);
    pio_sm_exec(TX_PIO, SM_SEND, pio_encode_jmp(g.off_send) | pio_encode_sideset(1, 0));
    pio_sm_drain_tx_fifo(TX_PIO, SM_SEND); /* words not sent are lost (the core counts them) */
}

/* Start acr_recv; received words already in its RX FIFO stay there. */
static void recv_start(void)
{
    pio_sm_set_enabled(RX_PIO, SM_RECV, false);
    pio_sm_restart(RX_PIO, SM_RECV);
    pio_sm_exec(RX_PIO, SM_RECV, pio_encode_set(pio_x, g.parity == BOX_PARITY_EVEN ? 1 : 0));
    pio_sm_exec(RX_PIO, SM_RECV, pio_encode_jmp(g.recv_entry) | pio_encode_sideset(2, 0));
    pio_sm_set_enabled(RX_PIO, SM_RECV, true);
}

static void recv_stop(void)
{
    pio_sm_set_enabled(RX_PIO, SM_RECV, false);
    pio_sm_exec(RX_PIO, SM_RECV, pio_encode_jmp(g.recv_entry) | pio_encode_sideset(2, 0));
    pio_sm_set_pindirs_with_mask(RX_PIO, SM_RECV, 0, 1u << PIN_ACK | 1u << PIN_PERR);
}

static void p_set_drive(void *ctx, int mode)
{
    (void)ctx;
    /* drivers off and everything released first, whatever comes next */
    bus_to(acr_bus_offset_idle, 0);
    send_stop();
    recv_stop();
    g.drive = mode;
    if (mode == BOX_DRIVE_OWN) {
        send_start();
        bus_to(acr_bus_offset_own, (1u << BUS_PINS) - 1u);
    } else if (mode == BOX_DRIVE_ANSWER) {
        recv_start(); /* ACK, PERR outputs (deasserted) before their drivers turn on */
        bus_to(acr_bus_offset_answer, 0);
    }
}

static unsigned p_tx_room(void *ctx)
{
    (void)ctx;
    if (g.drive != BOX_DRIVE_OWN)
        return 0;
    return 4u - pio_sm_get_tx_fifo_level(TX_PIO, SM_SEND);
}

static void p_tx_push(void *ctx, uint16_t word, uint8_t parity)
{
    (void)ctx;
    pio_sm_put(TX_PIO, SM_SEND, word | (uint32_t)(parity & 1u) << 16 | g.setup_hold);
    g.pushed++;
}

static int p_tx_perr_pop(void *ctx, uint32_t *index)
{
    (void)ctx;
    if (pio_sm_is_rx_fifo_empty(TX_PIO, SM_SEND))
        return 0;
    *index = 0u - pio_sm_get(TX_PIO, SM_SEND); /* acr_send pushes X = -index */
    return 1;
}

static unsigned p_rx_count(void *ctx)
{
    (void)ctx;
    return pio_sm_get_rx_fifo_level(RX_PIO, SM_RECV);
}

static uint32_t p_rx_pop(void *ctx)
{
    uint32_t v;
    (void)ctx;
    v = pio_sm_get(RX_PIO, SM_RECV) & 0x1FFFFu;
    if (parity_bad((uint16_t)v, (uint8_t)(v >> 16), g.parity))
        v |= BOX_RX_PERR; /* acr_recv answered it with PERR */
    return v;
}

static void p_engine_status(void *ctx, box_engine_status_t *st)
{
    uint pc = pio_sm_get_pc(TX_PIO, SM_SEND) - g.off_send;
    uint rpc = pio_sm_get_pc(RX_PIO, SM_RECV) - g.off_recv;
    int idle;
    (void)ctx;
    /* at `pull` or at `jmp x--`: no word in the handshake */
    if (g.handshake == BOX_HS_TWO_PHASE) {
        idle = pc == acr_send_2ph_offset_top || pc == acr_send_2ph_offset_top_odd ||
               pc == acr_send_2ph_offset_done_rise || pc == acr_send_2ph_offset_done_fall;
        st->tx_phase = pc == acr_send_2ph_offset_ack_rise   ? BOX_PHASE_ACK_ASSERT
                       : pc == acr_send_2ph_offset_ack_fall ? BOX_PHASE_ACK_RELEASE
                                                            : BOX_PHASE_NONE;
    } else if (g.handshake == BOX_HS_STROBE) {
        idle = pc == acr_send_strobe_offset_top || pc == acr_send_strobe_offset_done;
        st->tx_phase = BOX_PHASE_NONE; /* nothing to wait for */
    } else {
        idle = pc == acr_send_offset_top || pc == acr_send_offset_done;
        st->tx_phase = pc == acr_send_offset_ack_assert    ? BOX_PHASE_ACK_ASSERT
                       : pc == acr_send_offset_ack_release ? BOX_PHASE_ACK_RELEASE
                                                           : BOX_PHASE_NONE;
    }
    st->tx_done = g.pushed - pio_sm_get_tx_fifo_level(TX_PIO, SM_SEND) - (idle ? 0u : 1u);
    if (g.drive != BOX_DRIVE_OWN)
        st->tx_phase = BOX_PHASE_NONE;
    /* two-phase and strobe: a receiver waiting for REQ waits for the next word, not
     * for an answer, so it has no phase to time out */
    st->rx_phase = (g.drive == BOX_DRIVE_ANSWER && g.handshake == BOX_HS_FOUR_PHASE &&
                    (rpc == acr_recv_offset_good_ack || rpc == acr_recv_offset_bad_ack ||
                     rpc == acr_recv_offset_nocheck_ack))
                       ? BOX_PHASE_REQ_RELEASE
                       : BOX_PHASE_NONE;
}

static void p_engine_reset(void *ctx, int which)
{
    (void)ctx;
    if (which == BOX_ENGINE_TX && g.drive == BOX_DRIVE_OWN)
        send_start();
    if (which == BOX_ENGINE_RX && g.drive == BOX_DRIVE_ANSWER)
        recv_start(); /* drops ACK, PERR; waits for REQ low before the next word */
}

static uint32_t p_lines_read(void *ctx)
{
    uint32_t all = gpio_get_all(), v = 0;
    int line;
    (void)ctx;
    for (line = 0; line < (int)BOX_LINES; line++)
        if (line_gpio[line] >= 0 && (all >> line_gpio[line] & 1u))
            v |= 1u << line;
    return v;
}

static void p_line_write(void *ctx, int line, int level)
{
    (void)ctx;
    if (line == BOX_LINE_READY_B)
        gpio_put(PIN_READY_B, level != 0);
    else if (line == BOX_LINE_BREQ)
        gpio_put(PIN_BREQ, level != 0);
    /* DIR and READY_A are inputs on this board (role B only) */
}

static void pio_setup(void)
{
    pio_sm_config c;
    uint pin;

    for (pin = PIN_D0; pin < PIN_D0 + BUS_PINS; pin++)
        pio_gpio_init(TX_PIO, pin); /* D0-D15, PARITY, REQ: PIO0 drives them */
    pio_gpio_init(TX_PIO, PIN_DE_OWN);
    pio_gpio_init(TX_PIO, PIN_DE_ANS);
    pio_gpio_init(RX_PIO, PIN_ACK); /* ACK, PERR: PIO1 (acr_recv) drives them */
    pio_gpio_init(RX_PIO, PIN_PERR);

    /* acr_bus first: the send programs, swapped by CONFIGURE, then share one free run */
    g.off_bus = pio_add_program(TX_PIO, &acr_bus_program);
    c = acr_bus_program_get_default_config(g.off_bus);
    sm_config_set_out_pins(&c, PIN_D0, BUS_PINS);
    sm_config_set_sideset_pins(&c, PIN_DE_OWN);
    sm_config_set_out_shift(&c, true, false, 32);
    pio_sm_set_pindirs_with_mask(TX_PIO, SM_BUS, 1u << PIN_DE_OWN | 1u << PIN_DE_ANS,
                                 1u << PIN_DE_OWN | 1u << PIN_DE_ANS);
    pio_sm_init(TX_PIO, SM_BUS, g.off_bus + acr_bus_offset_idle, &c);
    pio_sm_set_enabled(TX_PIO, SM_BUS, true);

    g.handshake = 0xFF; /* nothing loaded yet */
    load_programs(BOX_HS_FOUR_PHASE);
}

/* Load the send and receive programs of a handshake mode in place of the others (only
 * with the drivers off: p_configure, pio_setup). */
static void load_programs(uint8_t handshake)
{
    pio_sm_config c;

    if (handshake == g.handshake)
        return;
    if (g.handshake <= BOX_HS_STROBE) {
        pio_sm_set_enabled(TX_PIO, SM_SEND, false);
        pio_sm_set_enabled(RX_PIO, SM_RECV, false);
        pio_remove_program(TX_PIO, send_programs[g.handshake], g.off_send);
        pio_remove_program(RX_PIO, recv_programs[g.handshake], g.off_recv);
    }
    g.handshake = handshake;
    g.off_send = pio_add_program(TX_PIO, send_programs[handshake]);
    if (handshake == BOX_HS_TWO_PHASE)
        c = acr_send_2ph_program_get_default_config(g.off_send);
    else if (handshake == BOX_HS_STROBE)
        c = acr_send_strobe_program_get_default_config(g.off_send);
    else
        c = acr_send_program_get_default_config(g.off_send);
    sm_config_set_out_pins(&c, PIN_D0, 17);
    sm_config_set_sideset_pins(&c, PIN_REQ);
    sm_config_set_jmp_pin(&c, PIN_PERR);
    sm_config_set_out_shift(&c, true, false, 32);
    sm_config_set_in_shift(&c, false, false, 32);
    pio_sm_init(TX_PIO, SM_SEND, g.off_send, &c);

    g.off_recv = pio_add_program(RX_PIO, recv_programs[handshake]);
    if (handshake == BOX_HS_TWO_PHASE)
        c = acr_recv_2ph_program_get_default_config(g.off_recv);
    else if (handshake == BOX_HS_STROBE)
        c = acr_recv_strobe_program_get_default_config(g.off_recv);
    else
        c = acr_recv_program_get_default_config(g.off_recv);
    sm_config_set_in_pins(&c, PIN_D0);
    sm_config_set_sideset_pins(&c, PIN_ACK);
    sm_config_set_set_pins(&c, PIN_ACK, 2);
    sm_config_set_in_shift(&c, false, false, 32);
    sm_config_set_out_shift(&c, false, false, 32);
    pio_sm_init(RX_PIO, SM_RECV, g.off_recv, &c);
}

static void gpio_setup(void)
{
    /* everything high impedance until the core says otherwise (docs/hardware.md) */
    gpio_init(PIN_DIR);
    gpio_set_dir(PIN_DIR, GPIO_IN);
    gpio_init(PIN_READY_A);
    gpio_set_dir(PIN_READY_A, GPIO_IN);
    gpio_init(PIN_READY_B);
    gpio_put(PIN_READY_B, 0);
    gpio_set_dir(PIN_READY_B, GPIO_OUT);
    gpio_init(PIN_BREQ);
    gpio_put(PIN_BREQ, 0);
    gpio_set_dir(PIN_BREQ, GPIO_OUT);
}

int main(void)
{
    static uint8_t in[256], out[256];

    gpio_setup();
    pio_setup();
    tusb_init();

    plat.ctx = NULL;
    plat.configure = p_configure;
    plat.set_drive = p_set_drive;
    plat.tx_room = p_tx_room;
    plat.tx_push = p_tx_push;
    plat.tx_perr_pop = p_tx_perr_pop;
    plat.rx_count = p_rx_count;
    plat.rx_pop = p_rx_pop;
    plat.engine_status = p_engine_status;
    plat.engine_reset = p_engine_reset;
    plat.lines_read = p_lines_read;
    plat.line_write = p_line_write;
    box_init(&box, &plat,
             BOX_CAP_ROLE_B | BOX_CAP_PERR | BOX_CAP_POLARITY | BOX_CAP_TWO_PHASE | BOX_CAP_STROBE,
             "acrnema-box pico",
             NULL);

    for (;;) {
        uint32_t n;
        tud_task();
        if (tud_cdc_available()) {
            n = tud_cdc_read(in, sizeof in);
            box_host_input(&box, in, n);
        }
        box_poll(&box, time_us_32());
        if (tud_cdc_connected()) {
            uint32_t room = tud_cdc_write_available();
            if (room > sizeof out)
                room = sizeof out;
            n = room ? (uint32_t)box_host_output(&box, out, room) : 0u;
            if (n) {
                tud_cdc_write(out, n);
                tud_cdc_write_flush();
            }
        }
    }
}

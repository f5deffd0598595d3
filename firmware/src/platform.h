/* What the portable core (box.c) needs from a board: the line-side engines, the
 * bus drivers and the control lines. Two implementations: firmware/rp2040/main.c
 * (PIO state machines and GPIO) and firmware/sim/boxsim.c (an emulated line side
 * for host tests and libboxcore.so).
 *
 * Time is not a hook: the main loop passes it to box_poll() (sans-I/O style, as
 * the host stack is told the time). Every hook is called from the core's thread
 * only, never from an interrupt; none may block. */
#ifndef BOX_PLATFORM_H
#define BOX_PLATFORM_H

#include <stdint.h>

struct box_config;

/* Which transceivers drive the cable (docs/hardware.md, "Bus direction"). */
enum box_drive {
    BOX_DRIVE_NONE = 0,   /* all bus drivers off (high impedance); engines stopped */
    BOX_DRIVE_OWN = 1,    /* D0-D15, PARITY, REQ driven; the send engine runs */
    BOX_DRIVE_ANSWER = 2, /* ACK, PERR driven; the receive engine runs */
    BOX_DRIVE_DUPLEX = 3  /* both engines, no bus (emulated line sides only) */
};

/* A word taken by the receive engine: bits 0-15 the word, bit 16 its PARITY
 * line, bit 17 set if the engine answered it with PERR. */
#define BOX_RX_PARITY (1u << 16)
#define BOX_RX_PERR (1u << 17)

enum { BOX_ENGINE_TX = 1, BOX_ENGINE_RX = 2 };

typedef struct box_engine_status {
    uint32_t tx_done; /* words whose handshake completed since the engine started */
    uint8_t tx_phase; /* enum box_phase: 0 idle, ACK_ASSERT or ACK_RELEASE */
    uint8_t rx_phase; /* 0, or BOX_PHASE_REQ_RELEASE while ACK waits for REQ to drop */
} box_engine_status_t;

typedef struct box_platform {
    void *ctx;
    /* Apply polarity (active_low), parity mode of the receive engine's check and
     * setup/hold times. Called only with the drivers off (BOX_DRIVE_NONE). */
    void (*configure)(void *ctx, const struct box_config *cfg);
    /* Change the bus drivers, in the safe order (drivers off before pins turn
     * round); (re)starts the engine(s) the mode needs with empty FIFOs and the
     * engine counters at 0. */
    void (*set_drive)(void *ctx, int mode);
    /* Send engine: room in its FIFO, and a word to hand it (word, parity line). */
    unsigned (*tx_room)(void *ctx);
    void (*tx_push)(void *ctx, uint16_t word, uint8_t parity);
    /* Index (counted from the engine's start) of a sent word the peer answered
     * with PERR; returns 0 when there is none, 1 with *index set. */
    int (*tx_perr_pop)(void *ctx, uint32_t *index);
    /* Receive engine: words waiting, and the next one (BOX_RX_* bits). */
    unsigned (*rx_count)(void *ctx);
    uint32_t (*rx_pop)(void *ctx);
    void (*engine_status)(void *ctx, box_engine_status_t *st);
    /* Stop and restart one engine after a handshake timeout: BOX_ENGINE_TX drops
     * the words it holds and drops REQ; BOX_ENGINE_RX drops ACK and PERR, keeps the
     * words it took, and takes no new word until REQ has been seen deasserted. */
    void (*engine_reset)(void *ctx, int which);
    /* Control lines, logical levels (polarity applied): bit i = line i in the
     * order of enum box_line. */
    uint32_t (*lines_read)(void *ctx);
    /* Drive one of this side's control lines (READY_x, DIR or BREQ). */
    void (*line_write)(void *ctx, int line, int level);
} box_platform_t;

#endif

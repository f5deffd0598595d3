/* GPIO map of the reference board: a Raspberry Pi Pico (RP2040) with EIA-485
 * transceivers (docs/hardware.md). The PIO programs in firmware/pio use
 * these pins literally (`wait gpio 17` is REQ, `wait gpio 18` is ACK), so a
 * board with another map changes both places. */
#ifndef BOARD_H
#define BOARD_H

#define PIN_D0 0        /* GP0-GP15: D0-D15 (PIO OUT/IN base) */
#define PIN_PARITY 16   /* GP16 */
#define PIN_REQ 17      /* GP17: acr_send side-set, acr_recv `wait gpio 17` */
#define PIN_ACK 18      /* GP18: acr_recv side-set bit 0, acr_send `wait gpio 18` */
#define PIN_PERR 19     /* GP19: acr_recv side-set bit 1, acr_send JMP pin */
#define PIN_DE_OWN 20   /* GP20: drivers of D0-D15, PARITY, REQ (acr_bus side-set bit 0) */
#define PIN_DE_ANS 21   /* GP21: drivers of ACK, PERR (acr_bus side-set bit 1) */
#define PIN_DIR 22      /* GP22: input (role B: the scanner drives DIR) */
#define PIN_READY_A 26  /* GP26: input */
#define PIN_READY_B 27  /* GP27: output, through an always-enabled driver */
#define PIN_BREQ 28     /* GP28: output, through an always-enabled driver */

#define BUS_PINS 18     /* D0-D15, PARITY, REQ: turned round by acr_bus */

/* Lines (bit i = enum box_line i) wired crossed at their transceiver (A to the
 * line's - pin), so that a fail-safe receiver's idle output reads as deasserted;
 * the firmware undoes it in the GPIO, XORed with CONFIGURE's active-low mask
 * (docs/hardware.md, section 3). 0 on the reference board. */
#define BOARD_INVERT_MASK 0u

#endif

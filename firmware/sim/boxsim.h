/* libboxcore: the firmware's portable core (src/) with an emulated line side, for
 * running the real firmware logic in the loop on the host (ctypes) and for the C
 * unit tests. One boxsim_t is one interface box; its "peer" (the scanner side of
 * the 50-pin link) is played by the caller through the boxsim_line_* calls.
 *
 * Host side: bytes the host sends go in with boxsim_host_write(), bytes the box
 * sends come out of boxsim_host_read(). Time: boxsim_poll(now_us) runs the core.
 * Line side: boxsim_line_take() completes the handshakes of words the box sends
 * (the peer as receiver; a word with bad parity under the configured parity is
 * answered with PERR), boxsim_line_put() offers words to the box (the peer as
 * sender; fewer are taken when the box throttles), boxsim_set_peer_lines() sets
 * the lines the peer drives (READY_x, DIR or BREQ). A word not taken stays in the
 * handshake (REQ asserted, waiting for ACK) until the core's timeout. */
#ifndef BOXSIM_H
#define BOXSIM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define BOXSIM_API __attribute__((visibility("default")))
#else
#define BOXSIM_API
#endif

#define BOXSIM_TX_DEPTH 8u /* words the send engine holds (PIO FIFO + OSR) */
#define BOXSIM_RX_DEPTH 8u

typedef struct boxsim boxsim_t;

BOXSIM_API const char *boxsim_version(void);
BOXSIM_API boxsim_t *boxsim_new(void);
BOXSIM_API void boxsim_free(boxsim_t *sim);

BOXSIM_API size_t boxsim_host_write(boxsim_t *sim, const uint8_t *data, size_t len);
BOXSIM_API size_t boxsim_host_read(boxsim_t *sim, uint8_t *out, size_t cap);
BOXSIM_API void boxsim_poll(boxsim_t *sim, uint32_t now_us);

BOXSIM_API size_t boxsim_line_take(boxsim_t *sim, uint16_t *words, uint8_t *parity, size_t max);
BOXSIM_API size_t boxsim_line_put(boxsim_t *sim, const uint16_t *words, const uint8_t *parity,
                                  size_t n);
BOXSIM_API void boxsim_set_peer_lines(boxsim_t *sim, uint32_t levels);
BOXSIM_API uint32_t boxsim_lines(boxsim_t *sim);
/* The box's READY as the host set it (LINE_SET), driven or not (a bus without READY). */
BOXSIM_API int boxsim_ready(boxsim_t *sim);
/* Fault: after the next word it takes, the box sees REQ stay asserted (the peer
 * never ends the handshake) until boxsim_hold_req(sim, 0). */
BOXSIM_API void boxsim_hold_req(boxsim_t *sim, int hold);
BOXSIM_API int boxsim_bus(boxsim_t *sim);           /* enum box_bus */
BOXSIM_API int boxsim_drive(boxsim_t *sim);         /* enum box_drive */
BOXSIM_API uint32_t boxsim_stat(boxsim_t *sim, int which); /* enum box_stat */

#endif

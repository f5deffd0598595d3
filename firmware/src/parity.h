/* Parity of the link's 16-bit words (docs/link-profile.md, section 1): the
 * PARITY line's value for a word, and the check a receiver makes. */
#ifndef BOX_PARITY_H
#define BOX_PARITY_H

#include <stdint.h>

enum { BOX_PARITY_NONE = 0, BOX_PARITY_ODD = 1, BOX_PARITY_EVEN = 2 };

/* 1 if word has an odd number of one bits. */
uint8_t parity_ones_odd(uint16_t word);

/* The PARITY line for word under mode (0 under BOX_PARITY_NONE). */
uint8_t parity_line(uint16_t word, int mode);

/* 1 if word with parity line bit p is a parity error under mode. */
int parity_bad(uint16_t word, uint8_t p, int mode);

#endif

#include "parity.h"

uint8_t parity_ones_odd(uint16_t word)
{
    uint16_t x = word;
    x ^= x >> 8;
    x ^= x >> 4;
    x ^= x >> 2;
    x ^= x >> 1;
    return (uint8_t)(x & 1u);
}

uint8_t parity_line(uint16_t word, int mode)
{
    /* odd parity: the 17 bits hold an odd number of ones */
    if (mode == BOX_PARITY_ODD)
        return (uint8_t)(parity_ones_odd(word) ^ 1u);
    if (mode == BOX_PARITY_EVEN)
        return parity_ones_odd(word);
    return 0;
}

int parity_bad(uint16_t word, uint8_t p, int mode)
{
    if (mode == BOX_PARITY_NONE)
        return 0;
    return parity_line(word, mode) != (p & 1u);
}

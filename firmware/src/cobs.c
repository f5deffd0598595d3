#include "cobs.h"

size_t cobs_encode(const uint8_t *src, size_t len, uint8_t *dst)
{
    size_t code_at = 0, out = 1, i;
    uint8_t code = 1;

    for (i = 0; i < len; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
        } else {
            dst[out++] = src[i];
            if (++code == 0xFF) {
                dst[code_at] = code;
                if (i + 1 == len)
                    return out; /* a final full run: no closing code */
                code_at = out++;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    return out;
}

long cobs_decode_inplace(uint8_t *buf, size_t len)
{
    size_t in = 0, out = 0;

    if (len == 0)
        return -1;
    while (in < len) {
        uint8_t code = buf[in];
        size_t k;
        if (code == 0 || in + code > len)
            return -1;
        for (k = 1; k < code; k++) {
            uint8_t b = buf[in + k];
            if (b == 0)
                return -1;
            buf[out++] = b;
        }
        in += code;
        if (code != 0xFF && in < len)
            buf[out++] = 0;
    }
    return (long)out;
}

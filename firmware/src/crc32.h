/* CRC-32/ISO-HDLC (zlib.crc32: reflected polynomial 0xEDB88320, init and final
 * XOR 0xFFFFFFFF; check value of "123456789" is 0xCBF43926). */
#ifndef BOX_CRC32_H
#define BOX_CRC32_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t len);

static inline uint32_t crc32(const uint8_t *data, size_t len)
{
    return crc32_update(0, data, len);
}

#endif

/* COBS (consistent overhead byte stuffing) for the box protocol's frames
 * (docs/box-protocol.md, section 2). Same rules as bridge/ports/boxproto.py:
 * a final run of k*254 non-zero bytes gets no closing 0x01 code when encoding;
 * the decoder accepts both forms. */
#ifndef BOX_COBS_H
#define BOX_COBS_H

#include <stddef.h>
#include <stdint.h>

/* The longest encoding of len bytes (no delimiter). */
#define COBS_MAX_ENCODED(len) ((len) + (len) / 254u + 1u)

/* Encode len bytes of src into dst (at least COBS_MAX_ENCODED(len) bytes);
 * returns the encoded length. src and dst must not overlap. */
size_t cobs_encode(const uint8_t *src, size_t len, uint8_t *dst);

/* Decode len bytes in place (the result is never longer). Returns the decoded
 * length, or -1 if buf is not a valid COBS block (empty, a zero byte, or a code
 * running past the end). */
long cobs_decode_inplace(uint8_t *buf, size_t len);

#endif

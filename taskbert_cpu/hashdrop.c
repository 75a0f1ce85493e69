/* Hashed dropout in one pass: out[i] = keep(i) ? x[i] * scale : 0.
 *
 * keep(i) is the mask of taskbert.fastpath.keep_mask, bit for bit: hash j = i / 2 is
 * lowbias32(j + k0), xor k1, times M1; element 2j is kept when the low 16 bits, read as a
 * signed int16, are >= threshold, element 2j + 1 when the high 16 bits are. The torch version
 * makes that mask in about fifteen passes over memory; here it is made in registers, so
 * forward and backward are one pass each (the backward recomputes the mask from the keys).
 *
 * Built by taskbert_cpu/native.py with the system C compiler; no torch headers. */
#include <stdint.h>

#define M1 0x7FEB352Du
#define M2 0x846CA68Bu

static inline uint32_t hash(uint32_t j, uint32_t k0, uint32_t k1) {
    uint32_t x = j + k0;
    x ^= x >> 16;
    x *= M1;
    x ^= x >> 15;
    x *= M2;
    x ^= x >> 16;
    x ^= k1;
    return x * M1;
}

/* float32: x times scale or 0, one IEEE multiply, as torch's x * where(keep, scale, 0)
 * (so a dropped inf or NaN gives NaN there as here) */
void hashdrop_f32(const float *x, float *out, int64_t n, uint32_t k0, uint32_t k1,
                  int32_t threshold, float scale) {
    /* hash j decides elements 2j and 2j + 1 */
    for (int64_t j = 0; j < n / 2; j++) {
        uint32_t h = hash((uint32_t)j, k0, k1);
        int32_t lo = (int16_t)(h & 0xFFFFu), hi = (int16_t)(h >> 16);
        out[2 * j] = x[2 * j] * (lo >= threshold ? scale : 0.0f);
        out[2 * j + 1] = x[2 * j + 1] * (hi >= threshold ? scale : 0.0f);
    }
    if (n & 1) {                                    /* the odd last element */
        uint32_t h = hash((uint32_t)(n / 2), k0, k1);
        out[n - 1] = x[n - 1] * ((int16_t)(h & 0xFFFFu) >= threshold ? scale : 0.0f);
    }
}

/* bfloat16 as uint16 bits: widened to float, multiplied by the bf16 scale or 0 (torch's bf16
 * multiply computes in float), rounded back to nearest even; NaN becomes 0x7FC0 as in c10 */
static inline uint16_t bf16_mul(uint16_t a, float scale) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)a << 16;
    v.f *= scale;
    if ((v.u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)0x7FC0u;
    v.u += 0x7FFFu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}

void hashdrop_bf16(const uint16_t *x, uint16_t *out, int64_t n, uint32_t k0, uint32_t k1,
                   int32_t threshold, float scale) {
    for (int64_t j = 0; j < n / 2; j++) {
        uint32_t h = hash((uint32_t)j, k0, k1);
        int32_t lo = (int16_t)(h & 0xFFFFu), hi = (int16_t)(h >> 16);
        out[2 * j] = bf16_mul(x[2 * j], lo >= threshold ? scale : 0.0f);
        out[2 * j + 1] = bf16_mul(x[2 * j + 1], hi >= threshold ? scale : 0.0f);
    }
    if (n & 1) {
        uint32_t h = hash((uint32_t)(n / 2), k0, k1);
        out[n - 1] = bf16_mul(x[n - 1], (int16_t)(h & 0xFFFFu) >= threshold ? scale : 0.0f);
    }
}

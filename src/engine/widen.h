/* 16-bit floats read as float32. Every 16-bit value is exactly a float32,
 * so a row scores as it would after numpy's astype(float32).
 *
 * float16: the divergence row loop reads float16 rows itself (engine/element.h
 * with KLF_ELEMENT_BITS 16: S = uint16_t, LOADV = load_half), so a float16
 * input costs half the bytes of a float32 one and no buffer. Anything else
 * stored in 16 bits (bfloat16; a float16 row beside a float32 one, or whose
 * elements are not contiguous) is widened a row at a time into a buffer of
 * one row per thread (widen16, from src/_kernels.pyx). Included by
 * engine/level.h after simd.h. No include guard. */

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

/* float16 bits (in the low 16 bits of each lane) to float32, exactly,
 * without branches: the exponent and mantissa shifted into place read as a
 * float32 2^112 too small, which a product by 2^112 mends exactly, for
 * subnormals too; infinities and NaN (exponent 31) are rebuilt. */
KLF_INLINE vf half_bits_to_vf(vui h) {
    vui mag = h & 0x7fffu;
    vf f = (vf)(mag << 13) * 0x1p112f;
    vui infnan = (vui)(mag >= 0x7c00u);
    vui bits = ((vui)f & ~infnan) | ((0x7f800000u | ((mag & 0x3ffu) << 13)) & infnan);
    return (vf)(bits | ((h & 0x8000u) << 16));
}

KLF_INLINE float klf_half_to_float(uint16_t h) { return half_bits_to_vf((vui){0} + h)[0]; }

typedef uint16_t vh __attribute__((vector_size(KLF_VBYTES / 2))); /* VF_LANES halves */

/* VF_LANES float16 values at src */
KLF_INLINE vf load_half(const uint16_t *src) {
#if KLF_X86 && KLF_VBYTES == 64
    return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)src));
#elif KLF_X86 && KLF_VBYTES == 32 && defined(__F16C__)
    return (vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src));
#else
    vh h;
    memcpy(&h, src, sizeof h);
    return half_bits_to_vf(__builtin_convertvector(h, vui));
#endif
}

/* The first n (0 <= n <= VF_LANES) float16 values at src, zeros after them;
 * the elements past n are never read. */
KLF_INLINE vf load_part_half(const uint16_t *src, int n) {
    uint16_t buf[VF_LANES];
    for (int l = 0; l < VF_LANES; l++) buf[l] = l < n ? src[l] : 0;
    return load_half(buf);
}

#ifndef KLF_CAT
#define KLF_CAT_(a, b) a##b
#define KLF_CAT(a, b) KLF_CAT_(a, b)
#endif

/* y[j] = x[j * es] widened, j < n: kind 0 float16, 1 bfloat16 (the top
 * half of a float32). */
static void KLF_CAT(klfast_widen16_, KLF_LEVEL)(int kind, const uint16_t *x, ptrdiff_t es,
                                              float *y, ptrdiff_t n) {
    ptrdiff_t j = 0;
    if (kind == 1) {
        for (; j < n; j++) {
            uint32_t bits = (uint32_t)x[j * es] << 16;
            memcpy(&y[j], &bits, sizeof(float));
        }
        return;
    }
    if (es == 1) {
        for (; j + VF_LANES <= n; j += VF_LANES) {
            vf v = load_half(x + j);
            memcpy(y + j, &v, sizeof v);
        }
        for (; j < n; j++) y[j] = klf_half_to_float(x[j]);
        return;
    }
    for (; j < n; j++) y[j] = klf_half_to_float(x[j * es]);
}

/* 16-bit floats widened to float32, for inputs stored as float16 or
 * bfloat16: the kernels score such a row from a float32 copy of it in a
 * buffer of one row per thread (src/_kernels.pyx), so no input-sized
 * conversion is ever made. Every 16-bit value is exactly a float32, so a
 * row scores as it would after numpy's astype(float32). Included once by
 * engine/level.h. No include guard. */

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

/* float16 bits to float32, exactly, without branches (so loops vectorize
 * where no conversion instruction is available): the exponent and mantissa
 * shifted into place read as a float32 2^112 too small, which a product by
 * 2^112 mends exactly, for subnormals too; infinities and NaN (exponent 31)
 * are rebuilt. */
KLF_INLINE float klf_half_to_float(uint16_t h) {
    uint32_t mag = (uint32_t)(h & 0x7fffu), bits = mag << 13;
    float f;
    memcpy(&f, &bits, sizeof f);
    f *= 0x1p112f;
    memcpy(&bits, &f, sizeof f);
    if (mag >= 0x7c00u) bits = 0x7f800000u | ((mag & 0x3ffu) << 13);
    bits |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &bits, sizeof f);
    return f;
}

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
#if defined(__AVX512F__)
        for (; j + 16 <= n; j += 16)
            _mm512_storeu_ps(y + j, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + j))));
#elif defined(__F16C__)
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(y + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + j))));
#endif
        for (; j < n; j++) y[j] = klf_half_to_float(x[j]);
        return;
    }
    for (; j < n; j++) y[j] = klf_half_to_float(x[j * es]);
}

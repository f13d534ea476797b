/* The math layer: vector types and vector math of one instruction-set level,
 * shared by every kernel (divergences and losses). Included once by
 * engine/level.h in each level's translation unit, which setup.py compiles
 * with that level's flags; the vector width follows from those flags.
 *
 *   types      vd (double), vl/vu (64-bit ints), vf (float), vi/vui (32-bit
 *              ints), vfh (half a vf)
 *   lanes      vsel, vmax/vmin, any_lane, widen_to, widen_add (float lanes into double
 *              accumulators), lane_sum (a fixed-order sum of a row's lanes)
 *   loads      load_part (the first n elements of a vector, zeros after)
 *   logs       log_ratio (log(a/b), one division), log_hi (log(2hi/(hi+lo))),
 *              log (log x, accurate near 1), neg_log_f32 (-log x, no division)
 *   exp        exp (x <= 0; plain or wide)
 *
 * Determinism: a row's sums live in lanes fixed by the element index (lane
 * l takes elements j = l mod NLANES, NLANES the same at every level) and are
 * combined by lane_sum in a fixed order, so a row gives the same bits on any
 * thread and at any address. Levels differ by a few ulp (fused multiply-adds).
 */
#ifndef KLFAST_SIMD_H
#define KLFAST_SIMD_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* malloc: logits_kl_rows.h's row buffer */
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define KLF_X86 1
#else
#define KLF_X86 0
#endif

#if defined(__AVX512F__)
#define KLF_VBYTES 64
#elif defined(__AVX2__)
#define KLF_VBYTES 32
#else
#define KLF_VBYTES 16 /* SSE2 on x86-64, NEON on aarch64 */
#endif

#define KLF_INLINE static inline __attribute__((always_inline))

/* Keeps v in a register as it is: a product stored in v is then never fused
 * (-ffp-contract=fast) into an addition on one path and not on another,
 * which could give the float16 and float32 instantiations of a kernel
 * different bits. Elsewhere a no-op. */
#if defined(__x86_64__) || defined(__i386__)
#define KLF_KEEP(v) __asm__("" : "+v"(v))
#elif defined(__aarch64__)
#define KLF_KEEP(v) __asm__("" : "+w"(v))
#else
#define KLF_KEEP(v) ((void)0)
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* vectors never cross a non-inlined call: no ABI concern */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef double vd __attribute__((vector_size(KLF_VBYTES)));
typedef int64_t vl __attribute__((vector_size(KLF_VBYTES)));
typedef uint64_t vu __attribute__((vector_size(KLF_VBYTES)));
typedef float vf __attribute__((vector_size(KLF_VBYTES)));
typedef int32_t vi __attribute__((vector_size(KLF_VBYTES)));
typedef uint32_t vui __attribute__((vector_size(KLF_VBYTES)));
typedef float vfh __attribute__((vector_size(KLF_VBYTES / 2))); /* widens to a vd */

enum { VD_LANES = KLF_VBYTES / 8, VF_LANES = KLF_VBYTES / 4 };

/* ---- lanes --------------------------------------------------------------- */

KLF_INLINE vd vsel_f64(vl m, vd a, vd b) { return (vd)(((vl)a & m) | ((vl)b & ~m)); }
KLF_INLINE vf vsel_f32(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* a > b ? a : b and a < b ? a : b lane by lane (x86's max and min: for a
 * NaN in either, b) */
#if KLF_X86 && KLF_VBYTES == 64
KLF_INLINE vd vmax_f64(vd a, vd b) { return (vd)_mm512_max_pd((__m512d)a, (__m512d)b); }
KLF_INLINE vd vmin_f64(vd a, vd b) { return (vd)_mm512_min_pd((__m512d)a, (__m512d)b); }
KLF_INLINE vf vmax_f32(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); }
KLF_INLINE vf vmin_f32(vf a, vf b) { return (vf)_mm512_min_ps((__m512)a, (__m512)b); }
#elif KLF_X86 && KLF_VBYTES == 32
KLF_INLINE vd vmax_f64(vd a, vd b) { return (vd)_mm256_max_pd((__m256d)a, (__m256d)b); }
KLF_INLINE vd vmin_f64(vd a, vd b) { return (vd)_mm256_min_pd((__m256d)a, (__m256d)b); }
KLF_INLINE vf vmax_f32(vf a, vf b) { return (vf)_mm256_max_ps((__m256)a, (__m256)b); }
KLF_INLINE vf vmin_f32(vf a, vf b) { return (vf)_mm256_min_ps((__m256)a, (__m256)b); }
#elif KLF_X86
KLF_INLINE vd vmax_f64(vd a, vd b) { return (vd)_mm_max_pd((__m128d)a, (__m128d)b); }
KLF_INLINE vd vmin_f64(vd a, vd b) { return (vd)_mm_min_pd((__m128d)a, (__m128d)b); }
KLF_INLINE vf vmax_f32(vf a, vf b) { return (vf)_mm_max_ps((__m128)a, (__m128)b); }
KLF_INLINE vf vmin_f32(vf a, vf b) { return (vf)_mm_min_ps((__m128)a, (__m128)b); }
#else
KLF_INLINE vd vmax_f64(vd a, vd b) { return vsel_f64((vl)(a > b), a, b); }
KLF_INLINE vd vmin_f64(vd a, vd b) { return vsel_f64((vl)(a < b), a, b); }
KLF_INLINE vf vmax_f32(vf a, vf b) { return vsel_f32((vi)(a > b), a, b); }
KLF_INLINE vf vmin_f32(vf a, vf b) { return vsel_f32((vi)(a < b), a, b); }
#endif

/* Any bit set in a mask. */
#if KLF_X86 && KLF_VBYTES == 64
KLF_INLINE int any_lane(vi m) { return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0; }
#elif KLF_X86 && KLF_VBYTES == 32
KLF_INLINE int any_lane(vi m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }
#elif KLF_X86
KLF_INLINE int any_lane(vi m) { return _mm_movemask_epi8((__m128i)m) != 0; }
#else
KLF_INLINE int any_lane(vi m) {
    int any = 0;
    for (int l = 0; l < VF_LANES; l++) any |= m[l] != 0;
    return any;
}
#endif

/* any_nonfinite: 1 when some lane of s is NaN or infinite. count_nan: the
 * NaN lanes of v. AVX-512 tests them into a mask register: a comparison
 * made into a vector of lanes and tested again (any_lane) costs two
 * operations more, on the ports the short tiles are bound by
 * (engine/lanes_rows.h). */
#if KLF_X86 && KLF_VBYTES == 64
/* vfpclasspd 0x99: quiet NaN, +inf, -inf, signalling NaN */
KLF_INLINE int any_nonfinite_f64(vd s) { return _mm512_fpclass_pd_mask((__m512d)s, 0x99) != 0; }
KLF_INLINE int count_nan_f64(vd v) {
    return __builtin_popcount(_mm512_cmp_pd_mask((__m512d)v, (__m512d)v, _CMP_UNORD_Q));
}
KLF_INLINE int any_nonfinite_f32(vf s) { return _mm512_fpclass_ps_mask((__m512)s, 0x99) != 0; }
#else
KLF_INLINE int any_nonfinite_f64(vd s) {
    return any_lane((vi) ~((s >= -DBL_MAX) & (s <= DBL_MAX)));
}
KLF_INLINE int any_nonfinite_f32(vf s) {
    return any_lane(~((vi)(s >= -FLT_MAX) & (vi)(s <= FLT_MAX)));
}
KLF_INLINE int count_nan_f64(vd v) {
    int n = 0;
    if (any_lane((vi)(v != v)))
        for (int l = 0; l < VD_LANES; l++) n += v[l] != v[l];
    return n;
}
#endif

/* 1 when a <= lim and b <= lim in every lane (a NaN lane: 0), tested as
 * any_nonfinite_f64 above */
#if KLF_X86 && KLF_VBYTES == 64
KLF_INLINE int all_le_f32(vf a, vf b, vf lim) {
    __mmask16 m = _mm512_cmp_ps_mask((__m512)a, (__m512)lim, _CMP_LE_OQ);
    return _mm512_mask_cmp_ps_mask(m, (__m512)b, (__m512)lim, _CMP_LE_OQ) == 0xFFFF;
}
#else
KLF_INLINE int all_le_f32(vf a, vf b, vf lim) {
    return !any_lane(~((vi)(a <= lim) & (vi)(b <= lim)));
}
#endif

/* A whole vector of results at out: with stream, where out is 64-byte
 * aligned at AVX-512, past the cache (a non-temporal store: the line is not
 * read first, and the caller fences, engine/klfast.h); else a plain store. */
#if KLF_X86 && KLF_VBYTES == 64
KLF_INLINE void store_line(void *out, const void *v, int stream) {
    if (stream && ((uintptr_t)out & 63) == 0)
        _mm512_stream_si512((__m512i *)out, *(const __m512i *)v);
    else
        memcpy(out, v, KLF_VBYTES);
}
#else
KLF_INLINE void store_line(void *out, const void *v, int stream) {
    (void)stream;
    memcpy(out, v, KLF_VBYTES);
}
#endif

/* a | b | c on the bits of three vectors: one vpternlogq at AVX-512 */
#if KLF_X86 && KLF_VBYTES == 64
#define OR3(a, b, c)                                                                          \
    ((__typeof__(a))_mm512_ternarylogic_epi64((__m512i)(a), (__m512i)(b), (__m512i)(c), 0xFE))
#else
#define OR3(a, b, c) ((a) | (__typeof__(a))(b) | (__typeof__(a))(c))
#endif

/* The halves of a float vector, and back (lane order kept). */
#if KLF_VBYTES == 64
#define KLF_IDX_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KLF_IDX_HI 8, 9, 10, 11, 12, 13, 14, 15
#elif KLF_VBYTES == 32
#define KLF_IDX_LO 0, 1, 2, 3
#define KLF_IDX_HI 4, 5, 6, 7
#else
#define KLF_IDX_LO 0, 1
#define KLF_IDX_HI 2, 3
#endif
KLF_INLINE vfh half_lo(vf v) { return __builtin_shufflevector(v, v, KLF_IDX_LO); }
KLF_INLINE vfh half_hi(vf v) { return __builtin_shufflevector(v, v, KLF_IDX_HI); }
KLF_INLINE vf join_halves(vfh lo, vfh hi) {
    return (vf)__builtin_shufflevector(lo, hi, KLF_IDX_LO, KLF_IDX_HI);
}

/* A half float vector in double. GCC 12 splits the generic 8-lane
 * conversion of AVX-512 in two: the instruction is named. */
KLF_INLINE vd widen(vfh h) {
#if KLF_X86 && KLF_VBYTES == 64 && !defined(__clang__)
    return (vd)__builtin_ia32_cvtps2pd512_mask(h, (vd){0}, (unsigned char)0xFF, 4);
#else
    return __builtin_convertvector(h, vd);
#endif
}

/* w[0] = the low half of v in double, w[1] = its high half. With AVX-512
 * (GCC) each half is converted by the named instruction; elsewhere the
 * whole vector is converted to a double vector of twice the width, whose
 * halves are then registers of their own (fewer shuffles than converting
 * each half). */
KLF_INLINE void widen_to(vd *w, vf v) {
#if KLF_X86 && KLF_VBYTES == 64 && !defined(__clang__)
    w[0] = widen(half_lo(v));
    w[1] = widen(half_hi(v));
#else
    typedef double vdw __attribute__((vector_size(2 * KLF_VBYTES)));
    vdw d = __builtin_convertvector(v, vdw);
    w[0] = __builtin_shufflevector(d, d, KLF_IDX_LO);
    w[1] = __builtin_shufflevector(d, d, KLF_IDX_HI);
#endif
}

/* acc[0] += the low half of v in double, acc[1] += its high half. */
KLF_INLINE void widen_add(vd *acc, vf v) {
    vd w[2];
    widen_to(w, v);
    acc[0] += w[0];
    acc[1] += w[1];
}

/* v * s for float lanes, multiplied in double and rounded once (a normalized
 * single column is exactly 1) */
KLF_INLINE vf scale_f32(vf v, double s) {
    vd lo = widen(half_lo(v)) * s, hi = widen(half_hi(v)) * s;
    return join_halves(__builtin_convertvector(lo, vfh), __builtin_convertvector(hi, vfh));
}

/* The sum of n_lanes (8, 16 or 32) double lanes held in acc (lane l is
 * acc[l / VD_LANES][l % VD_LANES]), folded in halves (l + n/2, ..., l + 1):
 * the same order at every level, in vector adds (it runs three times a row,
 * which counts on short rows). lane_fold8 takes the folds down to 8 lanes,
 * lane_sum8 the rest; lane_sums8 the rest for 8 rows at once, each sum with
 * the bits of its own lane_sum8. (8 doubles go by pointer: a vector of 64
 * bytes by value is an ABI change below AVX-512, an error to clang.) */
typedef double v8d __attribute__((vector_size(64)));
typedef double v4d __attribute__((vector_size(32)));
typedef double v2d __attribute__((vector_size(16)));
KLF_INLINE void lane_fold8(const vd *acc, int n_lanes, v8d *out) {
    v8d c[4];
    memcpy(c, acc, (size_t)n_lanes * sizeof(double));
    if (n_lanes == 32) {
        c[0] += c[2];
        c[1] += c[3];
    }
    if (n_lanes >= 16) c[0] += c[1];
    *out = c[0];
}
KLF_INLINE double lane_sum8(const v8d *c) {
    v4d a4 = __builtin_shufflevector(*c, *c, 0, 1, 2, 3)
             + __builtin_shufflevector(*c, *c, 4, 5, 6, 7);
    v2d a2 = __builtin_shufflevector(a4, a4, 0, 1) + __builtin_shufflevector(a4, a4, 2, 3);
    return a2[0] + a2[1];
}
KLF_INLINE double lane_sum(const vd *acc, int n_lanes) {
    v8d c;
    lane_fold8(acc, n_lanes, &c);
    return lane_sum8(&c);
}
/* lane r of *out = lane_sum8(&c[r]), r < 8: the same additions, the rows'
 * lanes interleaved so that each vector add serves two, four, then eight
 * rows (21 shuffles and adds against 8 x 6, and no scalar extraction). */
KLF_INLINE void lane_sums8(const v8d *c, v8d *out) {
    v8d t[4], u[2];
    for (int i = 0; i < 4; i++) /* lanes 0-3: row 2i's a4, 4-7: row 2i+1's */
        t[i] = __builtin_shufflevector(c[2 * i], c[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11)
               + __builtin_shufflevector(c[2 * i], c[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15);
    for (int i = 0; i < 2; i++) /* pairs: a2 of rows 4i, 4i+2, 4i+1, 4i+3 */
        u[i] = __builtin_shufflevector(t[2 * i], t[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13)
               + __builtin_shufflevector(t[2 * i], t[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    *out = __builtin_shufflevector(u[0], u[1], 0, 4, 2, 6, 8, 12, 10, 14)
           + __builtin_shufflevector(u[0], u[1], 1, 5, 3, 7, 9, 13, 11, 15);
}

/* ---- loads ----------------------------------------------------------------
 * KLF_MASKED_LOADS: the CPU loads part of a vector without touching the
 * memory past it (AVX2, AVX-512); elsewhere row tails are copied into
 * zero-padded blocks. */
#define KLF_MASKED_LOADS (KLF_X86 && KLF_VBYTES >= 32)

/* The first n (0 <= n <= lanes) elements at src, zeros after them; the
 * elements past n are never read. */
KLF_INLINE vd load_part_f64(const double *src, int n) {
#if KLF_X86 && KLF_VBYTES == 64
    return (vd)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), src);
#elif KLF_X86 && KLF_VBYTES == 32
    return (vd)_mm256_maskload_pd(src, (__m256i)((vl){0, 1, 2, 3} < (int64_t)n));
#else
    double buf[VD_LANES];
    vd v;
    for (int l = 0; l < VD_LANES; l++) buf[l] = l < n ? src[l] : 0.0;
    memcpy(&v, buf, sizeof(v));
    return v;
#endif
}

KLF_INLINE vf load_part_f32(const float *src, int n) {
#if KLF_X86 && KLF_VBYTES == 64
    return (vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), src);
#elif KLF_X86 && KLF_VBYTES == 32
    return (vf)_mm256_maskload_ps(src, (__m256i)((vi){0, 1, 2, 3, 4, 5, 6, 7} < n));
#else
    float buf[VF_LANES];
    vf v;
    for (int l = 0; l < VF_LANES; l++) buf[l] = l < n ? src[l] : 0.0f;
    memcpy(&v, buf, sizeof(v));
    return v;
#endif
}

/* ---- permutes --------------------------------------------------------------
 * KLF_PERMUTE2 (AVX-512): permute2(a, idx, b) takes lane l of the result
 * from lane idx[l] mod 2n of a then b (n lanes each): vpermt2pd / vpermt2ps. */
#if KLF_X86 && KLF_VBYTES == 64
#define KLF_PERMUTE2 1
KLF_INLINE vd permute2_f64(vd a, vl idx, vd b) {
    return (vd)_mm512_permutex2var_pd((__m512d)a, (__m512i)idx, (__m512d)b);
}
KLF_INLINE vf permute2_f32(vf a, vi idx, vf b) {
    return (vf)_mm512_permutex2var_ps((__m512)a, (__m512i)idx, (__m512)b);
}
#else
#define KLF_PERMUTE2 0
#endif

/* ---- logs -------------------------------------------------------------------
 * log(a / b) lane by lane, for positive normal a and b with
 * 2 * smallest normal <= a < 2^1022 (or 2^126), with one division and no
 * libm call.
 *
 * The bit pattern of a positive normal float, read as an integer and scaled
 * by 2^-52, is E + (m - 1) for x = m 2^E, m in [1, 2): log2(x) to within
 * 0.0861. So k = round((bits(b) - bits(a)) 2^-52) is an integer with
 * b' = b 2^-k within a factor 2^0.5861 of a, i.e. a / b' in [0.666, 1.501];
 * b' is b with k subtracted from its exponent field (exact). Then
 *   log(a / b) = log(a / b') - k ln2,   log(a / b') = 2 atanh(s),
 *   s = (a - b') / (a + b'),  |s| <= 0.2005,
 * with a - b' exact (Sterbenz) and 2 atanh(s) = s (2 + R(s^2)), R a degree-8
 * least-squares polynomial (fitted with mpmath on [0, 0.0403]; its error is
 * below 1e-18 relative; 2 + R is the last step of its Horner scheme, which
 * saves the separate 2s of 2s + s R), and k ln2 added by one fused
 * multiply-add. The error is about one ulp of the result. a + b' <= 2.5 a
 * does not overflow for a < 2^1022 (the kernels send rows with larger
 * entries to the exact path); 1 / 5e-324 would, this does not.
 * Tried: e as k 2^52 converted directly (the masked difference, times
 * ln2 2^-52: the same bits, one shift fewer). B/A about 0.98 on float64
 * rows of 2 and 10 (lanes_rows.h), but 1.07-1.11 on rows of 12 (entropy,
 * 1 thread: short_wide's register allocation): left out. */
KLF_INLINE vd log_ratio_f64(vd a, vd b) {
    const vl zero = {0};
    vl ia = (vl)a, ib = (vl)b;
    vl k = ((ib - ia) + (zero + (1LL << 51))) >> 52;
    vd bs = (vd)(ib - (k << 52));
#if KLF_VBYTES == 64
    vd e = __builtin_convertvector(k, vd); /* one instruction with AVX-512 */
#else
    /* k as a double: (1.5 2^52 + k) read as a double, minus 1.5 2^52 */
    vd e = (vd)((zero + 0x4338000000000000LL) + k) - 6755399441055744.0;
#endif
    vd s = (a - bs) / (a + bs);
    vd z = s * s;
    vd r = 2.0 + z * (0.66666666666666664051 +
                 z * (0.40000000000008287896 +
                 z * (0.28571428567123362645 +
                 z * (0.22222223073289448508 +
                 z * (0.18181735700014926134 +
                 z * (0.15388943697091611891 +
                 z * (0.1320823374916353322 +
                 z * 0.13620231330491777204)))))));
    /* s r rounded and kept (KLF_KEEP): then e ln2 is the product fused into
     * the subtraction, on every path. Left to the compiler, which of the two
     * it fused depended on the code around the inlined log: with short_wide
     * (lanes_rows.h) float64 lanes of 2 elements and the row loop differed in
     * the last bit (tests/test_lanes.py). */
    vd sr = s * r;
    KLF_KEEP(sr);
    return sr - e * 0.69314718055994530942;
}

/* The same in float32 arithmetic for float32 inputs; R has degree 3 (error
 * below 1e-8 relative). Here 2s + s R keeps its exact 2s: s (2 + R) rounds
 * once more, which float32 cannot spare (3e-7 on rows that cancel). */
KLF_INLINE vf log_ratio_f32(vf a, vf b) {
    const vi zero = {0};
    vi ia = (vi)a, ib = (vi)b;
    vi k = ((ib - ia) + (zero + (1 << 22))) >> 23;
    vf bs = (vf)(ib - (k << 23));
    vf e = __builtin_convertvector(k, vf);
    vf s = (a - bs) / (a + bs);
    vf z = s * s;
    vf r = z * (0.666667148611f + z * (0.399786131049f + z * 0.299683960391f));
    return ((s + s) + s * r) - e * 0.693147180559945f;
}

/* log x for normal, positive, finite x, accurate to about one ulp also near
 * x = 1 (where log_ratio(1, x) loses a bit or two). x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), found on the bit pattern: adding 2^52 -
 * bits(sqrt(1/2)) carries into the exponent field exactly when the mantissa
 * is >= sqrt(2)'s, so the field is e + bias and the low bits plus
 * bits(sqrt(1/2)) are m's pattern (all unsigned, no shift of a sign). With
 * f = m - 1 (exact) and s = f / (2 + f), |s| <= 0.1716:
 *   log m = 2 atanh(s) = 2s + s R(s^2) = f - s (f - R(s^2)),
 * the last form because 2s = f - s f; it adds a small correction to the
 * exact f. R(z) = z Q(z), Q fitted with mpmath on [0, 0.02944]: degree 6 in
 * float64 (error of R below 3e-18 relative to 2), degree 2 in float32 (below
 * 2e-9). Then log x = e LN2_HI + (log m + e LN2_LO), e LN2_HI exact. */
#define KLF_LN2_HI 6.93147180369123816490e-01 /* 0x1.62e42feep-1 */
#define KLF_LN2_LO 1.9082149292705877e-10
#define KLF_LN2_HI_F 0.693145751953125f /* 0x1.62e4p-1 */
#define KLF_LN2_LO_F 1.428606765330187e-06f

KLF_INLINE vd log_f64(vd x) {
    vu u = (vu)x + (0x3FF0000000000000ULL - 0x3FE6A09E667F3BCDULL);
    vd m = (vd)((u & 0x000FFFFFFFFFFFFFULL) + 0x3FE6A09E667F3BCDULL);
    /* e as a double: the field e + 1023 under the exponent of 2^52 */
    vd e = (vd)((u >> 52) | 0x4330000000000000ULL) - (0x1p52 + 1023.0);
    vd f = m - 1.0;
    vd s = f / (2.0 + f);
    vd z = s * s;
    vd q = (vd){0} + 0.1479706674402544;
    q = q * z + 0.15313952318869525;
    q = q * z + 0.18183567568125023;
    q = q * z + 0.22222198524366923;
    q = q * z + 0.2857142874269941;
    q = q * z + 0.39999999999414265;
    q = q * z + 0.6666666666666734;
    vd log_m = f - s * (f - z * q);
    return e * KLF_LN2_HI + (log_m + e * KLF_LN2_LO);
}

KLF_INLINE vf log_f32(vf x) {
    vui u = (vui)x + (0x3F800000U - 0x3F3504F3U);
    vf m = (vf)((u & 0x007FFFFFU) + 0x3F3504F3U);
    vf e = (vf)((u >> 23) | 0x4B000000U) - (0x1p23f + 127.0f);
    vf f = m - 1.0f;
    vf s = f / (2.0f + f);
    vf z = s * s;
    vf q = (vf){0} + 0.29871585965156555f;
    q = q * z + 0.3997756242752075f;
    q = q * z + 0.6666677594184875f;
    vf log_m = f - s * (f - z * q);
    return e * KLF_LN2_HI_F + (log_m + e * KLF_LN2_LO_F);
}

/* -log x for float x, normal, positive and below 2^126, without a division
 * (entropy's float32 term: its one division per element was a third of the
 * term's time). AVX-512 and AVX2; elsewhere KLF_NEG_LOG_F32 is 0 and entropy
 * takes log_ratio(1, x). x = 2^k z with z in [c0, 2 c0) (c0 = 0.699 at
 * AVX2, 0.6953 at AVX-512), found on the bit pattern (subtracting bits(c0)
 * borrows from the exponent field exactly when the mantissa is below it);
 * the top 4 (AVX2) or 5 (AVX-512) bits of z's offset pick one of 16 or 32
 * intervals, with c its centre (c = 1 for the one holding 1), invc = 1 / c
 * rounded to float (AVX-512: a float near it, below) and logc = log(1 /
 * invc) (mpmath, rounded). Then r = z invc - 1 in one rounding (|r| <=
 * 0.0234, 0.0153) and
 *   log x = k LN2_F + (log1p(r) + logc)   (one fused multiply-add),
 * log1p(r) = r + r^2 p(r), p of degree 3 (Taylor: -1/2 + r/3 - r^2/4 +
 * r^3/5; the next term is below 3e-10 of r) or 2 (fitted: below 6e-9 of
 * log1p(r)). LN2_F is ln2 rounded to float, 1.9e-9 too large: the product
 * is exact in the fused add, and for k != 0 (x outside [c0, 2 c0), |log x|
 * > 0.33) k 1.9e-9 is below 6e-9 of |log x|, a tenth of an ulp. In the
 * interval holding 1, k = 0, logc = 0 and r is exact, so the error stays
 * about an ulp of the result: the term -x log x within 1.6e-7 relative,
 * its rounding to float included (log_ratio(1, x): 1.8e-7;
 * tests/test_values.py). The index i is not masked: the permutes read only
 * its low bits. Against k ln2 in two parts (LN2_HI, LN2_LO) and a masked
 * index, two operations fewer per vector of the row loop's 24 or so (perf
 * annotate, entropy); AVX-512's 32 intervals, one more fewer (below). */
#if KLF_X86 && (KLF_VBYTES == 64 || KLF_VBYTES == 32)
#define KLF_NEG_LOG_F32 1
#if KLF_VBYTES == 64
/* AVX-512: 32 intervals of z in [0.6953, 1.3906) (one two-table permute, as
 * cheap as the one-table one), 1 the centre of the one holding it, so |r| <=
 * 0.0153 and log1p(r) - r takes a degree-2 p (fitted on that range, error
 * below 6e-9 relative to log1p(r)): one multiply-add fewer per vector than
 * 16 intervals and degree 3. Each invc is the float within 2048 ulps of 1 / c
 * whose log(1 / invc) is nearest a float (Tang's choice): logc is then within
 * 0.001 ulp, not 0.5. -log x for 9.2 million floats (1e-37 .. 1e37, and every
 * third float in [0.5, 2)) against float64: max 1.711 ulps with AVX2's
 * table, 1.033 with this; above half an ulp 14.5 % and 5.2 %. B/A against
 * AVX2's table at AVX-512 (ab_builds, entropy, 1 / 2 threads): float32
 * 8,192 x 32,000 0.985 / 0.977 (cross_entropy 0.978 / 0.989), 3,000,000 x
 * 32 0.968 / 0.982, 10,000,000 x 10 0.977 / 0.966, columns 5,000,000 of 10
 * 1.010 / 1.022. */
#define KLF_LOG_TAB_BITS 5
#define KLF_LOG_TAB_OFF 0x3F320000U /* bits(0.6953125) */
#define KLF_LOG_TAB_INVC                                                                      \
    1.422422170639038f, 1.3910701274871826f, 1.361931324005127f, 1.3335720300674438f,         \
        1.3061445951461792f, 1.2802093029022217f, 1.2547051906585693f, 1.2309699058532715f,   \
        1.2075895071029663f, 1.1851192712783813f, 1.1636261940002441f, 1.1428059339523315f,   \
        1.1226999759674072f, 1.1035352945327759f, 1.0849030017852783f, 1.0664536952972412f,   \
        1.049312949180603f, 1.0321561098098755f, 1.015744924545288f, 1.0f,                    \
        0.969770610332489f, 0.9410952925682068f, 0.914179265499115f, 0.8888078927993774f,     \
        0.864982545375824f, 0.8420355916023254f, 0.8205960988998413f, 0.8001205921173096f,    \
        0.7804491519927979f, 0.7619996666908264f, 0.7442830801010132f, 0.7273896932601929f
#define KLF_LOG_TAB_LOGC                                                                      \
    -0.35236117243766785f, -0.3300733268260956f, -0.3089037835597992f,                        \
        -0.28786107897758484f, -0.26707974076271057f, -0.2470235824584961f,                   \
        -0.2269006371498108f, -0.2078023999929428f, -0.188626229763031f,                      \
        -0.1698434203863144f, -0.15154115855693817f, -0.1334865838289261f,                    \
        -0.1157364770770073f, -0.09851893037557602f, -0.08149058371782303f,                   \
        -0.06433884054422379f, -0.04813561588525772f, -0.03164992481470108f,                  \
        -0.015622259117662907f, 0.0f, 0.0306957196444273f,                                    \
        0.06071087718009949f, 0.08972859382629395f, 0.1178741604089737f,                      \
        0.1450459510087967f, 0.17193299531936646f, 0.19772425293922424f,                      \
        0.22299282252788544f, 0.24788568913936615f, 0.2718091607093811f,                      \
        0.2953338325023651f, 0.31829291582107544f
#define KLF_LOG1P_P(r)                                                                        \
    (-0.5000002384185791f + (r) * (0.33336588740348816f + (r) * -0.24814166128635406f))
/* table[i mod 32] for each lane's i >= 0 (the permute reads i's low 5 bits) */
KLF_INLINE vf lookup_f32(const float *table, vi i) {
    return (vf)_mm512_permutex2var_ps(_mm512_loadu_ps(table), (__m512i)i,
                                      _mm512_loadu_ps(table + 16));
}
#else
#define KLF_LOG_TAB_BITS 4
#define KLF_LOG_TAB_OFF 0x3F330000U
#define KLF_LOG_TAB_INVC                                                                      \
    1.3989070653915405f, 1.3403141498565674f, 1.286432147026062f, 1.2367149591445923f,        \
        1.1906976699829102f, 1.147982120513916f, 1.1082251071929932f, 1.0711296796798706f,    \
        1.0364372730255127f, 1.0f, 0.9481481313705444f, 0.8951048851013184f,                  \
        0.8476821184158325f, 0.805031418800354f, 0.7664670944213867f, 0.7314285635948181f
#define KLF_LOG_TAB_LOGC                                                                      \
    -0.33569127321243286f, -0.2929040193557739f, -0.25187259912490845f,                       \
        -0.21245864033699036f, -0.17453941702842712f, -0.13800571858882904f,                  \
        -0.10275973379611969f, -0.06871386617422104f, -0.0357891321182251f, 0.0f,             \
        0.05324453115463257f, 0.11081437766551971f, 0.16524957120418549f,                     \
        0.21687397360801697f, 0.26596352458000183f, 0.3127557337284088f
#define KLF_LOG1P_P(r) (-0.5f + (r) * (0.333333333f + (r) * (-0.25f + (r) * 0.2f)))
/* table[i mod 16] for each lane's i >= 0 (the permutes read i's low 4 bits) */
KLF_INLINE vf lookup_f32(const float *table, vi i) {
    __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), (__m256i)i);
    __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 8), (__m256i)i);
    return (vf)_mm256_blendv_ps(lo, hi, (__m256)((vui)i << 28)); /* bit 3 of i as the sign */
}
#endif

#define KLF_LN2_F 0.693147182464599609375f /* ln2 rounded to float: 0x1.62e430p-1 */

KLF_INLINE vf neg_log_f32(vf x) {
    static const float invc_table[1 << KLF_LOG_TAB_BITS] = {KLF_LOG_TAB_INVC};
    static const float logc_table[1 << KLF_LOG_TAB_BITS] = {KLF_LOG_TAB_LOGC};
    vui u = (vui)x - KLF_LOG_TAB_OFF;
    vi k = (vi)u >> 23;
    vi i = (vi)(u >> (23 - KLF_LOG_TAB_BITS)); /* (the interval: its low bits) */
    vf z = (vf)((vui)x - ((vui)k << 23));
    vf r = z * lookup_f32(invc_table, i) - 1.0f;
    vf p = KLF_LOG1P_P(r);
    vf kf = __builtin_convertvector(k, vf);
    vf log_x = kf * KLF_LN2_F + ((r + (r * r) * p) + lookup_f32(logc_table, i));
    return -log_x;
}
#else
#define KLF_NEG_LOG_F32 0
#endif

/* log(2 hi / (hi + lo)), in [0, ln2], for 0 <= lo <= hi with hi > 0 normal:
 * 2 atanh(s) with s = (hi - lo) / (3 hi + lo) in [0, 1/3] (hi - lo is exact
 * where the log is small), R fitted like the one above on [0, 1/9]: degree
 * 10, error below 5e-18 relative (float32: degree 4, 1.6e-8). No exponent to
 * take out; 3 hi + lo <= 4 hi does not overflow for hi < 2^1022 (2^126). */
KLF_INLINE vd log_hi_f64(vd hi, vd lo) {
    vd s = (hi - lo) / (3.0 * hi + lo);
    vd z = s * s;
    vd r = 2.0 + z * (0.66666666666666658626 +
                 z * (0.40000000000014487035 +
                 z * (0.28571428567131854165 +
                 z * (0.22222222715282703229 +
                 z * (0.18181789535850843005 +
                 z * (0.15385567462815754996 +
                 z * (0.13314184076230374493 +
                 z * (0.12000716986129578654 +
                 z * (0.088024505178021134827 +
                 z * 0.16160614324024154199)))))))));
    return s * r;
}

KLF_INLINE vf log_hi_f32(vf hi, vf lo) {
    vf s = (hi - lo) / (3.0f * hi + lo);
    vf z = s * s;
    vf r = z * (0.666666406054f
                + z * (0.400075161571f + z * (0.282376994109f + z * 0.268449769985f)));
    return (s + s) + s * r;
}

/* ---- exp ------------------------------------------------------------------
 * e^x = 2^k e^r with k = round(x / ln2) and r = x - k ln2, |r| <= ln2/2,
 * reduced in two steps (Cody and Waite, with the LN2_HI and LN2_LO of log):
 * ln2 = LN2_HI + LN2_LO where LN2_HI
 * has trailing zero bits, so k LN2_HI is exact and x - k LN2_HI is exact
 * (they are close). e^r = 1 + r + r^2 P(r), P a polynomial fitted with
 * mpmath (weighted least squares refined toward equioscillation on
 * [-ln2/2, ln2/2]): degree 9 in float64, relative error of e^r below 4e-18;
 * degree 4 in float32, below 4e-9. k is rounded with the 1.5 2^52 (2^23)
 * shifter; its integer sits in the low bits, and k moved into the exponent
 * field (the shifter's own bits shift out) is added to e^r's or is 2^k.
 *
 * Only x <= 0 is needed (every argument is a logit minus the row maximum,
 * or a log-probability). Plain (wide = 0): x >= -708 (float32: -86.5), so
 * 2^k and e^x are normal. Wide: any x <= 0, -inf included: x is clamped at
 * -746 (-105), where e^x rounds to 0, and 2^k is applied as two normal
 * factors, so results that are subnormal are rounded once, correctly up to
 * the error of e^r. */
KLF_INLINE vd exp_f64(vd x, int wide) {
    const vd shifter = (vd){0} + 0x1.8p52;
    if (wide) x = vsel_f64((vl)(x < -746.0), (vd){0} - 746.0, x);
    vd kd = x * 1.4426950408889634 + shifter;
    vu ki = (vu)kd;
    kd = kd - shifter;
    vd r = x - kd * KLF_LN2_HI;
    r = r - kd * KLF_LN2_LO;
    vd p = (vd){0} + 2.500266645154104e-08;
    p = p * r + 2.763017141835057e-07;
    p = p * r + 2.755757791036711e-06;
    p = p * r + 2.4801493340098515e-05;
    p = p * r + 0.0001984126951638815;
    p = p * r + 0.0013888888943363465;
    p = p * r + 0.008333333333489725;
    p = p * r + 0.04166666666653136;
    p = p * r + 0.16666666666666421;
    p = p * r + 0.500000000000001;
    vd y = 1.0 + (r + (r * r) * p);
    if (!wide) /* y 2^k is normal: add k to y's exponent field */
        return (vd)((vu)y + (ki << 52));
    /* k in [-1077, 0]: 2^k = 2^kh 2^kl, kh = max(k, -1000), kl in [-77, 0] */
    vd kh = vsel_f64((vl)(kd < -1000.0), (vd){0} - 1000.0, kd);
    vd kl = kd - kh;
    vu bh = ((vu)(kh + shifter) + 1023) << 52;
    vu bl = ((vu)(kl + shifter) + 1023) << 52;
    return (y * (vd)bh) * (vd)bl;
}

KLF_INLINE vf exp_f32(vf x, int wide) {
    const vf shifter = (vf){0} + 0x1.8p23f;
    if (wide) x = vsel_f32((vi)(x < -105.0f), (vf){0} - 105.0f, x);
    vf kd = x * 1.44269504f + shifter;
    vui ki = (vui)kd;
    kd = kd - shifter;
    vf r = x - kd * KLF_LN2_HI_F;
    r = r - kd * KLF_LN2_LO_F;
    vf p = (vf){0} + 0.0013753005769103765f;
    p = p * r + 0.00836886651813984f;
    p = p * r + 0.04166950285434723f;
    p = p * r + 0.1666651964187622f;
    p = p * r + 0.49999988079071045f;
    vf y = 1.0f + (r + (r * r) * p);
    if (!wide)
        return (vf)((vui)y + (ki << 23));
    /* k in [-152, 0]: 2^k = 2^kh 2^kl, kh = max(k, -100), kl in [-52, 0] */
    vf kh = vsel_f32((vi)(kd < -100.0f), (vf){0} - 100.0f, kd);
    vf kl = kd - kh;
    vui bh = ((vui)(kh + shifter) + 127) << 23;
    vui bl = ((vui)(kl + shifter) + 127) << 23;
    return (y * (vf)bh) * (vf)bl;
}

/* The band of a sum check |s - 1| <= tol decided from a sum s' near the
 * check's own s (a float sum, within margin (1 + |tol|) of s): |s' - 1| <=
 * band[0] means the check passes, a finite |s' - 1| > band[1] that it
 * fails, and anything between (NaN too) decides nothing (the caller takes
 * s). band = tol -/+ margin (1 + |tol|) rounded outward to float (a band
 * only widens, leaving more rows undecided); tol itself when that margin
 * is not finite. Used by the float32 short tiles (lanes_rows.h) and the
 * float32 row block (divergence_rows.h). */
static inline void klf_sum_band(double tol, double margin, float *band) {
    double m = margin * (1.0 + fabs(tol));
    double lo = m <= DBL_MAX ? tol - m : tol, hi = m <= DBL_MAX ? tol + m : tol;
    float flo = (float)lo, fhi = (float)hi;
    if ((double)flo > lo) flo = nextafterf(flo, -INFINITY);
    if ((double)fhi < hi) fhi = nextafterf(fhi, INFINITY);
    band[0] = flo;
    band[1] = fhi;
}

#endif

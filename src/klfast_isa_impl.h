/* One instruction-set level of the fast kernels: included by klfast_rows.h
 * with KLF_ISA and KLF_VBYTES (the native vector width) set, and a GCC target
 * pragma active. No include guard. */

#define KLF_FN(name) KLF_CAT(KLF_CAT(name, _), KLF_ISA)

typedef double KLF_FN(klf_vd) __attribute__((vector_size(KLF_VBYTES)));
typedef int64_t KLF_FN(klf_vl) __attribute__((vector_size(KLF_VBYTES)));
typedef uint64_t KLF_FN(klf_vu) __attribute__((vector_size(KLF_VBYTES)));
typedef float KLF_FN(klf_vf) __attribute__((vector_size(KLF_VBYTES)));
typedef int32_t KLF_FN(klf_vi) __attribute__((vector_size(KLF_VBYTES)));
typedef uint32_t KLF_FN(klf_vui) __attribute__((vector_size(KLF_VBYTES)));
/* a float vector widened to double: twice the bytes */
typedef double KLF_FN(klf_vdw) __attribute__((vector_size(2 * KLF_VBYTES)));
/* half a float vector: widens to a double vector */
typedef float KLF_FN(klf_vfh) __attribute__((vector_size(KLF_VBYTES / 2)));
#define klf_vd KLF_FN(klf_vd)
#define klf_vl KLF_FN(klf_vl)
#define klf_vu KLF_FN(klf_vu)
#define klf_vf KLF_FN(klf_vf)
#define klf_vi KLF_FN(klf_vi)
#define klf_vui KLF_FN(klf_vui)
#define klf_vfh KLF_FN(klf_vfh)
#define klf_vdw KLF_FN(klf_vdw)

/* log(a / b) lane by lane, for positive normal a and b with
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
 * multiply-add. The error is about one ulp of the result. a + b' <= 2.5 a does not overflow
 * for a < 2^1022 (the kernels send rows with larger entries to the exact
 * path); 1 / 5e-324 would, this does not. */
KLF_INLINE klf_vd KLF_FN(klf_log_ratio_f64)(klf_vd a, klf_vd b) {
    const klf_vl zero = {0};
    klf_vl ia = (klf_vl)a, ib = (klf_vl)b;
    klf_vl k = ((ib - ia) + (zero + (1LL << 51))) >> 52;
    klf_vd bs = (klf_vd)(ib - (k << 52));
#if KLF_VBYTES == 64
    klf_vd e = __builtin_convertvector(k, klf_vd); /* one instruction with AVX-512 */
#else
    /* k as a double: (1.5 2^52 + k) read as a double, minus 1.5 2^52 */
    klf_vd e = (klf_vd)((zero + 0x4338000000000000LL) + k) - 6755399441055744.0;
#endif
    klf_vd s = (a - bs) / (a + bs);
    klf_vd z = s * s;
    klf_vd r = 2.0 + z * (0.66666666666666664051 +
                     z * (0.40000000000008287896 +
                     z * (0.28571428567123362645 +
                     z * (0.22222223073289448508 +
                     z * (0.18181735700014926134 +
                     z * (0.15388943697091611891 +
                     z * (0.1320823374916353322 +
                     z * 0.13620231330491777204)))))));
    return s * r - e * 0.69314718055994530942;
}

/* The same in float32 arithmetic for float32 inputs; R has degree 3 (error
 * below 1e-8 relative). Here 2s + s R keeps its exact 2s: s (2 + R) rounds
 * once more, which float32 cannot spare (3e-7 on rows that cancel). */
KLF_INLINE klf_vf KLF_FN(klf_log_ratio_f32)(klf_vf a, klf_vf b) {
    const klf_vi zero = {0};
    klf_vi ia = (klf_vi)a, ib = (klf_vi)b;
    klf_vi k = ((ib - ia) + (zero + (1 << 22))) >> 23;
    klf_vf bs = (klf_vf)(ib - (k << 23));
    klf_vf e = __builtin_convertvector(k, klf_vf);
    klf_vf s = (a - bs) / (a + bs);
    klf_vf z = s * s;
    klf_vf r = z * (0.666667148611f + z * (0.399786131049f + z * 0.299683960391f));
    return ((s + s) + s * r) - e * 0.693147180559945f;
}

/* log(2 hi / (hi + lo)), in [0, ln2], for 0 <= lo <= hi with hi > 0 normal:
 * 2 atanh(s) with s = (hi - lo) / (3 hi + lo) in [0, 1/3] (hi - lo is exact
 * where the log is small), R fitted like the one above on [0, 1/9]: degree
 * 10, error below 5e-18 relative (float32: degree 4, 1.6e-8). No exponent to
 * take out; 3 hi + lo <= 4 hi does not overflow for hi < 2^1022 (2^126). */
KLF_INLINE klf_vd KLF_FN(klf_log_hi_f64)(klf_vd hi, klf_vd lo) {
    klf_vd s = (hi - lo) / (3.0 * hi + lo);
    klf_vd z = s * s;
    klf_vd r = 2.0 + z * (0.66666666666666658626 +
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

KLF_INLINE klf_vf KLF_FN(klf_log_hi_f32)(klf_vf hi, klf_vf lo) {
    klf_vf s = (hi - lo) / (3.0f * hi + lo);
    klf_vf z = s * s;
    klf_vf r = z * (0.666666406054f + z * (0.400075161571f + z * (0.282376994109f + z * 0.268449769985f)));
    return (s + s) + s * r;
}

/* The halves of a float vector, and back (lane order kept). */
#if KLF_VBYTES == 64
#define KLF_IDX_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KLF_IDX_HI 8, 9, 10, 11, 12, 13, 14, 15
#define KLF_IDX_ALL KLF_IDX_LO, KLF_IDX_HI
#elif KLF_VBYTES == 32
#define KLF_IDX_LO 0, 1, 2, 3
#define KLF_IDX_HI 4, 5, 6, 7
#define KLF_IDX_ALL KLF_IDX_LO, KLF_IDX_HI
#else
#define KLF_IDX_LO 0, 1
#define KLF_IDX_HI 2, 3
#define KLF_IDX_ALL KLF_IDX_LO, KLF_IDX_HI
#endif
KLF_INLINE klf_vfh KLF_FN(klf_lo)(klf_vf v) { return __builtin_shufflevector(v, v, KLF_IDX_LO); }
KLF_INLINE klf_vfh KLF_FN(klf_hi)(klf_vf v) { return __builtin_shufflevector(v, v, KLF_IDX_HI); }
KLF_INLINE klf_vf KLF_FN(klf_join)(klf_vfh lo, klf_vfh hi) {
    return (klf_vf)__builtin_shufflevector(lo, hi, KLF_IDX_ALL);
}

/* v * s for float lanes: multiplied in double, rounded once (a normalized
 * single column is exactly 1) */
KLF_INLINE klf_vf KLF_FN(klf_scale_f32)(klf_vf v, double s) {
    klf_vd lo = __builtin_convertvector(KLF_FN(klf_lo)(v), klf_vd) * s;
    klf_vd hi = __builtin_convertvector(KLF_FN(klf_hi)(v), klf_vd) * s;
    return KLF_FN(klf_join)(__builtin_convertvector(lo, klf_vfh), __builtin_convertvector(hi, klf_vfh));
}

#define KLF_INT_COMPARE (KLF_VBYTES > 16)

/* x86 intrinsics of this width (the target pragma enables them) */
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
#define KLF_X86 1
#if KLF_VBYTES == 64
#define KLF_MM _mm512_
#define KLF_MMD __m512d
#define KLF_MMF __m512
#define KLF_MMI __m512i
#elif KLF_VBYTES == 32
#define KLF_MM _mm256_
#define KLF_MMD __m256d
#define KLF_MMF __m256
#define KLF_MMI __m256i
#else
#define KLF_MM _mm_
#define KLF_MMD __m128d
#define KLF_MMF __m128
#define KLF_MMI __m128i
#endif
#else
#define KLF_X86 0
#endif
/* any bit set in an integer vector */
#if KLF_X86 && KLF_VBYTES == 64
#define KLF_ANY(m) (_mm512_test_epi32_mask((__m512i)(m), (__m512i)(m)) != 0)
#elif KLF_X86 && KLF_VBYTES == 32
#define KLF_ANY(m) (!_mm256_testz_si256((__m256i)(m), (__m256i)(m)))
#elif KLF_X86
#define KLF_ANY(m) (_mm_movemask_epi8((__m128i)(m)) != 0)
#endif

#define KLF_T double
#define KLF_TS f64
#define KLF_V klf_vd
#define KLF_M klf_vl
#define KLF_U klf_vu
#define KLF_HUGE_BITS 0x7FD0000000000000ULL /* 2^1022 */
#define KLF_HUGE 0x1p1022
#define KLF_TWO_MIN_BITS 0x0020000000000000ULL
#define KLF_SCALE(v, s) ((v) * (s))
/* acc[s] += sub-vector s of a block */
#define KLF_ADD(acc, s, v) ((acc)[s] += (v))
#define KLF_GROUP 1
#if KLF_X86
#define KLF_FMAX(a, b) ((klf_vd)KLF_CAT(KLF_MM, max_pd)((KLF_MMD)(a), (KLF_MMD)(b)))
#define KLF_FMIN(a, b) ((klf_vd)KLF_CAT(KLF_MM, min_pd)((KLF_MMD)(a), (KLF_MMD)(b)))
#endif
#if KLF_X86 && KLF_VBYTES == 64
#define KLF_LOADN(src, n) ((klf_vd)_mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1), (src)))
#elif KLF_X86 && KLF_VBYTES == 32
#define KLF_LOADN(src, n) \
    ((klf_vd)_mm256_maskload_pd((src), (__m256i)((klf_vl){0, 1, 2, 3} < (long long)(n))))
#endif
#if KLF_X86 && KLF_VBYTES == 64
#define KLF_UMAX 1
#define KLF_UMAX_OP(a, b) ((klf_vu)_mm512_max_epu64((__m512i)(a), (__m512i)(b)))
#else
#define KLF_UMAX 0
#endif
#define KLF_TMIN DBL_MIN
#define KLF_LOG_RATIO KLF_FN(klf_log_ratio_f64)
#define KLF_LOG_HI KLF_FN(klf_log_hi_f64)
#include "klfast_measures_impl.h" /* undefines its KLF_ parameters */

#define KLF_T float
#define KLF_TS f32
#define KLF_V klf_vf
#define KLF_M klf_vi
#define KLF_U klf_vui
#define KLF_HUGE_BITS 0x7E800000U /* 2^126 */
#define KLF_HUGE 0x1p126f
#define KLF_TWO_MIN_BITS 0x01000000U
/* scaled in double, rounded once: a normalized single column is exactly 1 */
#define KLF_SCALE(v, s) KLF_FN(klf_scale_f32)((v), (s))
/* acc[2s], acc[2s + 1] += the two halves of sub-vector s, widened */
#define KLF_ADD(acc, s, v)                                                            \
    do {                                                                              \
        klf_vf v_ = (v);                                                              \
        klf_vdw w_ = __builtin_convertvector(v_, klf_vdw);                            \
        (acc)[2 * (s)] += __builtin_shufflevector(w_, w_, KLF_IDX_LO);                \
        (acc)[2 * (s) + 1] += __builtin_shufflevector(w_, w_, KLF_IDX_HI);            \
    } while (0)
/* 4 blocks summed in float, then widened: the widening costs as much as the log */
#define KLF_GROUP 4
#if KLF_X86
#define KLF_FMAX(a, b) ((klf_vf)KLF_CAT(KLF_MM, max_ps)((KLF_MMF)(a), (KLF_MMF)(b)))
#define KLF_FMIN(a, b) ((klf_vf)KLF_CAT(KLF_MM, min_ps)((KLF_MMF)(a), (KLF_MMF)(b)))
#endif
#if KLF_X86 && KLF_VBYTES == 64
#define KLF_LOADN(src, n) ((klf_vf)_mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), (src)))
#elif KLF_X86 && KLF_VBYTES == 32
#define KLF_LOADN(src, n) \
    ((klf_vf)_mm256_maskload_ps((src), (__m256i)((klf_vi){0, 1, 2, 3, 4, 5, 6, 7} < (n))))
#endif
#if KLF_X86 && KLF_VBYTES >= 32
#define KLF_UMAX 1
#define KLF_UMAX_OP(a, b) ((klf_vui)KLF_CAT(KLF_MM, max_epu32)((KLF_MMI)(a), (KLF_MMI)(b)))
#else
#define KLF_UMAX 0
#endif
#define KLF_TMIN FLT_MIN
#define KLF_LOG_RATIO KLF_FN(klf_log_ratio_f32)
#define KLF_LOG_HI KLF_FN(klf_log_hi_f32)
#include "klfast_measures_impl.h" /* undefines its KLF_ parameters */

#undef KLF_INT_COMPARE
#undef KLF_X86
#undef KLF_ANY
#undef KLF_MM
#undef KLF_MMD
#undef KLF_MMF
#undef KLF_MMI
#undef KLF_IDX_LO
#undef KLF_IDX_HI
#undef KLF_IDX_ALL
#undef klf_vd
#undef klf_vl
#undef klf_vu
#undef klf_vf
#undef klf_vi
#undef klf_vui
#undef klf_vfh
#undef klf_vdw
#undef KLF_FN

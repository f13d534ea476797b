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
/* float lanes widened to double: twice the bytes */
typedef double KLF_FN(klf_vdw) __attribute__((vector_size(2 * KLF_VBYTES)));
#define klf_vd KLF_FN(klf_vd)
#define klf_vl KLF_FN(klf_vl)
#define klf_vu KLF_FN(klf_vu)
#define klf_vf KLF_FN(klf_vf)
#define klf_vi KLF_FN(klf_vi)
#define klf_vui KLF_FN(klf_vui)
#define klf_vdw KLF_FN(klf_vdw)

/* log(a / b) lane by lane, for normal, positive, finite a and b (and
 * 2 * smallest normal <= a), with one division and no libm call.
 *
 * The bit pattern of a positive normal float, read as an integer and scaled
 * by 2^-52, is E + (m - 1) for x = m 2^E, m in [1, 2): log2(x) to within
 * 0.0861. So k = round((bits(b) - bits(a)) 2^-52) is an integer with
 * b' = b 2^-k within a factor 2^0.5861 of a, i.e. a / b' in [0.666, 1.501];
 * b' is b with k subtracted from its exponent field (exact). Then
 *   log(a / b) = log(a / b') - k ln2,   log(a / b') = 2 atanh(s),
 *   s = (a - b') / (a + b'),  |s| <= 0.2005,
 * with a - b' exact (Sterbenz) and 2 atanh(s) = 2s + s R(s^2), R a degree-8
 * least-squares polynomial (fitted with mpmath on [0, 0.0403]; its error is
 * below 1e-18 relative). The error is about one ulp of the result. Nothing
 * overflows: 1 / 5e-324 does, this does not. */
KLF_INLINE klf_vd KLF_FN(klf_log_ratio_f64)(klf_vd a, klf_vd b) {
    const klf_vl zero = {0};
    klf_vl ia = (klf_vl)a, ib = (klf_vl)b;
    klf_vl k = ((ib - ia) + (zero + (1LL << 51))) >> 52;
    klf_vd bs = (klf_vd)(ib - (k << 52));
    /* -k as a double: (1.5 2^52 - k) read as a double, minus 1.5 2^52 */
    klf_vd e = (klf_vd)((zero + 0x4338000000000000LL) - k) - 6755399441055744.0;
    klf_vd s = (a - bs) / (a + bs);
    klf_vd z = s * s;
    klf_vd r = z * (0.66666666666666664051 +
               z * (0.40000000000008287896 +
               z * (0.28571428567123362645 +
               z * (0.22222223073289448508 +
               z * (0.18181735700014926134 +
               z * (0.15388943697091611891 +
               z * (0.1320823374916353322 +
               z * 0.13620231330491777204)))))));
    return e * 6.93147180369123816490e-01 + ((s + s) + (s * r + e * 1.90821492927058770002e-10));
}

/* The same in float32 arithmetic for float32 inputs; R has degree 3 (error
 * below 1e-8 relative). */
KLF_INLINE klf_vf KLF_FN(klf_log_ratio_f32)(klf_vf a, klf_vf b) {
    const klf_vi zero = {0};
    klf_vi ia = (klf_vi)a, ib = (klf_vi)b;
    klf_vi k = ((ib - ia) + (zero + (1 << 22))) >> 23;
    klf_vf bs = (klf_vf)(ib - (k << 23));
    klf_vf e = (klf_vf)((zero + 0x4B400000) - k) - 12582912.0f;
    klf_vf s = (a - bs) / (a + bs);
    klf_vf z = s * s;
    klf_vf r = z * (0.666667148611f + z * (0.399786131049f + z * 0.299683960391f));
    return e * 6.9313812256e-01f + ((s + s) + (s * r + e * 9.0580006145e-06f));
}

#define KLF_INT_COMPARE (KLF_VBYTES > 16)

#define KLF_T double
#define KLF_TS f64
#define KLF_V klf_vd
#define KLF_M klf_vl
#define KLF_U klf_vu
#define KLF_INF_BITS 0x7FF0000000000000ULL
#define KLF_TWO_MIN_BITS 0x0020000000000000ULL
#define KLF_SCALE(v, s) ((v) * (s))
#define KLF_ACC klf_vd
#define KLF_WIDEN(v) (v)
#define KLF_TMIN DBL_MIN
#define KLF_TMAX DBL_MAX
#define KLF_LOG_RATIO KLF_FN(klf_log_ratio_f64)
#include "klfast_measures_impl.h"
#undef KLF_T
#undef KLF_TS
#undef KLF_V
#undef KLF_M
#undef KLF_U
#undef KLF_INF_BITS
#undef KLF_TWO_MIN_BITS
#undef KLF_SCALE
#undef KLF_ACC
#undef KLF_WIDEN
#undef KLF_TMIN
#undef KLF_TMAX
#undef KLF_LOG_RATIO

#define KLF_T float
#define KLF_TS f32
#define KLF_V klf_vf
#define KLF_M klf_vi
#define KLF_U klf_vui
#define KLF_INF_BITS 0x7F800000U
#define KLF_TWO_MIN_BITS 0x01000000U
/* scaled in double, rounded once: a normalized single column is exactly 1 */
#define KLF_SCALE(v, s) __builtin_convertvector(__builtin_convertvector((v), klf_vdw) * (s), klf_vf)
#define KLF_ACC klf_vdw
#define KLF_WIDEN(v) __builtin_convertvector((v), klf_vdw)
#define KLF_TMIN FLT_MIN
#define KLF_TMAX FLT_MAX
#define KLF_LOG_RATIO KLF_FN(klf_log_ratio_f32)
#include "klfast_measures_impl.h"
#undef KLF_T
#undef KLF_TS
#undef KLF_V
#undef KLF_M
#undef KLF_U
#undef KLF_INF_BITS
#undef KLF_TWO_MIN_BITS
#undef KLF_SCALE
#undef KLF_ACC
#undef KLF_WIDEN
#undef KLF_TMIN
#undef KLF_TMAX
#undef KLF_LOG_RATIO

#undef KLF_INT_COMPARE
#undef klf_vd
#undef klf_vl
#undef klf_vu
#undef klf_vf
#undef klf_vi
#undef klf_vui
#undef klf_vdw
#undef KLF_FN

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

/* log(a / b) lane by lane, for normal, positive, finite a and b, with one
 * division and no libm call. a = ma 2^ea, b = mb 2^eb with ma, mb in [1, 2);
 * the ratio ma / mb is moved into [1/sqrt2, sqrt2] by doubling one of them,
 * then log(ma / mb) = 2 atanh(s), s = (ma - mb) / (ma + mb), |s| <= 0.1716,
 * evaluated as 2s + s R(s^2) with the classic fdlibm coefficients. ma - mb is
 * exact (Sterbenz), so the error is about one ulp of the result. Nothing
 * overflows: 1 / 5e-324 does, this does not. Other lanes give garbage that
 * the callers mask out. */
KLF_INLINE klf_vd KLF_FN(klf_log_ratio_f64)(klf_vd a, klf_vd b) {
    const klf_vu top = {0}, mant = top + 0x000FFFFFFFFFFFFFULL, one = top + 0x3FF0000000000000ULL,
                 magic = top + 0x4330000000000000ULL;
    klf_vu ia = (klf_vu)a, ib = (klf_vu)b;
    /* biased exponents as doubles: (2^52 + E) - 2^52, no int->double convert */
    klf_vd e = ((klf_vd)((ia >> 52) | magic)) - ((klf_vd)((ib >> 52) | magic));
    klf_vd ma = (klf_vd)((ia & mant) | one), mb = (klf_vd)((ib & mant) | one);
    const klf_vd unit = (klf_vd)one;
    klf_vl up = ma > 1.41421356237309504880 * mb;
    mb = (klf_vd)(((klf_vl)(mb + mb) & up) | ((klf_vl)mb & ~up));
    e = e + (klf_vd)((klf_vl)unit & up);
    klf_vl down = 1.41421356237309504880 * ma < mb;
    ma = (klf_vd)(((klf_vl)(ma + ma) & down) | ((klf_vl)ma & ~down));
    e = e - (klf_vd)((klf_vl)unit & down);
    klf_vd s = (ma - mb) / (ma + mb);
    klf_vd z = s * s;
    klf_vd r = z * (6.666666666666735130e-01 +
               z * (3.999999999940941908e-01 +
               z * (2.857142874366239149e-01 +
               z * (2.222219843214978396e-01 +
               z * (1.818357216161805012e-01 +
               z * (1.531383769920937332e-01 +
               z * 1.479819860511658591e-01))))));
    return e * 6.93147180369123816490e-01 + ((s + s) + (s * r + e * 1.90821492927058770002e-10));
}

/* The same in float32 arithmetic for float32 inputs (|s| <= 0.1716: the
 * series 2s + s(2/3 z + 2/5 z^2 + 2/7 z^3 + 2/9 z^4) is within 1e-9). */
KLF_INLINE klf_vf KLF_FN(klf_log_ratio_f32)(klf_vf a, klf_vf b) {
    const klf_vui top = {0}, mant = top + 0x007FFFFFU, one = top + 0x3F800000U,
                  magic = top + 0x4B000000U;
    klf_vui ia = (klf_vui)a, ib = (klf_vui)b;
    klf_vf e = ((klf_vf)((ia >> 23) | magic)) - ((klf_vf)((ib >> 23) | magic));
    klf_vf ma = (klf_vf)((ia & mant) | one), mb = (klf_vf)((ib & mant) | one);
    const klf_vf unit = (klf_vf)one;
    klf_vi up = ma > 1.41421356f * mb;
    mb = (klf_vf)(((klf_vi)(mb + mb) & up) | ((klf_vi)mb & ~up));
    e = e + (klf_vf)((klf_vi)unit & up);
    klf_vi down = 1.41421356f * ma < mb;
    ma = (klf_vf)(((klf_vi)(ma + ma) & down) | ((klf_vi)ma & ~down));
    e = e - (klf_vf)((klf_vi)unit & down);
    klf_vf s = (ma - mb) / (ma + mb);
    klf_vf z = s * s;
    klf_vf r = z * (0.66666667f + z * (0.4f + z * (0.28571429f + z * 0.22222222f)));
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

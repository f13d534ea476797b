/* One instruction-set level of the loss kernels: included by klfast_loss.h
 * with KLFL_ISA and KLFL_VBYTES (the native vector width) set, and a GCC
 * target pragma active. Vector types, exp and log in float64 and float32,
 * then the row kernel for each element type. No include guard. */

#define KLFL_FN(name) KLFL_CAT(KLFL_CAT(name, _), KLFL_ISA)

typedef double KLFL_FN(klfl_vd) __attribute__((vector_size(KLFL_VBYTES)));
typedef int64_t KLFL_FN(klfl_vl) __attribute__((vector_size(KLFL_VBYTES)));
typedef uint64_t KLFL_FN(klfl_vu) __attribute__((vector_size(KLFL_VBYTES)));
typedef float KLFL_FN(klfl_vf) __attribute__((vector_size(KLFL_VBYTES)));
typedef int32_t KLFL_FN(klfl_vi) __attribute__((vector_size(KLFL_VBYTES)));
typedef uint32_t KLFL_FN(klfl_vui) __attribute__((vector_size(KLFL_VBYTES)));
#define klfl_vd KLFL_FN(klfl_vd)
#define klfl_vl KLFL_FN(klfl_vl)
#define klfl_vu KLFL_FN(klfl_vu)
#define klfl_vf KLFL_FN(klfl_vf)
#define klfl_vi KLFL_FN(klfl_vi)
#define klfl_vui KLFL_FN(klfl_vui)

/* ---- exp ---------------------------------------------------------------
 * e^x = 2^k e^r with k = round(x / ln2) and r = x - k ln2, |r| <= ln2/2,
 * reduced in two steps (Cody and Waite): ln2 = LN2_HI + LN2_LO where LN2_HI
 * has trailing zero bits, so k LN2_HI is exact and x - k LN2_HI is exact
 * (they are close). e^r = 1 + r + r^2 P(r), P a polynomial fitted with
 * mpmath (weighted least squares refined toward equioscillation on
 * [-ln2/2, ln2/2]): degree 9 in float64, relative error of e^r below 4e-18;
 * degree 4 in float32, below 4e-9. k is rounded with the 1.5 2^52 (2^23)
 * shifter; its integer sits in the low bits, and k moved into the exponent
 * field (the shifter's own bits shift out) is added to e^r's or is 2^k.
 *
 * Only x <= 0 is needed (every argument is a logit minus the row maximum,
 * or a log-probability). Plain: x >= -708 (float32: -86.5), so 2^k and e^x
 * are normal.
 * wide: any x <= 0, -inf included: x is clamped at -746 (-105), where e^x
 * rounds to 0, and 2^k is applied as two normal factors, so results that are
 * subnormal are rounded once, correctly up to the error of e^r. */
#define KLFL_LN2_HI 6.93147180369123816490e-01 /* 0x1.62e42feep-1 */
#define KLFL_LN2_LO 1.9082149292705877e-10
#define KLFL_LN2_HI_F 0.693145751953125f /* 0x1.62e4p-1 */
#define KLFL_LN2_LO_F 1.428606765330187e-06f

KLFL_INLINE klfl_vd KLFL_FN(klfl_exp_f64)(klfl_vd x, int wide) {
    const klfl_vd shifter = (klfl_vd){0} + 0x1.8p52;
    if (wide) {
        klfl_vl low = (klfl_vl)(x < -746.0);
        x = (klfl_vd)(((klfl_vl)x & ~low) | ((klfl_vl)((klfl_vd){0} - 746.0) & low));
    }
    klfl_vd kd = x * 1.4426950408889634 + shifter;
    klfl_vu ki = (klfl_vu)kd;
    kd = kd - shifter;
    klfl_vd r = x - kd * KLFL_LN2_HI;
    r = r - kd * KLFL_LN2_LO;
    klfl_vd p = (klfl_vd){0} + 2.500266645154104e-08;
    p = p * r + 2.763017141835057e-07;
    p = p * r + 2.755757791036711e-06;
    p = p * r + 2.4801493340098515e-05;
    p = p * r + 0.0001984126951638815;
    p = p * r + 0.0013888888943363465;
    p = p * r + 0.008333333333489725;
    p = p * r + 0.04166666666653136;
    p = p * r + 0.16666666666666421;
    p = p * r + 0.500000000000001;
    klfl_vd y = 1.0 + (r + (r * r) * p);
    if (!wide) /* y 2^k is normal: add k to y's exponent field */
        return (klfl_vd)((klfl_vu)y + (ki << 52));
    /* k in [-1077, 0]: 2^k = 2^kh 2^kl, kh = max(k, -1000), kl in [-77, 0] */
    klfl_vl below = (klfl_vl)(kd < -1000.0);
    klfl_vd kh = (klfl_vd)(((klfl_vl)kd & ~below) |
                           ((klfl_vl)((klfl_vd){0} - 1000.0) & below));
    klfl_vd kl = kd - kh;
    klfl_vu bh = ((klfl_vu)(kh + shifter) + 1023) << 52;
    klfl_vu bl = ((klfl_vu)(kl + shifter) + 1023) << 52;
    return (y * (klfl_vd)bh) * (klfl_vd)bl;
}

KLFL_INLINE klfl_vf KLFL_FN(klfl_exp_f32)(klfl_vf x, int wide) {
    const klfl_vf shifter = (klfl_vf){0} + 0x1.8p23f;
    if (wide) {
        klfl_vi low = (klfl_vi)(x < -105.0f);
        x = (klfl_vf)(((klfl_vi)x & ~low) | ((klfl_vi)((klfl_vf){0} - 105.0f) & low));
    }
    klfl_vf kd = x * 1.44269504f + shifter;
    klfl_vui ki = (klfl_vui)kd;
    kd = kd - shifter;
    klfl_vf r = x - kd * KLFL_LN2_HI_F;
    r = r - kd * KLFL_LN2_LO_F;
    klfl_vf p = (klfl_vf){0} + 0.0013753005769103765f;
    p = p * r + 0.00836886651813984f;
    p = p * r + 0.04166950285434723f;
    p = p * r + 0.1666651964187622f;
    p = p * r + 0.49999988079071045f;
    klfl_vf y = 1.0f + (r + (r * r) * p);
    if (!wide)
        return (klfl_vf)((klfl_vui)y + (ki << 23));
    /* k in [-152, 0]: 2^k = 2^kh 2^kl, kh = max(k, -100), kl in [-52, 0] */
    klfl_vi below = (klfl_vi)(kd < -100.0f);
    klfl_vf kh = (klfl_vf)(((klfl_vi)kd & ~below) |
                           ((klfl_vi)((klfl_vf){0} - 100.0f) & below));
    klfl_vf kl = kd - kh;
    klfl_vui bh = ((klfl_vui)(kh + shifter) + 127) << 23;
    klfl_vui bl = ((klfl_vui)(kl + shifter) + 127) << 23;
    return (y * (klfl_vf)bh) * (klfl_vf)bl;
}

/* ---- log ---------------------------------------------------------------
 * log x for normal, positive, finite x. x = 2^e m with m in [sqrt(1/2),
 * sqrt(2)), found on the bit pattern: adding 2^52 - bits(sqrt(1/2)) carries
 * into the exponent field exactly when the mantissa is >= sqrt(2)'s, so the
 * field is e + bias and the low bits plus bits(sqrt(1/2)) are m's pattern
 * (all unsigned, no shift of a sign). With f = m - 1 (exact) and
 * s = f / (2 + f), |s| <= 0.1716:
 *   log m = 2 atanh(s) = 2s + s R(s^2) = f - s (f - R(s^2)),
 * the last form because 2s = f - s f; it adds a small correction to the
 * exact f. R(z) = z Q(z), Q fitted with mpmath on [0, 0.02944]: degree 6 in
 * float64 (error of R below 3e-18 relative to 2), degree 2 in float32 (below
 * 2e-9). Then log x = e LN2_HI + (log m + e LN2_LO), e LN2_HI exact. One
 * division per element; about one ulp. */
KLFL_INLINE klfl_vd KLFL_FN(klfl_log_f64)(klfl_vd x) {
    klfl_vu u = (klfl_vu)x + (0x3FF0000000000000ULL - 0x3FE6A09E667F3BCDULL);
    klfl_vd m = (klfl_vd)((u & 0x000FFFFFFFFFFFFFULL) + 0x3FE6A09E667F3BCDULL);
    /* e as a double: the field e + 1023 under the exponent of 2^52 */
    klfl_vd e = (klfl_vd)((u >> 52) | 0x4330000000000000ULL) - (0x1p52 + 1023.0);
    klfl_vd f = m - 1.0;
    klfl_vd s = f / (2.0 + f);
    klfl_vd z = s * s;
    klfl_vd q = (klfl_vd){0} + 0.1479706674402544;
    q = q * z + 0.15313952318869525;
    q = q * z + 0.18183567568125023;
    q = q * z + 0.22222198524366923;
    q = q * z + 0.2857142874269941;
    q = q * z + 0.39999999999414265;
    q = q * z + 0.6666666666666734;
    klfl_vd log_m = f - s * (f - z * q);
    return e * KLFL_LN2_HI + (log_m + e * KLFL_LN2_LO);
}

KLFL_INLINE klfl_vf KLFL_FN(klfl_log_f32)(klfl_vf x) {
    klfl_vui u = (klfl_vui)x + (0x3F800000U - 0x3F3504F3U);
    klfl_vf m = (klfl_vf)((u & 0x007FFFFFU) + 0x3F3504F3U);
    klfl_vf e = (klfl_vf)((u >> 23) | 0x4B000000U) - (0x1p23f + 127.0f);
    klfl_vf f = m - 1.0f;
    klfl_vf s = f / (2.0f + f);
    klfl_vf z = s * s;
    klfl_vf q = (klfl_vf){0} + 0.29871585965156555f;
    q = q * z + 0.3997756242752075f;
    q = q * z + 0.6666677594184875f;
    klfl_vf log_m = f - s * (f - z * q);
    return e * KLFL_LN2_HI_F + (log_m + e * KLFL_LN2_LO_F);
}

/* y = exp(x) (fn 0, plain; 1, wide) or log(x) (fn 2) lane by lane: the
 * tests' window on the vector math. */
#define KLFL_MATH(TS, T, V, EXP, LOG)                                                      \
    static void KLFL_FN(KLFL_CAT(klfast_loss_math_, TS))(int fn, const T *x, T *y,          \
                                                          ptrdiff_t n) {                    \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                          \
        T buf[L];                                                                           \
        V v;                                                                                \
        for (ptrdiff_t i = 0; i < n; i += L) {                                              \
            int m = n - i < L ? (int)(n - i) : L;                                           \
            for (int l = 0; l < L; l++) buf[l] = l < m ? x[i + l] : (T)(fn == 2);           \
            memcpy(&v, buf, sizeof(V));                                                     \
            v = fn == 2 ? LOG(v) : fn == 1 ? EXP(v, 1) : EXP(v, 0);                         \
            memcpy(buf, &v, sizeof(V));                                                     \
            memcpy(y + i, buf, (size_t)m * sizeof(T));                                      \
        }                                                                                   \
    }
KLFL_MATH(f64, double, klfl_vd, KLFL_FN(klfl_exp_f64), KLFL_FN(klfl_log_f64))
KLFL_MATH(f32, float, klfl_vf, KLFL_FN(klfl_exp_f32), KLFL_FN(klfl_log_f32))
#undef KLFL_MATH

/* acc[0] += v's low half in float64, acc[1] += its high half: native vectors
 * only (GCC lowers vectors wider than the target's through memory). GCC 12
 * splits the 8-lane conversion of AVX-512 in two: the instruction is named. */
#if KLFL_VBYTES == 16
#define KLFL_LO 0, 1
#define KLFL_HI 2, 3
#elif KLFL_VBYTES == 32
#define KLFL_LO 0, 1, 2, 3
#define KLFL_HI 4, 5, 6, 7
#else
#define KLFL_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KLFL_HI 8, 9, 10, 11, 12, 13, 14, 15
#endif
#if KLFL_VBYTES == 64 && KLFAST_LOSS_X86_LEVELS
typedef float KLFL_FN(klfl_vfh) __attribute__((vector_size(32)));
#define KLFL_WIDEN_HALF(h) \
    ((klfl_vd)__builtin_ia32_cvtps2pd512_mask((h), (klfl_vd){0}, (unsigned char)0xFF, 4))
#else
#define KLFL_WIDEN_HALF(h) __builtin_convertvector((h), klfl_vd)
#endif
#if defined(__clang__) || __GNUC__ >= 12
KLFL_INLINE void KLFL_FN(klfl_widen_add)(klfl_vd *acc, klfl_vf v) {
    acc[0] += KLFL_WIDEN_HALF(__builtin_shufflevector(v, v, KLFL_LO));
    acc[1] += KLFL_WIDEN_HALF(__builtin_shufflevector(v, v, KLFL_HI));
}
#else /* no __builtin_shufflevector: halves through memory */
typedef float KLFL_FN(klfl_vfh2) __attribute__((vector_size(KLFL_VBYTES / 2)));
KLFL_INLINE void KLFL_FN(klfl_widen_add)(klfl_vd *acc, klfl_vf v) {
    KLFL_FN(klfl_vfh2) lo, hi;
    memcpy(&lo, &v, sizeof(lo));
    memcpy(&hi, (const char *)&v + sizeof(lo), sizeof(hi));
    acc[0] += __builtin_convertvector(lo, klfl_vd);
    acc[1] += __builtin_convertvector(hi, klfl_vd);
}
#endif
#undef KLFL_LO
#undef KLFL_HI
#undef KLFL_WIDEN_HALF

/* max(m, x) and min(m, x) lane by lane, for the running extremes: a NaN x
 * may make them NaN (such rows are invalid anyway). x86 has one instruction
 * for each; elsewhere a compare and a select. */
#if KLFAST_LOSS_X86_LEVELS && KLFL_VBYTES == 64
#define KLFL_MAX_F64(m, x) __builtin_ia32_maxpd512_mask((m), (x), (m), (unsigned char)0xFF, 4)
#define KLFL_MIN_F64(m, x) __builtin_ia32_minpd512_mask((m), (x), (m), (unsigned char)0xFF, 4)
#define KLFL_MAX_F32(m, x) __builtin_ia32_maxps512_mask((m), (x), (m), (unsigned short)0xFFFF, 4)
#define KLFL_MIN_F32(m, x) __builtin_ia32_minps512_mask((m), (x), (m), (unsigned short)0xFFFF, 4)
#elif KLFAST_LOSS_X86_LEVELS && KLFL_VBYTES == 32
#define KLFL_MAX_F64(m, x) __builtin_ia32_maxpd256((m), (x))
#define KLFL_MIN_F64(m, x) __builtin_ia32_minpd256((m), (x))
#define KLFL_MAX_F32(m, x) __builtin_ia32_maxps256((m), (x))
#define KLFL_MIN_F32(m, x) __builtin_ia32_minps256((m), (x))
#elif KLFAST_LOSS_X86_LEVELS
#define KLFL_MAX_F64(m, x) __builtin_ia32_maxpd((m), (x))
#define KLFL_MIN_F64(m, x) __builtin_ia32_minpd((m), (x))
#define KLFL_MAX_F32(m, x) __builtin_ia32_maxps((m), (x))
#define KLFL_MIN_F32(m, x) __builtin_ia32_minps((m), (x))
#endif

/* ---- the row kernels ----------------------------------------------------- */
#define KLFL_T double
#define KLFL_TS f64
#define KLFL_V klfl_vd
#define KLFL_M klfl_vl
#define KLFL_ACC_PER_V 1 /* float64 vectors that sum one native vector */
#define KLFL_ADD(acc, v) (*(acc) += (v))
#define KLFL_TMIN DBL_MIN
#define KLFL_TMAX DBL_MAX
#define KLFL_EXP KLFL_FN(klfl_exp_f64)
#define KLFL_LOG KLFL_FN(klfl_log_f64)
#define KLFL_EXP_PLAIN_MIN (-708.0) /* e^x normal down to here */
#ifdef KLFL_MAX_F64
#define KLFL_VMAX KLFL_MAX_F64
#define KLFL_VMIN KLFL_MIN_F64
#endif
#define KLFL_PRM(name) (prm->name)
#include "klfast_loss_impl.h"
#undef KLFL_T
#undef KLFL_TS
#undef KLFL_V
#undef KLFL_M
#undef KLFL_ACC_PER_V
#undef KLFL_ADD
#undef KLFL_TMIN
#undef KLFL_TMAX
#undef KLFL_EXP
#undef KLFL_LOG
#undef KLFL_EXP_PLAIN_MIN
#undef KLFL_PRM
#undef KLFL_VMAX
#undef KLFL_VMIN

#define KLFL_T float
#define KLFL_TS f32
#define KLFL_V klfl_vf
#define KLFL_M klfl_vi
#define KLFL_ACC_PER_V 2
#define KLFL_ADD(acc, v) KLFL_FN(klfl_widen_add)((acc), (v))
#define KLFL_TMIN FLT_MIN
#define KLFL_TMAX FLT_MAX
#define KLFL_EXP KLFL_FN(klfl_exp_f32)
#define KLFL_LOG KLFL_FN(klfl_log_f32)
#define KLFL_EXP_PLAIN_MIN (-86.5f)
#ifdef KLFL_MAX_F32
#define KLFL_VMAX KLFL_MAX_F32
#define KLFL_VMIN KLFL_MIN_F32
#endif
#define KLFL_PRM(name) (prm->KLFL_CAT(name, _f32))
#include "klfast_loss_impl.h"
#undef KLFL_T
#undef KLFL_TS
#undef KLFL_V
#undef KLFL_M
#undef KLFL_ACC_PER_V
#undef KLFL_ADD
#undef KLFL_TMIN
#undef KLFL_TMAX
#undef KLFL_EXP
#undef KLFL_LOG
#undef KLFL_EXP_PLAIN_MIN
#undef KLFL_PRM
#undef KLFL_VMAX
#undef KLFL_VMIN

#undef KLFL_MAX_F64
#undef KLFL_MIN_F64
#undef KLFL_MAX_F32
#undef KLFL_MIN_F32
#undef klfl_vd
#undef klfl_vl
#undef klfl_vu
#undef klfl_vf
#undef klfl_vi
#undef klfl_vui
#undef KLFL_FN

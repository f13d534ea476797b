/* The element type the kernels below it are compiled for: included by
 * engine/level.h once with KLF_ELEMENT_BITS 64 (double), once with 32
 * (float) and once with 16 (float16 storage, float arithmetic: the
 * divergence rows only), before the measures and the row loops. It names the
 * types and the math of simd.h the kernels use, and suffixes their function
 * names (F(name) is name_f64, name_f32 or name_f16). No include guard.
 *
 * T is the arithmetic type, S the type stored in the inputs (T, but for
 * float16); LOADV loads a vector of S as T, TO_T one element. */
#undef KLF_ELEMENT
#undef T
#undef S
#undef LOADV
#undef TO_T
#undef V
#undef M
#undef U
#undef F
#undef ROW_FN
#undef HUGE_BITS
#undef HUGE_VALUE
#undef TWO_MIN_BITS
#undef TMIN
#undef GROUP
#undef VSEL
#undef VMAX
#undef VMIN
#undef LOAD_PART
#undef PERMUTE2
#undef SCALE
#undef LOG_RATIO
#undef LOG_HI
#undef NEG_LOG
#undef LOG
#undef EXP
#undef EXP_PLAIN_MIN
#undef UMAX_OP
#undef UGE_MASK
#undef ADD
#undef WIDEN
#undef PRM
#undef SUB_SCALE
#undef SUB_LOG
#undef IOTA

#define KLF_CAT_(a, b) a##b
#define KLF_CAT(a, b) KLF_CAT_(a, b)
/* klfast_<name>_<f64|f32>_<level>: the row functions' symbols */
#define ROW_FN(name) KLF_CAT(KLF_CAT(KLF_CAT(klfast_, name), KLF_CAT(_, KLF_ELEMENT)), \
                             KLF_CAT(_, KLF_LEVEL))
#define F(name) KLF_CAT(KLF_CAT(name, _), KLF_ELEMENT)

#if KLF_ELEMENT_BITS == 64
#define KLF_ELEMENT f64
#define T double
#define V vd
#define M vl /* a lane mask: all bits set or none */
#define U vu
#define HUGE_BITS 0x7FD0000000000000ULL /* 2^1022: entries from here go to the exact path */
#define HUGE_VALUE 0x1p1022
#define TWO_MIN_BITS 0x0020000000000000ULL /* 2 * DBL_MIN */
#define TMIN DBL_MIN
#define GROUP 1 /* 64-byte blocks per group: doubles are summed directly */
#define VSEL vsel_f64
#define VMAX vmax_f64
#define VMIN vmin_f64
#define LOAD_PART load_part_f64
#define PERMUTE2 permute2_f64
#define SCALE(v, s) ((v) * (s))
#define LOG_RATIO log_ratio_f64
#define NEG_LOG(x) log_ratio_f64(BCAST(1), (x))
#define LOG_HI log_hi_f64
#define LOG log_f64
#define EXP exp_f64
#define EXP_PLAIN_MIN (-708.0) /* e^x is normal down to here */
#define PRM(name) (prm->name) /* a parameter of the forms kernel */
/* a subnormal x times SUB_SCALE is normal: log x = log(x SUB_SCALE) - SUB_LOG */
#define SUB_SCALE 0x1p54
#define SUB_LOG 37.42994775023705 /* 54 ln 2 */
/* acc[s] += sub-vector s of a block */
#define ADD(acc, s, v) ((acc)[s] += (v))
/* acc[s] = sub-vector s of a block */
#define WIDEN(acc, s, v) ((acc)[s] = (v))
#if KLF_X86 && KLF_VBYTES == 64
#define UMAX_OP(a, b) ((vu)_mm512_max_epu64((__m512i)(a), (__m512i)(b)))
/* the lanes where a >= b, unsigned, as a mask register */
#define UGE_MASK(a, b) _mm512_cmpge_epu64_mask((__m512i)(a), (__m512i)(b))
#endif

#else /* 32, or 16: float arithmetic */
#if KLF_ELEMENT_BITS == 16
#define KLF_ELEMENT f16
#else
#define KLF_ELEMENT f32
#endif
#define T float
#define V vf
#define M vi
#define U vui
#define HUGE_BITS 0x7E800000U /* 2^126 */
#define HUGE_VALUE 0x1p126f
#define TWO_MIN_BITS 0x01000000U
#define TMIN FLT_MIN
/* 4 blocks summed in float, then widened: the widening costs as much as the log */
#define GROUP 4
#define VSEL vsel_f32
#define VMAX vmax_f32
#define VMIN vmin_f32
#define LOAD_PART load_part_f32
#define PERMUTE2 permute2_f32
#define SCALE(v, s) scale_f32((v), (s))
#define LOG_RATIO log_ratio_f32
#if KLF_NEG_LOG_F32
#define NEG_LOG neg_log_f32 /* (no division: simd.h) */
#else
#define NEG_LOG(x) log_ratio_f32(BCAST(1), (x))
#endif
#define LOG_HI log_hi_f32
#define LOG log_f32
#define EXP exp_f32
#define EXP_PLAIN_MIN (-86.5f)
#define PRM(name) (prm->name##_f32)
#define SUB_SCALE 0x1p24f
#define SUB_LOG 16.635532333438686f /* 24 ln 2 */
/* acc[2s], acc[2s + 1] += the two halves of sub-vector s, widened */
#define ADD(acc, s, v) widen_add((acc) + 2 * (s), (v))
/* acc[2s], acc[2s + 1] = the two halves of sub-vector s, widened */
#define WIDEN(acc, s, v) widen_to((acc) + 2 * (s), (v))
#if KLF_X86 && KLF_VBYTES == 64
#define UMAX_OP(a, b) ((vui)_mm512_max_epu32((__m512i)(a), (__m512i)(b)))
#define UGE_MASK(a, b) _mm512_cmpge_epu32_mask((__m512i)(a), (__m512i)(b))
#elif KLF_X86 && KLF_VBYTES == 32
#define UMAX_OP(a, b) ((vui)_mm256_max_epu32((__m256i)(a), (__m256i)(b)))
#endif
#endif

#if KLF_ELEMENT_BITS == 16
#define S uint16_t
#define LOADV(v, src) (*(v) = load_half(src))
#undef LOAD_PART
#define LOAD_PART load_part_half
#define TO_T(x) klf_half_to_float(x)
#else
#define S T
#define LOADV(v, src) memcpy((v), (src), sizeof(V))
#define TO_T(x) (x)
#endif

#define LANES ((int)(sizeof(V) / sizeof(T)))     /* per native vector */
/* the initializer of the M whose lane l holds l */
#if KLF_VBYTES * 8 / (KLF_ELEMENT_BITS == 64 ? 64 : 32) == 16
#define IOTA 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#elif KLF_VBYTES * 8 / (KLF_ELEMENT_BITS == 64 ? 64 : 32) == 8
#define IOTA 0, 1, 2, 3, 4, 5, 6, 7
#elif KLF_VBYTES * 8 / (KLF_ELEMENT_BITS == 64 ? 64 : 32) == 4
#define IOTA 0, 1, 2, 3
#else
#define IOTA 0, 1
#endif
#define BCAST(s) ((V){0} + (T)(s))
#define BITS(s) ((U){0} + (s))
/* Compares on bit patterns where the CPU has 64-bit integer compares
 * (non-negative floats order like their bits); SSE2 has none: float
 * compares there (-0.0 passes as 0). */
#if KLF_VBYTES > 16 || !KLF_X86
#define POSITIVE(v) ((M)(v) > (M){0})
/* in [0, 2 * smallest normal): log_ratio or the halving in js is not exact */
#define TINY(v) ((M)(v) < (M)BITS(TWO_MIN_BITS))
#define TINY_POS(v) ((M)(((U)(v) - BITS(1)) < BITS(TWO_MIN_BITS - 1)))
/* outside [+0, HUGE): negative (and -0.0), NaN, inf, >= 2^1022 (2^126) */
#define OUT_OF_RANGE(v) ((M)((U)(v) >= BITS(HUGE_BITS)))
#else
#define POSITIVE(v) ((M)((v) > BCAST(0)))
#define TINY(v) ((M)((v) < BCAST(2 * TMIN)))
#define TINY_POS(v) (POSITIVE(v) & TINY(v))
#define OUT_OF_RANGE(v) (~(M)(((v) >= BCAST(0)) & ((v) < BCAST(HUGE_VALUE))))
#endif

/* One instruction-set level: every kernel, for float64 and float32, and the
 * level's table. Included by levels/<name>.c, which defines KLF_LEVEL (the
 * level's name) and which setup.py compiles with the level's flags
 * (e.g. -march=x86-64-v3): the vector width and every instruction follow
 * from them. */
#ifndef KLFAST_LEVEL_H
#define KLFAST_LEVEL_H

#include "klfast.h"
#include "simd.h"
#include "widen.h"

#define KLF_STR_(x) #x
#define KLF_STR(x) KLF_STR_(x)

#define KLF_ELEMENT_BITS 64
#include "element.h"
#include "tails.h"
#include "../measures/kl.h"
#include "../measures/jeffreys.h"
#include "../measures/entropy.h"
#include "../measures/cross_entropy.h"
#include "../measures/jensen_shannon.h"
#include "divergence_rows.h"
#include "lanes_rows.h"
#include "logits_kl_rows.h"
#include "logits_lanes.h"
#include "loss_rows.h"
#include "vector_math.h"
#undef KLF_ELEMENT_BITS

#define KLF_ELEMENT_BITS 32
#include "element.h"
#include "tails.h"
#include "../measures/kl.h"
#include "../measures/jeffreys.h"
#include "../measures/entropy.h"
#include "../measures/cross_entropy.h"
#include "../measures/jensen_shannon.h"
#include "divergence_rows.h"
#include "lanes_rows.h"
#include "logits_kl_rows.h"
#include "logits_lanes.h"
#include "loss_rows.h"
#include "vector_math.h"
#undef KLF_ELEMENT_BITS

/* float16 storage, float32 arithmetic: the divergence rows, and KL of logits */
#define KLF_ELEMENT_BITS 16
#include "element.h"
#include "tails.h"
#include "../measures/kl.h"
#include "../measures/jeffreys.h"
#include "../measures/entropy.h"
#include "../measures/cross_entropy.h"
#include "../measures/jensen_shannon.h"
#include "divergence_rows.h"
#include "logits_kl_rows.h"
#undef KLF_ELEMENT_BITS

/* each measure's function of a kind ("", strips_, lanes_, block_) for a
 * dtype (f64_, ...), in the order of the codes */
#define KLF_LEVEL_FN(m, code, kind_dtype) KLF_CAT(KLF_CAT(klfast_##m##_, kind_dtype), KLF_LEVEL),
#define KLF_LEVEL_ROWS(dtype) {KLFAST_EACH_MEASURE(KLF_LEVEL_FN, dtype##_)}
#define KLF_LEVEL_STRIPS(dtype) {KLFAST_EACH_MEASURE(KLF_LEVEL_FN, strips_##dtype##_)}
#define KLF_LEVEL_LANES(dtype) {KLFAST_EACH_MEASURE(KLF_LEVEL_FN, lanes_##dtype##_)}
#define KLF_LEVEL_BLOCK(dtype) {KLFAST_EACH_MEASURE(KLF_LEVEL_FN, block_##dtype##_)}

const klfast_isa KLF_CAT(klfast_level_, KLF_LEVEL) = {
    KLF_STR(KLF_LEVEL),
    KLF_LEVEL_ROWS(f64),
    KLF_LEVEL_ROWS(f32),
    KLF_CAT(klfast_forms_f64_, KLF_LEVEL),
    KLF_CAT(klfast_forms_f32_, KLF_LEVEL),
    KLF_CAT(klfast_vector_math_f64_, KLF_LEVEL),
    KLF_CAT(klfast_vector_math_f32_, KLF_LEVEL),
    KLF_LEVEL_LANES(f64),
    KLF_LEVEL_LANES(f32),
    64, /* a strip of tiles (engine/lanes_rows.h) */
    64,
    KLF_CAT(klfast_widen16_, KLF_LEVEL),
    KLF_LEVEL_ROWS(f16),
    KLF_CAT(klfast_forms_f16_, KLF_LEVEL),
    KLF_LEVEL_STRIPS(f64),
    KLF_LEVEL_STRIPS(f32),
    (size_t)strips_scratch_f64 > (size_t)strips_scratch_f32 ? (size_t)strips_scratch_f64
                                                            : (size_t)strips_scratch_f32,
    KLF_LEVEL_BLOCK(f64),
    KLF_LEVEL_BLOCK(f32),
    KLF_CAT(klfast_logits_tiles_f64_, KLF_LEVEL),
    KLF_CAT(klfast_logits_tiles_f32_, KLF_LEVEL),
};

#endif

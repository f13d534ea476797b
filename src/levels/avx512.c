/* The AVX-512 level (x86-64-v4: AVX-512 F, BW, CD, DQ, VL, 512-bit vectors
 * preferred): setup.py compiles it with -march=x86-64-v4
 * -mprefer-vector-width=512; its table is used only when engine/dispatch.c
 * finds the CPU runs it. */
#define KLF_LEVEL avx512
#include "../engine/level.h"

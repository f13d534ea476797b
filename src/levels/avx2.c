/* The AVX2 level (x86-64-v3: AVX2, FMA, BMI1/2, F16C, MOVBE): setup.py
 * compiles it with -march=x86-64-v3; its table is used only when
 * engine/dispatch.c finds the CPU runs it. */
#define KLF_LEVEL avx2
#include "../engine/level.h"

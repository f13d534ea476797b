/* Build facts the kernels expose to klfast.show_config(), and an OpenMP shim
 * so the kernels compile (serially) where the compiler has no OpenMP. */
#ifndef KLFAST_CONFIG_H
#define KLFAST_CONFIG_H

#ifdef _OPENMP
#include <omp.h>
#define KLFAST_HAVE_OPENMP 1
static inline int klfast_omp_max_threads(void) { return omp_get_max_threads(); }
#else
#define KLFAST_HAVE_OPENMP 0
static inline int klfast_omp_max_threads(void) { return 1; }
#endif

/* the compiler: GCC and clang both define __VERSION__ */
#if defined(__clang__)
#define KLFAST_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define KLFAST_COMPILER "gcc " __VERSION__
#else
#define KLFAST_COMPILER "unknown"
#endif

#ifndef KLFAST_COMPILE_ARGS
#define KLFAST_COMPILE_ARGS "unknown"
#endif

/* Instruction sets the compiler was allowed to use for the whole module. */
#if defined(__AVX512F__)
#define KLFAST_BUILD_ISA "x86-64 AVX-512"
#elif defined(__AVX2__)
#define KLFAST_BUILD_ISA "x86-64 AVX2"
#elif defined(__SSE2__) && (defined(__x86_64__) || defined(_M_X64))
#define KLFAST_BUILD_ISA "x86-64 baseline (SSE2)"
#elif defined(__aarch64__)
#define KLFAST_BUILD_ISA "aarch64 (NEON)"
#else
#define KLFAST_BUILD_ISA "generic"
#endif

#endif

/* The benchmarks' read floor: the sum of a read of both inputs, vectorised
 * the way the kernels read rows (blocks of 64 bytes, 2 KB prefetch), so
 * that a kernel's time can be compared with the time just to read its
 * inputs. Compiled into klfast._diagnostics at the baseline level. */
#ifndef KLFAST_READ_FLOOR_H
#define KLFAST_READ_FLOOR_H

#include <stddef.h>

static double klfast_read_sum_f64(const double *p, const double *q, ptrdiff_t n) {
    double acc[8] = {0};
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __builtin_prefetch(p + j + 256);
        __builtin_prefetch(q + j + 256);
#pragma omp simd
        for (int l = 0; l < 8; l++) acc[l] += p[j + l] + q[j + l];
    }
    for (; j < n; j++) acc[0] += p[j] + q[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static double klfast_read_sum_f32(const float *p, const float *q, ptrdiff_t n) {
    float acc[16] = {0};
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __builtin_prefetch(p + j + 512);
        __builtin_prefetch(q + j + 512);
#pragma omp simd
        for (int l = 0; l < 16; l++) acc[l] += p[j + l] + q[j + l];
    }
    double s = 0.0;
    for (; j < n; j++) s += (double)p[j] + q[j];
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

#endif

/* A C-level check of every kernel of every level this build has, against
 * scalar references in double (the exact terms of src/engine/exact.h for the
 * divergences, a plain softmax for the losses). Built and run by
 * tests/test_c_kernels.py: as a shared object called on the installed
 * klfast._kernels (KLF_CHECK_INSTALLED), and as a program linked with the
 * levels compiled for aarch64 (NEON) by a cross compiler, run under
 * qemu-user. Prints one line per failure and exits 1 if any.
 *
 * Rows of every length from 1 to 140 (every tail of the 64- and 128-byte
 * blocks), default eps and eps = 0 (zeros inside logs: the rows the vector
 * code hands to the exact path must be flagged), normalize on and off.
 *
 * The lane loop (engine/lanes_rows.h) must give the row loop's bits: tiles
 * of rows and of columns, full and partial, against each row alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/exact.h"
#include "engine/klfast.h"

static int failures = 0;

static void fail(const char *what, const char *level, int dtype, int k, double got, double want) {
    if (failures++ < 40)
        printf("FAIL %s level=%s f%d k=%d: got %.17g want %.17g\n", what, level, dtype, k, got,
               want);
}

static double next_random(unsigned long long *state) { /* in (0, 1) */
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((*state >> 11) + 0.5) * 0x1p-53;
}

/* A probability row with some exact zeros (every 7th entry when zeros). */
static void make_row(double *x, int k, int zeros, unsigned long long *state) {
    double s = 0.0;
    for (int j = 0; j < k; j++) {
        x[j] = zeros && j % 7 == 3 && k > 1 ? 0.0 : next_random(state);
        s += x[j];
    }
    for (int j = 0; j < k; j++) x[j] /= s;
}

static double reference(int measure, const double *p, const double *q, int k, double eps) {
    double s = 0.0;
    for (int j = 0; j < k; j++) s += klf_exact_term(measure, p[j], q[j], eps, 1.0);
    return measure == KLFAST_JS && s < 0.0 ? 0.0 : s;
}

static int close_enough(double got, double want, double rel, double abs_tol) {
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

static void check_divergences(const klfast_isa *isa) {
    static const char *names[] = {"kl", "jeffreys", "entropy", "cross_entropy", "js"};
    unsigned long long state = 42;
    double p[160], q[160], sums[2];
    float pf[160], qf[160];
    for (int k = 1; k <= 140; k++)
        for (int zeros = 0; zeros <= 1; zeros++) {
            make_row(p, k, zeros, &state);
            make_row(q, k, 0, &state);
            for (int j = 0; j < k; j++) {
                pf[j] = (float)p[j];
                qf[j] = (float)q[j];
            }
            for (int m = 0; m < KLFAST_N_MEASURES; m++)
                for (int e = 0; e < 2; e++) {
                    double eps = e ? 0.0 : 1e-10, want, got;
                    const double *qq = m == KLFAST_ENTROPY ? p : q;
                    int special;
                    want = reference(m, p, qq, k, eps);
                    /* float64, as given */
                    got = isa->f64[m](p, m == KLFAST_ENTROPY ? p : q, k, eps, 0, &special, sums);
                    if (!special && !close_enough(got, want, 1e-13, 1e-15)) fail(names[m], isa->name, 64, k, got, want);
                    if (!special && !(fabs(sums[0] - 1.0) < 1e-12 && fabs(sums[1] - 1.0) < 1e-12))
                        fail("row sums", isa->name, 64, k, sums[0], 1.0);
                    /* eps = 0: jeffreys' term (0 - q) log(0 / q) needs a zero inside the
                     * log, which the vector log does not cover: the row must be flagged
                     * for the exact path (which gives +inf) */
                    if (e && zeros && k > 3 && m == KLFAST_JEFFREYS && !special)
                        fail("jeffreys row with a zero not flagged", isa->name, 64, k, got, want);
                    /* float64, normalized from 3 x the row */
                    double p3[160], q3[160];
                    for (int j = 0; j < k; j++) {
                        p3[j] = 3.0 * p[j];
                        q3[j] = 3.0 * qq[j];
                    }
                    got = isa->f64[m](p3, q3, k, eps, 1, &special, sums);
                    if (!special && !close_enough(got, want, 1e-12, 1e-15))
                        fail(names[m], isa->name, 64, k, got, want);
                    /* float32: against the reference on the float32 values */
                    double pd[160], qd[160];
                    for (int j = 0; j < k; j++) {
                        pd[j] = pf[j];
                        qd[j] = m == KLFAST_ENTROPY ? pf[j] : qf[j];
                    }
                    want = reference(m, pd, qd, k, (double)(float)eps);
                    got = isa->f32[m](pf, m == KLFAST_ENTROPY ? pf : qf, k, eps, 0, &special, sums);
                    if (!special && !close_enough(got, want, 2e-5, 2e-6))
                        fail(names[m], isa->name, 32, k, got, want);
                }
        }
}

/* KL (or cross-entropy) of softmax(z / T) against target probabilities t,
 * and its gradient scaled by grad_scale. */
static double loss_reference(int loss, const double *t, const double *z, double *g, int k,
                             double inv_t, double eps, double grad_scale) {
    double m = z[0], s = 0.0, total = 0.0, t_sum = 0.0;
    for (int j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
    for (int j = 0; j < k; j++) s += exp((z[j] - m) * inv_t);
    for (int j = 0; j < k; j++) {
        double lq = (z[j] - m) * inv_t - log(s);
        t_sum += t[j];
        if (t[j] > 0.0)
            total += loss == 0 ? t[j] * (log(t[j] > eps ? t[j] : eps) - lq) : -t[j] * lq;
    }
    for (int j = 0; j < k; j++)
        g[j] = (t_sum * exp((z[j] - m) * inv_t - log(s)) - t[j]) * grad_scale;
    return total;
}

static void check_losses(const klfast_isa *isa) {
    unsigned long long state = 7;
    double t[160], z[160], g[160], g_ref[160];
    float tf[160], zf[160], gf[160];
    for (int k = 1; k <= 140; k++)
        for (int loss = 0; loss < 2; loss++) {
            make_row(t, k, 1, &state);
            for (int j = 0; j < k; j++) {
                z[j] = 8.0 * next_random(&state) - 4.0;
                tf[j] = (float)t[j];
                zf[j] = (float)z[j];
            }
            double inv_t = 1.0 / 1.5, eps = 1e-8;
            float eps_f32 = (float)eps > eps ? nextafterf((float)eps, 0.0f) : (float)eps;
            /* the losses on the forms kernel: target probabilities, logits */
            klfast_forms_params prm = {
                loss == 0 ? KLFAST_KL : KLFAST_CROSS_ENTROPY, {KLFAST_PROBS, KLFAST_LOGITS},
                0, 1, INFINITY, {1.0, inv_t}, eps, log(eps), log1p(1e-3), inv_t,
                {1.0f, (float)inv_t}, eps_f32, (float)log(eps), (float)log1p(1e-3), (float)inv_t};
            int special;
            double want = loss_reference(loss, t, z, g_ref, k, inv_t, eps, inv_t);
            double got = isa->forms_f64(t, z, g, k, &prm, &special);
            if (!special) {
                if (!close_enough(got, want, 1e-12, 1e-14)) fail("loss", isa->name, 64, k, got, want);
                for (int j = 0; j < k; j++)
                    if (!close_enough(g[j], g_ref[j], 1e-12, 1e-14)) {
                        fail("loss gradient", isa->name, 64, k, g[j], g_ref[j]);
                        break;
                    }
            }
            double td[160], zd[160];
            for (int j = 0; j < k; j++) {
                td[j] = tf[j];
                zd[j] = zf[j];
            }
            want = loss_reference(loss, td, zd, g_ref, k, (double)(float)inv_t, (double)eps_f32,
                                  (double)(float)inv_t);
            got = isa->forms_f32(tf, zf, gf, k, &prm, &special);
            if (!special) {
                if (!close_enough(got, want, 1e-5, 1e-6)) fail("loss", isa->name, 32, k, got, want);
                for (int j = 0; j < k; j++)
                    if (!close_enough(gf[j], g_ref[j], 1e-5, 1e-6)) {
                        fail("loss gradient", isa->name, 32, k, gf[j], g_ref[j]);
                        break;
                    }
            }
        }
}

/* One tile of rows (C order) or columns: bit for bit the row functions'
 * values (times scale, NaN where the sums are off), the same rows flagged. */
static void check_lanes(const klfast_isa *isa) {
    enum { N = 80, K = 140 };
    unsigned long long state = 7;
    static double p[N * K], q[N * K], pc[N * K], qc[N * K], out[N * 2];
    static float pf[N * K], qf[N * K], pfc[N * K], qfc[N * K], outf[N * 2];
    for (int k = 1; k <= K; k += k < 70 ? 1 : 23)
        for (int m = 0; m < KLFAST_N_MEASURES; m++)
            for (int variant = 0; variant < 4; variant++) {
                int normalize = variant & 1, cols = variant >> 1;
                double eps = k % 3 ? 1e-12 : 0.0, tol = k % 5 ? 1e-3 : 1e300, scale = 1.25;
                for (int r = 0; r < N; r++) {
                    make_row(p + r * k, k, r % 2, &state);
                    make_row(q + r * k, k, 0, &state);
                }
                if (normalize)
                    for (int j = 0; j < N * k; j++) p[j] *= 3.0;
                for (int r = 0; r < N; r++)
                    for (int j = 0; j < k; j++) {
                        pf[r * k + j] = (float)p[r * k + j];
                        qf[r * k + j] = (float)q[r * k + j];
                        pc[j * N + r] = p[r * k + j];
                        qc[j * N + r] = q[r * k + j];
                        pfc[j * N + r] = pf[r * k + j];
                        qfc[j * N + r] = qf[r * k + j];
                    }
                for (int dt = 0; dt < 2; dt++) {
                    int width = dt ? isa->lanes_f32_width : isa->lanes_f64_width;
                    int n = width - (k % 2); /* a partial tile every other length */
                    int n_bad = 0, want_bad = 0;
                    uint64_t special;
                    ptrdiff_t ls = cols ? 1 : k, es = cols ? N : 1;
                    if (dt == 0)
                        special = isa->lanes_f64[m](cols ? pc : p, ls, es, cols ? qc : q, ls, es, n,
                                                    k, eps, normalize, tol, scale, out, 2, 0,
                                                    &n_bad);
                    else
                        special = isa->lanes_f32[m](cols ? pfc : pf, ls, es, cols ? qfc : qf, ls,
                                                    es, n, k, (float)eps, normalize, tol, scale,
                                                    outf, 2, 0, &n_bad);
                    for (int r = 0; r < n; r++) {
                        int sp;
                        double sums[2], v, want, got;
                        if (dt == 0)
                            v = isa->f64[m](p + r * k, q + r * k, k, eps, normalize, &sp, sums);
                        else
                            v = isa->f32[m](pf + r * k, qf + r * k, k, (float)eps, normalize, &sp,
                                            sums);
                        if (sp != (int)((special >> r) & 1)) {
                            fail("lanes: exact-path flag", isa->name, dt ? 32 : 64, k, sp, m);
                            continue;
                        }
                        if (sp) continue;
                        want = fabs(sums[0] - 1.0) <= tol && fabs(sums[1] - 1.0) <= tol ? v * scale
                                                                                       : NAN;
                        want_bad += want != want;
                        if (dt) want = (float)want;
                        got = dt ? outf[2 * r] : out[2 * r];
                        if (memcmp(&got, &want, sizeof got) && !(got != got && want != want))
                            fail("lanes: not the row loop's bits", isa->name, dt ? 32 : 64, k, got,
                                 want);
                    }
                    if (n_bad != want_bad)
                        fail("lanes: invalid rows counted", isa->name, dt ? 32 : 64, k, n_bad,
                             want_bad);
                }
            }
}

/* Every level of a dispatch table that this CPU runs. */
static int check_levels(const klfast_isa *const *levels, int n_levels, int (*has_level)(int)) {
    int ran = 0;
    for (int i = 0; i < n_levels; i++) {
        if (!has_level(i)) continue;
        check_divergences(levels[i]);
        check_losses(levels[i]);
        check_lanes(levels[i]);
        printf("level %s: checked\n", levels[i]->name);
        ran++;
    }
    printf("%d failures\n", failures);
    fflush(stdout);
    return failures || !ran;
}

#ifdef KLF_CHECK_INSTALLED
/* Built as a shared object and called through ctypes by a Python process
 * that imported klfast._kernels, with that module's dispatch table: the
 * kernels as installed, whatever compiled them. */
int klfast_check_installed(const klfast_isa *const *levels, int n_levels,
                           int (*has_level)(int)) {
    return check_levels(levels, n_levels, has_level);
}
#else
int main(void) { return check_levels(klfast_isa_levels, klfast_n_levels, klfast_cpu_has_level); }
#endif

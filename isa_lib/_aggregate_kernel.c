/* The minibatch aggregate posterior of beta-TCVAE (Eq. 3) on a CPU: one pass over all (row i, latent k,
 * posterior j) triples forward and one backward, each row's numbers kept in cache, its exponentials
 * computed once per pass. Built at first use by isa_lib/aggregate_posterior.py (aggregate="native").
 *
 * Layout: latent-major, float32, contiguous. z, mu, c2, h2, prec, shift2, r, gz, gmu, glv: (d, M);
 * lw2, wj, joint: (M, M), row i. Base 2: c2 = log2 of a posterior's normaliser, h2 = log2(e) / (2 var),
 * lw2 = log2 w_ij, shift2 = an upper bound on row i's terms in latent k.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "_exp2_poly.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* 2^x for x <= 0; below 2^-126 it returns 2^-126 (never a subnormal, which would take a slow path). */
static inline float exp2_poly(float x) {
    return exp2_poly_unclamped(x < -126.0f ? -126.0f : x);
}

/* Forward, row by row (rows shared out between threads):
 *   sums[k][i] = sum_j 2^(t2 + lw2_ij - shift2_ki), t2 = c2_kj - (z_ki - mu_kj)^2 h2_kj (a marginal, shifted);
 *   log_qz[i] = log sum_j w_ij q(z_i | x_j) (the joint, natural log) and pi[i][j] = w_ij q(z_i | x_j) / q(z_i),
 * the joint's softmax, which the backward pass needs; the row's joint log-densities never leave the cache. */
void aggregate_forward(int m, int d, const float *z, const float *mu, const float *c2, const float *h2,
                       const float *lw2, const float *shift2, float *log_qz, float *pi, float *sums, int threads) {
    const float ln2 = 0.69314718055994531f;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int i = 0; i < m; i++) {
        float *row = pi + (size_t)i * m;
        const float *lw = lw2 + (size_t)i * m;
        memcpy(row, lw, sizeof(float) * (size_t)m);
        for (int k = 0; k < d; k++) {
            const float zi = z[(size_t)k * m + i], sh = shift2[(size_t)k * m + i];
            const float *mk = mu + (size_t)k * m, *ck = c2 + (size_t)k * m, *hk = h2 + (size_t)k * m;
            float acc = 0.0f;
#pragma omp simd reduction(+:acc)
            for (int j = 0; j < m; j++) {
                float diff = zi - mk[j];
                float t2 = ck[j] - diff * diff * hk[j];
                row[j] += t2;
                acc += exp2_poly(t2 + lw[j] - sh);
            }
            sums[(size_t)k * m + i] = acc;
        }
        float top = row[0];
        for (int j = 1; j < m; j++) top = row[j] > top ? row[j] : top;
        float acc = 0.0f;
#pragma omp simd reduction(+:acc)
        for (int j = 0; j < m; j++) {
            row[j] = exp2_poly(row[j] - top);
            acc += row[j];
        }
        const float inv = 1.0f / acc;
        for (int j = 0; j < m; j++) row[j] *= inv;
        log_qz[i] = (top + log2f(acc)) * ln2;
    }
}

/* Backward: with pi_ijk = 2^(t2 + lw2_ij - shift2_ki) r_ki + pi_ij gj_i (dL / dlog N(z_ik; mu_jk, var_jk)),
 * gz[k][i] = -sum_j pi (z - mu) prec, gmu[k][j] = sum_i pi (z - mu) prec, glv[k][j] = sum_i pi ((z - mu)^2 prec - 1) / 2.
 * Each thread sums its rows' shares of gmu and glv privately; the shares are added in thread order.
 * Returns 0, or -1 (gradients not written) when the threads' scratch cannot be allocated. */
int aggregate_backward(int m, int d, const float *z, const float *mu, const float *c2, const float *h2,
                        const float *prec, const float *lw2, const float *shift2, const float *r, const float *pi,
                        const float *gj, float *gz, float *gmu, float *glv, int threads) {
    if (threads < 1) threads = 1;
    size_t n = (size_t)d * m;
    float *priv = (float *)calloc((size_t)threads * 2 * n, sizeof(float));
    if (!priv) return -1;
#pragma omp parallel num_threads(threads)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *pmu = priv + (size_t)t * 2 * n, *plv = pmu + n;
#pragma omp for schedule(static)
        for (int i = 0; i < m; i++) {
            const float *lw = lw2 + (size_t)i * m, *pr = pi + (size_t)i * m;
            const float gi = gj[i];
            for (int k = 0; k < d; k++) {
                const float zi = z[(size_t)k * m + i], sh = shift2[(size_t)k * m + i], rk = r[(size_t)k * m + i];
                const float *mk = mu + (size_t)k * m, *ck = c2 + (size_t)k * m, *hk = h2 + (size_t)k * m;
                const float *pk = prec + (size_t)k * m;
                float *gm = pmu + (size_t)k * m, *gl = plv + (size_t)k * m;
                float acc = 0.0f;
#pragma omp simd reduction(+:acc)
                for (int j = 0; j < m; j++) {
                    float diff = zi - mk[j];
                    float t2 = ck[j] - diff * diff * hk[j];
                    float w = exp2_poly(t2 + lw[j] - sh) * rk + pr[j] * gi;
                    float ws = w * diff * pk[j];
                    acc += ws;
                    gm[j] += ws;
                    gl[j] += 0.5f * (ws * diff - w);
                }
                gz[(size_t)k * m + i] = -acc;
            }
        }
    }
    memset(gmu, 0, sizeof(float) * n);
    memset(glv, 0, sizeof(float) * n);
    for (int t = 0; t < threads; t++) {
        const float *pmu = priv + (size_t)t * 2 * n, *plv = pmu + n;
        for (size_t q = 0; q < n; q++) {
            gmu[q] += pmu[q];
            glv[q] += plv[q];
        }
    }
    free(priv);
    return 0;
}

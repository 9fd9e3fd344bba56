/* The mixture sums of Chen et al.'s MIG estimator (Sec. 4) on a CPU: for every sample z_s of a latent group
 * (k latents), sum over all M posteriors of 2^max(c_m - sum_j ((z_js - mu_jm) a_jm)^2, floor), the shifted
 * log-density of the group in base 2 (isa_lib/metrics/_mixture.py forms c and a and takes the logarithm).
 * One fused pass: the log-density of a block of posteriors never leaves the registers, and the exponential is
 * the clamped degree-5 polynomial of _exp2_poly.h. Built at first use by isa_lib/native.py.
 *
 * Layout: float32, contiguous, latent-major: z (k, S); mu, a (k, M); c (M). Output: out (S), float64.
 * Each block of `block` posteriors is summed in float32 (every term is at most 1) and the blocks in float64.
 * Threads share out tiles of samples; a sample's sum does not depend on the thread count.
 */
#include <stdlib.h>
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
/* AVX-512: 16 floats a vector (gcc prefers 8 by default; 1.3-1.4x on this loop on the development CPU) */
#pragma GCC target("prefer-vector-width=512")
#endif
#include "_exp2_poly.h"

#define TILE 8      /* samples that visit one block of posteriors while it is in cache */

static inline float term(float zs, float m, float a, float c, float floor_) {
    float d = (zs - m) * a;
    float x = c - d * d;
    return exp2_poly5_unclamped(x < floor_ ? floor_ : x);
}

/* One latent (k = 1): four samples per pass over the block, so that each posterior's numbers are loaded once
 * for four terms; then the rest one at a time. */
static void sums_one(int s0, int s1, const float *z, const float *mb, const float *ab, const float *cb, int nb,
                     float floor_, double *tot) {
    int s = s0;
    for (; s + 4 <= s1; s += 4) {
        const float z0 = z[s], z1 = z[s + 1], z2 = z[s + 2], z3 = z[s + 3];
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma omp simd reduction(+:a0, a1, a2, a3)
        for (int m = 0; m < nb; m++) {
            a0 += term(z0, mb[m], ab[m], cb[m], floor_);
            a1 += term(z1, mb[m], ab[m], cb[m], floor_);
            a2 += term(z2, mb[m], ab[m], cb[m], floor_);
            a3 += term(z3, mb[m], ab[m], cb[m], floor_);
        }
        tot[s - s0] += (double)a0;
        tot[s + 1 - s0] += (double)a1;
        tot[s + 2 - s0] += (double)a2;
        tot[s + 3 - s0] += (double)a3;
    }
    for (; s < s1; s++) {
        const float zs = z[s];
        float acc = 0.0f;
#pragma omp simd reduction(+:acc)
        for (int m = 0; m < nb; m++) acc += term(zs, mb[m], ab[m], cb[m], floor_);
        tot[s - s0] += (double)acc;
    }
}

/* A group of k > 1 latents: the block's log-densities gathered in t, latent by latent, then exponentiated. */
static void sums_group(int s0, int s1, int s_n, int m_n, int k, const float *z, const float *mb, const float *ab,
                       const float *cb, int nb, float floor_, float *t, double *tot) {
    for (int s = s0; s < s1; s++) {
        for (int m = 0; m < nb; m++) t[m] = cb[m];
        for (int j = 0; j < k; j++) {
            const float zs = z[(size_t)j * s_n + s];
            const float *mj = mb + (size_t)j * m_n, *aj = ab + (size_t)j * m_n;
#pragma omp simd
            for (int m = 0; m < nb; m++) {
                float d = (zs - mj[m]) * aj[m];
                t[m] -= d * d;
            }
        }
        float acc = 0.0f;
#pragma omp simd reduction(+:acc)
        for (int m = 0; m < nb; m++) acc += exp2_poly5_unclamped(t[m] < floor_ ? floor_ : t[m]);
        tot[s - s0] += (double)acc;
    }
}

/* Returns 0, or -1 (nothing written) when the per-thread buffer for groups of several latents cannot be
 * allocated. */
int mixture_sums(int s_n, int m_n, int k, const float *z, const float *mu, const float *a, const float *c,
                 float floor_, int block, double *out, int threads) {
    if (threads < 1) threads = 1;
    if (block < 1) block = 1;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(|:failed)
    {
        float *t = k > 1 ? (float *)malloc(sizeof(float) * (size_t)block) : NULL;
        if (k > 1 && !t) failed = 1;
#pragma omp for schedule(static)
        for (int s0 = 0; s0 < s_n; s0 += TILE) {
            if (k > 1 && !t) continue;
            const int s1 = s0 + TILE < s_n ? s0 + TILE : s_n;
            double tot[TILE] = {0.0};
            for (int r0 = 0; r0 < m_n; r0 += block) {
                const int nb = r0 + block < m_n ? block : m_n - r0;
                if (k == 1)
                    sums_one(s0, s1, z, mu + r0, a + r0, c + r0, nb, floor_, tot);
                else
                    sums_group(s0, s1, s_n, m_n, k, z, mu + r0, a + r0, c + r0, nb, floor_, t, tot);
            }
            for (int s = s0; s < s1; s++) out[s] = tot[s - s0];
        }
        free(t);
    }
    return failed ? -1 : 0;
}

/* The kernel's exponential alone, for benchmarks/bench_mig_kernel.py: sum_i 2^max(x_i, floor) over a buffer,
 * blocks of `block` summed in float32 and the blocks in float64, as in mixture_sums. */
double exp2_sum(long n, const float *x, float floor_, int block, int threads) {
    if (threads < 1) threads = 1;
    if (block < 1) block = 1;
    double tot = 0.0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+:tot)
    for (long r0 = 0; r0 < n; r0 += block) {
        const long nb = r0 + block < n ? block : n - r0;
        float acc = 0.0f;
#pragma omp simd reduction(+:acc)
        for (long i = 0; i < nb; i++) acc += exp2_poly5_unclamped(x[r0 + i] < floor_ ? floor_ : x[r0 + i]);
        tot += (double)acc;
    }
    return tot;
}

/* A Chebyshev series sum_k c_k T_k(t_s) at many points by Clenshaw's recurrence, 8 points at a time so that
 * the compiler keeps them in one vector register (isa_lib/metrics/_chebyshev.py: the interpolated log q of a
 * latent whose posteriors are wide compared with its samples' range). */
void chebyshev_series(long s_n, const double *t, int n_terms, const double *c, double *out) {
    for (long s0 = 0; s0 < s_n; s0 += 8) {
        const int m = s_n - s0 < 8 ? (int)(s_n - s0) : 8;
        double tt[8] = {0}, b1[8] = {0}, b2[8] = {0};
        for (int i = 0; i < m; i++) tt[i] = 2.0 * t[s0 + i];
        for (int k = n_terms - 1; k >= 1; k--) {
            const double ck = c[k];
#pragma omp simd
            for (int i = 0; i < 8; i++) {
                const double b = tt[i] * b1[i] - b2[i] + ck;
                b2[i] = b1[i];
                b1[i] = b;
            }
        }
        for (int i = 0; i < m; i++) out[s0 + i] = 0.5 * tt[i] * b1[i] - b2[i] + c[0];
    }
}

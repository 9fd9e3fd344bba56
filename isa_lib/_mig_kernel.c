/* The mixture sums of Chen et al.'s MIG estimator (Sec. 4) on a CPU: for every sample z_s of a latent group
 * (k latents), sum over all M posteriors of 2^max(c_m - sum_j ((z_js - mu_jm) a_jm)^2, floor), the shifted
 * log-density of the group in base 2 (isa_lib/metrics/_mixture.py forms c and a and takes the logarithm).
 * One fused pass: the log-density of a block of posteriors never leaves the registers, and the exponential is
 * the clamped degree-5 polynomial of _exp2_poly.h. Built at first use by isa_lib/native.py.
 *
 * Layout: contiguous, latent-major: z (k, S); mu, a (k, M); c (M); a and c float32, z and mu float32
 * (mixture_sums) or float64 (mixture_sums_f64; the sums themselves are in _mig_sums.h, once per type).
 * Output: out (S), float64.
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

#define ZT float
#define SUF f32
#include "_mig_sums.h"
#undef ZT
#undef SUF
#define ZT double
#define SUF f64
#include "_mig_sums.h"

/* float32 samples and means (the float32 MIG). Returns 0, or -1 (nothing written) when the per-thread buffer
 * for groups of several latents cannot be allocated. */
int mixture_sums(int s_n, int m_n, int k, const float *z, const float *mu, const float *a, const float *c,
                 float floor_, int block, double *out, int threads) {
    return sums_f32(s_n, m_n, k, z, mu, a, c, floor_, block, out, threads);
}

/* float64 samples and means, float32 scales and offsets (the float64 MIG of posteriors narrower than float32
 * resolves at their means): the differences in float64, the rest as in mixture_sums. */
int mixture_sums_f64(int s_n, int m_n, int k, const double *z, const double *mu, const float *a, const float *c,
                     float floor_, int block, double *out, int threads) {
    return sums_f64(s_n, m_n, k, z, mu, a, c, floor_, block, out, threads);
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

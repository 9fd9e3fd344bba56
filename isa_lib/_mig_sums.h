/* The sums of _mig_kernel.c for one type of the samples and posterior means, ZT (float or double), with names
 * ending in SUF: included once per type. The differences z - mu are formed in ZT and rounded to float, where
 * the rest of the term is computed: with double, a posterior far narrower than float32 resolves at its mean
 * (sigma < sqrt(eps) |mu|) keeps its accuracy, since only the small difference is rounded. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

static inline float CAT(term_, SUF)(ZT zs, ZT m, float a, float c, float floor_) {
    float d = (float)(zs - m) * a;
    float x = c - d * d;
    return exp2_poly5_unclamped(x < floor_ ? floor_ : x);
}

/* One latent (k = 1): four samples per pass over the block, so that each posterior's numbers are loaded once
 * for four terms; then the rest one at a time. */
static void CAT(sums_one_, SUF)(int s0, int s1, const ZT *z, const ZT *mb, const float *ab, const float *cb,
                                int nb, float floor_, double *tot) {
    int s = s0;
    for (; s + 4 <= s1; s += 4) {
        const ZT z0 = z[s], z1 = z[s + 1], z2 = z[s + 2], z3 = z[s + 3];
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma omp simd reduction(+:a0, a1, a2, a3)
        for (int m = 0; m < nb; m++) {
            a0 += CAT(term_, SUF)(z0, mb[m], ab[m], cb[m], floor_);
            a1 += CAT(term_, SUF)(z1, mb[m], ab[m], cb[m], floor_);
            a2 += CAT(term_, SUF)(z2, mb[m], ab[m], cb[m], floor_);
            a3 += CAT(term_, SUF)(z3, mb[m], ab[m], cb[m], floor_);
        }
        tot[s - s0] += (double)a0;
        tot[s + 1 - s0] += (double)a1;
        tot[s + 2 - s0] += (double)a2;
        tot[s + 3 - s0] += (double)a3;
    }
    for (; s < s1; s++) {
        const ZT zs = z[s];
        float acc = 0.0f;
#pragma omp simd reduction(+:acc)
        for (int m = 0; m < nb; m++) acc += CAT(term_, SUF)(zs, mb[m], ab[m], cb[m], floor_);
        tot[s - s0] += (double)acc;
    }
}

/* A group of k > 1 latents: the block's log-densities gathered in t, latent by latent, then exponentiated. */
static void CAT(sums_group_, SUF)(int s0, int s1, int s_n, int m_n, int k, const ZT *z, const ZT *mb,
                                  const float *ab, const float *cb, int nb, float floor_, float *t, double *tot) {
    for (int s = s0; s < s1; s++) {
        for (int m = 0; m < nb; m++) t[m] = cb[m];
        for (int j = 0; j < k; j++) {
            const ZT zs = z[(size_t)j * s_n + s];
            const ZT *mj = mb + (size_t)j * m_n;
            const float *aj = ab + (size_t)j * m_n;
#pragma omp simd
            for (int m = 0; m < nb; m++) {
                float d = (float)(zs - mj[m]) * aj[m];
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
static int CAT(sums_, SUF)(int s_n, int m_n, int k, const ZT *z, const ZT *mu, const float *a, const float *c,
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
                    CAT(sums_one_, SUF)(s0, s1, z, mu + r0, a + r0, c + r0, nb, floor_, tot);
                else
                    CAT(sums_group_, SUF)(s0, s1, s_n, m_n, k, z, mu + r0, a + r0, c + r0, nb, floor_, t, tot);
            }
            for (int s = s0; s < s1; s++) out[s] = tot[s - s0];
        }
        free(t);
    }
    return failed ? -1 : 0;
}

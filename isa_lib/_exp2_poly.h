/* 2^x in float32 for -126 <= x <= 0 (callers clamp): x = n + f, |f| <= 1/2, 2^f by a polynomial, 2^n
 * written into the exponent bits. Branch-free, so that the compiler vectorises the loops that call it.
 * Shared by the native kernels (isa_lib/native.py). */
#ifndef ISA_EXP2_POLY_H
#define ISA_EXP2_POLY_H
#include <math.h>
#include <stdint.h>

/* 2^n for an integral n in [-126, 127], built in the exponent bits. */
static inline float pow2_int(float n) {
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return scale.f;
}

/* Degree-7 Taylor polynomial: relative error 5e-9 in exact arithmetic, below float32's rounding. */
static inline float exp2_poly_unclamped(float x) {
    float n = floorf(x + 0.5f), f = x - n;
    float p = 1.5252733804059838e-05f;
    p = p * f + 1.5403530393381606e-04f;
    p = p * f + 1.3333558146428441e-03f;
    p = p * f + 9.6181291076284772e-03f;
    p = p * f + 5.5504108664821576e-02f;
    p = p * f + 2.4022650695910071e-01f;
    p = p * f + 6.9314718055994531e-01f;
    p = p * f + 1.0f;
    return p * pow2_int(n);
}

/* Degree 5, coefficients fitted for relative error on [-1/2, 1/2] (least squares at 2,000 Chebyshev nodes):
 * relative error 7.7e-8 in exact arithmetic, 2.2e-7 evaluated in float32 (a few units in the last place), two
 * multiply-adds fewer than the degree-7 one (about 13 % faster in the MIG kernel's loop). */
static inline float exp2_poly5_unclamped(float x) {
    float n = floorf(x + 0.5f), f = x - n;
    float p = 1.3266970386325856e-03f;
    p = p * f + 9.6754597455176700e-03f;
    p = p * f + 5.5507426160025500e-02f;
    p = p * f + 2.4022121753561645e-01f;
    p = p * f + 6.9314694916106310e-01f;
    p = p * f + 1.0000000710296983f;
    return p * pow2_int(n);
}
#endif

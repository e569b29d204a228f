/* tinyqt: run-time choice of the x86-64 AVX2 paths of the host build
 * (tq_x86.h). On every other target the switch exists and does nothing. */
#include "tinyqt/kernels.h"
#include "tq_x86.h"

static int tq_host_simd_on = 1;

int tq_host_simd_enable(int on)
{
    tq_host_simd_on = on != 0;
#if TQ_USE_X86
    return tq_x86_avx2();
#else
    return 0;
#endif
}

#if TQ_USE_X86
int tq_x86_avx2(void)
{
    return tq_host_simd_on && __builtin_cpu_supports("avx2");
}
#endif

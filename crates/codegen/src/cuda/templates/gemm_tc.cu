// C[M, N] = A[M, K] · B[K, N] for each z = blockIdx.z on the tensor cores (mma.sync),
// float32 accumulation, then the epilogue. 64×64 tiles of 256 threads: 8 warps as 4 (rows) × 2
// (columns), each warp a 16×32 tile of four m16n8 accumulators; operands staged in shared
// memory 16 deep as float32 and converted to the precision when the fragments are packed.
#ifndef KC_EMULATOR
KC_DEV unsigned kc_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
KC_DEV unsigned kc_pack_f16(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
KC_DEV unsigned kc_pack_bf16(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
KC_DEV void kc_mma_tf32(float* d, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
KC_DEV void kc_mma_f16(float* d, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
KC_DEV void kc_mma_bf16(float* d, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
extern "C" __global__ void __launch_bounds__(256) KC_NAME(KC_PARAMS) {
  __shared__ float As[16][64 + 4];
  __shared__ float Bs[16][64 + 4];
  const int t = threadIdx.x;
  const int lane = t % 32, warp = t / 32;
  const int g = lane >> 2, tq = lane & 3;
  const int wm = (warp % 4) * 16, wn = (warp / 4) * 32;
  const long long m0 = (long long)blockIdx.y * 64, n0 = (long long)blockIdx.x * 64;
  const long long z = blockIdx.z;
  KC_OFFSETS
  float acc[4][4];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[j][i] = 0.f;
  for (long long k0 = 0; k0 < KC_K; k0 += 16) {
    for (int l = t; l < 64 * 16; l += 256) {
      const int mm = l / 16, kk = l % 16;
      const long long m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < KC_M && k < KC_K) ? kc_load_a(m, k, z KC_ARGS_A) : 0.f;
    }
    for (int l = t; l < 16 * 64; l += 256) {
      const int kk = l / 64, nn = l % 64;
      const long long k = k0 + kk, n = n0 + nn;
      Bs[kk][nn] = (k < KC_K && n < KC_N) ? kc_load_b(k, n, z KC_ARGS_B) : 0.f;
    }
    __syncthreads();
    KC_MMA
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const long long m = m0 + wm + g + (i >= 2 ? 8 : 0), n = n0 + wn + j * 8 + 2 * tq + (i & 1);
      if (m < KC_M && n < KC_N) {
        float v = acc[j][i];
        KC_STORE
      }
    }
  }
}

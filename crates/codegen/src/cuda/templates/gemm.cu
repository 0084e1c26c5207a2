// C[M, N] = A[M, K] · B[K, N] for each z = blockIdx.z, then the epilogue, in 64×64 tiles of
// 256 threads with a 4×4 register tile each; operands go through shared memory 16 deep.
extern "C" __global__ void __launch_bounds__(256) KC_NAME(KC_PARAMS) {
  __shared__ float As[16][64 + 4];
  __shared__ float Bs[16][64 + 4];
  const int t = threadIdx.x;
  const int tx = t % 16, ty = t / 16;
  const long long m0 = (long long)blockIdx.y * 64, n0 = (long long)blockIdx.x * 64;
  const long long z = blockIdx.z;
  KC_OFFSETS
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
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
    for (int kk = 0; kk < 16; ++kk) {
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      const long long m = m0 + ty * 4 + i, n = n0 + tx * 4 + j;
      if (m < KC_M && n < KC_N) {
        float v = acc[i][j];
        KC_STORE
      }
    }
  }
}

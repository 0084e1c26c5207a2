// kc0_softmax grid [1, 1, 1] block [256, 1, 1] args [(0, false), (1, true)]
// kerasc CUDA prelude: scalar helpers with Keras's formulas (self-contained, no headers).
#define KC_DEV __device__ __forceinline__
KC_DEV float kc_sigmoid(float x) { return x >= 0.f ? 1.f / (1.f + expf(-x)) : expf(x) / (1.f + expf(x)); }
KC_DEV float kc_softplus(float x) { return log1pf(expf(-fabsf(x))) + fmaxf(x, 0.f); }
KC_DEV float kc_sign(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); }
KC_DEV float kc_hard_sigmoid(float x) { return fminf(fmaxf(x + 3.f, 0.f), 6.f) / 6.f; }
KC_DEV float kc_relu_clip(float x, float max_value, int has_max, float slope, float threshold) {
  float y = threshold != 0.f ? (x > threshold ? x : 0.f) : fmaxf(x, 0.f);
  if (has_max) y = fminf(fmaxf(y, 0.f), max_value);
  if (slope != 0.f) y -= slope * fmaxf(threshold - x, 0.f);
  return y;
}
extern "C" __global__ void kc0_softmax(const float* __restrict__ in0, float* __restrict__ out0) {
  typedef unsigned int kc_idx;
  for (kc_idx i = blockIdx.x * (kc_idx)blockDim.x + threadIdx.x; i < (kc_idx)8ULL; i += (kc_idx)gridDim.x * blockDim.x) {
    kc_idx rr = i; long long base = 0;
    base += (long long)(rr % 4) * 10; rr /= 4;
    base += (long long)(rr % 2) * 40; rr /= 2;
    float mx = -__int_as_float(0x7f800000);
    for (long long j = 0; j < 10; ++j) { long long rj = j, o = 0; o += (rj % 10) * 1; rj /= 10; mx = fmaxf(mx, in0[base + o]); }
    float s = 0.f;
    for (long long j = 0; j < 10; ++j) { long long rj = j, o = 0; o += (rj % 10) * 1; rj /= 10; s += expf(in0[base + o] - mx); }
    const float inv = 1.f / s; (void)inv;
    for (long long j = 0; j < 10; ++j) { long long rj = j, o = 0; o += (rj % 10) * 1; rj /= 10; out0[base + o] = expf(in0[base + o] - mx) * inv; }
  }
}

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

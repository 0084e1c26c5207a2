//! The instruction set the CPU kernels run with, chosen once at start-up.
//!
//! The binary stays portable (no `target-cpu=native`): each micro-kernel is written once as an
//! `#[inline(always)]` body over fixed-size lanes (`[f32; L]`) and compiled three times, inside
//! wrappers with `#[target_feature(enable = ...)]` for AVX-512 (L = 16), AVX2 + FMA (L = 8) and
//! the baseline (L = 8, no FMA), so that LLVM emits the vector instructions of each; [`isa`]
//! picks the wrapper from what the CPU reports (`is_x86_feature_detected!`). Other
//! architectures take the portable body (NEON is aarch64's baseline, so it vectorizes there).
//!
//! `KERASC_ISA=portable|avx2|avx512` lowers the choice (to compare paths, or to rule one out);
//! asking for more than the CPU has keeps the best it has and says so once on stderr.

use std::sync::OnceLock;

/// An instruction set a micro-kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Whatever the target's baseline is (SSE2 on x86-64, NEON on aarch64), no FMA.
    Portable,
    /// AVX2 with FMA (Haswell and later, Zen).
    Avx2,
    /// AVX-512 F (Skylake-X and later, Zen 4).
    Avx512,
}

impl Isa {
    /// Its name, as `KERASC_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Every instruction set this CPU can run, lowest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().filter(|&i| i <= best()).collect()
    }
}

/// The instruction set for a kernel whose vectors run along `n` channels: AVX-512 gives way to
/// AVX2 when the channels would leave half of a 16-lane vector or more empty (8 channels, or
/// a few more than a multiple of 16 below 64), where 8 lanes waste less.
pub(crate) fn isa_for_width(isa: Isa, n: usize) -> Isa {
    if isa == Isa::Avx512 && n < 64 && (!n.is_multiple_of(16) && n % 16 <= 8) {
        Isa::Avx2
    } else {
        isa
    }
}

/// The best instruction set of this CPU.
fn best() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The instruction set the kernels use: the CPU's best, or lower as `KERASC_ISA` asks.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = best();
        let asked = match std::env::var("KERASC_ISA").ok().as_deref() {
            None | Some("") => return best,
            Some("portable") => Isa::Portable,
            Some("avx2") => Isa::Avx2,
            Some("avx512") => Isa::Avx512,
            Some(other) => {
                eprintln!("kerasc: KERASC_ISA={other} is not one of portable, avx2, avx512; using {}", best.name());
                return best;
            }
        };
        if asked > best {
            eprintln!("kerasc: KERASC_ISA={} is more than this CPU has; using {}", asked.name(), best.name());
            return best;
        }
        asked
    })
}

/// The vector operations a micro-kernel is written with, one implementation per instruction set:
/// [`Avx512`] (`__m512`, 16 lanes), [`Avx2`] (`__m256` with FMA, 8 lanes) and [`Portable`]
/// (`[f32; 8]`, left to LLVM's vectorizer for the target's baseline, no FMA).
pub(crate) trait Simd {
    /// Lanes per vector.
    const L: usize;
    type V: Copy;
    fn zero() -> Self::V;
    fn splat(v: f32) -> Self::V;
    /// The first `L` values of `s` (which has at least `L`).
    fn load(s: &[f32]) -> Self::V;
    /// Stores into the first `L` values of `d` (which has at least `L`).
    fn store(v: Self::V, d: &mut [f32]);
    /// `a · b + c`.
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `acc + splat(*x) · w`: one input value broadcast against a vector of weights, the
    /// inner step of the convolution micro-kernels. Left to itself, LLVM may load the
    /// broadcasts of a whole register block ahead of their multiply-adds, which spills the
    /// accumulators (2x slower on a 12x2 block), so AVX-512 folds the broadcast into the
    /// multiply-add (an embedded broadcast from memory, no register for it).
    #[inline(always)]
    fn fma_bcast(x: &f32, w: Self::V, acc: Self::V) -> Self::V {
        Self::fma(Self::splat(*x), w, acc)
    }
    fn add(a: Self::V, b: Self::V) -> Self::V;
    fn mul(a: Self::V, b: Self::V) -> Self::V;
    fn sub(a: Self::V, b: Self::V) -> Self::V;
    fn div(a: Self::V, b: Self::V) -> Self::V;
    /// Each lane rounded to the nearest integer (ties to even).
    fn round(v: Self::V) -> Self::V;
    /// `y · 2^n` per lane, for integral `n` in [−150, 150] (over- and underflowing as a product).
    fn scale2(y: Self::V, n: Self::V) -> Self::V;

    /// `x` where `a < b`, else `y`, per lane (false where either is NaN).
    fn select_lt(a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V;

    /// `tanh(x)` per lane, within a few ulp of `f32::tanh` (Cephes' `tanhf`: an odd
    /// polynomial below |x| = 0.625, `1 − 2/(e^2|x| + 1)` above, the sign put back).
    #[inline(always)]
    #[allow(clippy::excessive_precision)] // Cephes' coefficients as published
    fn tanh(x: Self::V) -> Self::V {
        let ax = Self::max(Self::sub(Self::zero(), x), x);
        let z = Self::mul(x, x);
        let mut p = Self::splat(-5.704_988_7e-3);
        for c in [2.063_908_9e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328_2e-1] {
            p = Self::fma(p, z, Self::splat(c));
        }
        let small = Self::fma(Self::mul(p, z), x, x);
        let one = Self::splat(1.0);
        let e = Self::exp(Self::add(ax, ax));
        let big = Self::sub(one, Self::div(Self::splat(2.0), Self::add(e, one)));
        let big = Self::select_lt(x, Self::zero(), Self::sub(Self::zero(), big), big);
        Self::select_lt(ax, Self::splat(0.625), small, big)
    }

    /// `e^x` per lane, within 2 ulp of `f32::exp` over its whole range (Cephes' `expf`
    /// reduction and polynomial; NaN stays NaN, overflow gives +∞, underflow 0).
    #[inline(always)]
    fn exp(x: Self::V) -> Self::V {
        // Clamped so that n stays where `scale2` is exact; beyond, the product over- or
        // underflows as e^x does.
        let xc = Self::clamp(x, -104.0, 89.0);
        let n = Self::round(Self::mul(xc, Self::splat(std::f32::consts::LOG2_E)));
        let r = Self::fma(n, Self::splat(-0.693_359_4), xc);
        let r = Self::fma(n, Self::splat(2.121_944_4e-4), r);
        let mut p = Self::splat(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = Self::fma(p, r, Self::splat(c));
        }
        let y = Self::fma(p, Self::mul(r, r), Self::add(r, Self::splat(1.0)));
        Self::scale2(y, n)
    }

    /// `1 / (1 + e^−x)` per lane.
    #[inline(always)]
    fn sigmoid(x: Self::V) -> Self::V {
        let one = Self::splat(1.0);
        Self::div(one, Self::add(one, Self::exp(Self::sub(Self::zero(), x))))
    }

    /// `max(v, 0)` per lane, 0 for NaN (as `f32::max`).
    fn relu(v: Self::V) -> Self::V;
    /// `v` clamped to `[lo, hi]` per lane, NaN kept (as `f32::clamp`).
    fn clamp(v: Self::V, lo: f32, hi: f32) -> Self::V;
    /// The larger of each lane, `a` where `b` is NaN (as `f32::max` ignores a NaN; `a` is the
    /// running maximum, which starts from −∞).
    fn max(a: Self::V, b: Self::V) -> Self::V;

    /// The first `n ≤ L` values of `s`, zeros after.
    #[inline(always)]
    fn load_part(s: &[f32], n: usize) -> Self::V {
        if n >= Self::L {
            Self::load(s)
        } else {
            let mut b = [0f32; 16];
            b[..n].copy_from_slice(&s[..n]);
            Self::load(&b)
        }
    }

    /// Stores 8 vectors of pixels, vector `f` holding filter `f` of `L` consecutive pixels, as
    /// the first `n ≤ L` of those pixels channels-last (8 values each) at the start of `d`, by
    /// permutations in registers. False where this instruction set has no such transposition
    /// (the caller then goes through memory).
    #[inline(always)]
    fn store_transposed8(_v: &[Self::V; 8], _d: &mut [f32], _n: usize) -> bool {
        false
    }

    /// Lanes `s[i · stride]` for `i < L` (a gather; `s` holds them all).
    #[inline(always)]
    fn load_strided(s: &[f32], stride: usize) -> Self::V {
        strided_by_lane::<Self>(s, stride)
    }

    /// Lanes `s[idx[i]]` for `i < L` (a gather).
    ///
    /// # Safety
    /// Every `idx[i]` for `i < L` is below `s.len()`.
    #[inline(always)]
    unsafe fn gather(s: &[f32], idx: &[i32; 16]) -> Self::V {
        let mut b = [0f32; 16];
        for (v, &i) in b[..Self::L].iter_mut().zip(idx) {
            // SAFETY: the caller's promise.
            *v = unsafe { *s.get_unchecked(i as usize) };
        }
        Self::load(&b)
    }

    /// Stores the first `n ≤ L` lanes into `d`.
    #[inline(always)]
    fn store_part(v: Self::V, d: &mut [f32], n: usize) {
        if n >= Self::L {
            Self::store(v, d)
        } else {
            let mut b = [0f32; 16];
            Self::store(v, &mut b);
            d[..n].copy_from_slice(&b[..n]);
        }
    }
}

/// [`Simd::load_strided`] one lane at a time (the portable form, and the gathers' fallback for
/// strides past their 32-bit offsets).
#[inline(always)]
fn strided_by_lane<S: Simd + ?Sized>(s: &[f32], stride: usize) -> S::V {
    let mut b = [0f32; 16];
    for (i, v) in b[..S::L].iter_mut().enumerate() {
        *v = s[i * stride];
    }
    S::load(&b)
}

/// 16 lanes of AVX-512 F.
pub(crate) struct Avx512;
/// 8 lanes of AVX2 with FMA.
pub(crate) struct Avx2;
/// 8 lanes of plain arrays.
pub(crate) struct Portable;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{strided_by_lane, Avx2, Avx512, Simd};
    use std::arch::x86_64::*;

    /// `acc + broadcast(*x) · w` as one instruction with an embedded broadcast.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn fma_bcast512(x: &f32, w: __m512, mut acc: __m512) -> __m512 {
        // SAFETY: reads the one f32 `x` refers to; touches no other memory, stack or flags.
        unsafe {
            std::arch::asm!(
                "vfmadd231ps {acc}, {w}, dword ptr [{x}]{{1to16}}",
                acc = inout(zmm_reg) acc,
                w = in(zmm_reg) w,
                x = in(reg) x,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        acc
    }

    // SAFETY (every block below): these bodies are only compiled into the `#[target_feature]`
    // wrappers of `dispatch`, which `isa()` selects only when the CPU has the features, and
    // every load and store is of `L` values from a slice checked to hold them.
    impl Simd for Avx512 {
        const L: usize = 16;
        type V = __m512;
        #[inline(always)]
        fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(v: f32) -> __m512 {
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        fn load(s: &[f32]) -> __m512 {
            let s = &s[..16];
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(v: __m512, d: &mut [f32]) {
            let d = &mut d[..16];
            unsafe { _mm512_storeu_ps(d.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn fma_bcast(x: &f32, w: __m512, acc: __m512) -> __m512 {
            unsafe { fma_bcast512(x, w, acc) }
        }
        #[inline(always)]
        fn load_part(s: &[f32], n: usize) -> __m512 {
            if n >= 16 {
                return Self::load(s);
            }
            let s = &s[..n];
            // A masked load reads only the first `n` lanes (the others are not touched).
            unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, s.as_ptr()) }
        }
        #[inline(always)]
        fn store_transposed8(v: &[__m512; 8], d: &mut [f32], n: usize) -> bool {
            // Element (f, p) starts in register f, lane p; it ends in register p / 2, lane
            // (p % 2)·8 + f. Three stages each exchange one bit of the register number with
            // one bit of the lane number (f2 with p3, f1 with p2, f0 with p1); the last also
            // moves p0 to the top lane bit.
            let d = &mut d[..n * 8];
            unsafe {
                let mut a = *v;
                for f in 0..4 {
                    let (x, y) = (a[f], a[f + 4]);
                    a[f] = _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y);
                    a[f + 4] = _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y);
                }
                let bx = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
                let by = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
                for r in [0, 1, 4, 5] {
                    let (x, y) = (a[r], a[r + 2]);
                    a[r] = _mm512_permutex2var_ps(x, bx, y);
                    a[r + 2] = _mm512_permutex2var_ps(x, by, y);
                }
                let cx = _mm512_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28, 1, 17, 5, 21, 9, 25, 13, 29);
                let cy = _mm512_setr_epi32(2, 18, 6, 22, 10, 26, 14, 30, 3, 19, 7, 23, 11, 27, 15, 31);
                for r in [0, 2, 4, 6] {
                    let (x, y) = (a[r], a[r + 1]);
                    a[r] = _mm512_permutex2var_ps(x, cx, y);
                    a[r + 1] = _mm512_permutex2var_ps(x, cy, y);
                }
                for (k, chunk) in d.chunks_mut(16).enumerate() {
                    Self::store_part(a[k], chunk, chunk.len());
                }
            }
            true
        }
        #[inline(always)]
        fn load_strided(s: &[f32], stride: usize) -> __m512 {
            let s = &s[..15 * stride + 1];
            let step = i32::try_from(stride).ok().filter(|&v| v <= i32::MAX / 16);
            match step {
                Some(step) => unsafe {
                    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                    let idx = _mm512_mullo_epi32(iota, _mm512_set1_epi32(step));
                    // Every offset is i·stride ≤ 15·stride < s.len() (the slice above).
                    _mm512_i32gather_ps::<4>(idx, s.as_ptr())
                },
                None => strided_by_lane::<Self>(s, stride),
            }
        }
        #[inline(always)]
        unsafe fn gather(s: &[f32], idx: &[i32; 16]) -> __m512 {
            // The caller promises every index is inside `s`.
            unsafe { _mm512_i32gather_ps::<4>(_mm512_loadu_si512(idx.as_ptr().cast()), s.as_ptr()) }
        }
        #[inline(always)]
        fn store_part(v: __m512, d: &mut [f32], n: usize) {
            if n >= 16 {
                return Self::store(v, d);
            }
            let d = &mut d[..n];
            unsafe { _mm512_mask_storeu_ps(d.as_mut_ptr(), ((1u32 << n) - 1) as u16, v) }
        }
        #[inline(always)]
        fn add(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn max(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_max_ps(b, a) }
        }
        #[inline(always)]
        fn sub(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn div(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        fn round(v: __m512) -> __m512 {
            unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
        }
        #[inline(always)]
        fn scale2(y: __m512, n: __m512) -> __m512 {
            unsafe { _mm512_scalef_ps(y, n) }
        }
        #[inline(always)]
        fn select_lt(a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), y, x) }
        }
        #[inline(always)]
        fn relu(v: __m512) -> __m512 {
            // `maxps` returns its second operand when either is NaN.
            unsafe { _mm512_max_ps(v, _mm512_setzero_ps()) }
        }
        #[inline(always)]
        fn clamp(v: __m512, lo: f32, hi: f32) -> __m512 {
            unsafe { _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v)) }
        }
    }

    /// The lane mask of the first `n < 4` lanes of 4.
    #[inline(always)]
    fn mask4(n: usize) -> __m128i {
        unsafe { _mm_cmpgt_epi32(_mm_set1_epi32(n as i32), _mm_setr_epi32(0, 1, 2, 3)) }
    }

    /// The lane mask of the first `n < 8` lanes.
    #[inline(always)]
    fn mask8(n: usize) -> __m256i {
        unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
    }

    impl Simd for Avx2 {
        const L: usize = 8;
        type V = __m256;
        #[inline(always)]
        fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        fn splat(v: f32) -> __m256 {
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        fn load(s: &[f32]) -> __m256 {
            let s = &s[..8];
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(v: __m256, d: &mut [f32]) {
            let d = &mut d[..8];
            unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn load_part(s: &[f32], n: usize) -> __m256 {
            if n >= 8 {
                return Self::load(s);
            }
            let s = &s[..n];
            // `maskload` reads only the lanes whose mask is set (no fault past them).
            unsafe { _mm256_maskload_ps(s.as_ptr(), mask8(n)) }
        }
        #[inline(always)]
        fn load_strided(s: &[f32], stride: usize) -> __m256 {
            let s = &s[..7 * stride + 1];
            let step = i32::try_from(stride).ok().filter(|&v| v <= i32::MAX / 8);
            match step {
                Some(step) => unsafe {
                    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                    let idx = _mm256_mullo_epi32(iota, _mm256_set1_epi32(step));
                    // Every offset is i·stride ≤ 7·stride < s.len() (the slice above).
                    _mm256_i32gather_ps::<4>(s.as_ptr(), idx)
                },
                None => strided_by_lane::<Self>(s, stride),
            }
        }
        #[inline(always)]
        unsafe fn gather(s: &[f32], idx: &[i32; 16]) -> __m256 {
            // The caller promises every index is inside `s`.
            unsafe { _mm256_i32gather_ps::<4>(s.as_ptr(), _mm256_loadu_si256(idx.as_ptr().cast())) }
        }
        #[inline(always)]
        fn store_part(v: __m256, d: &mut [f32], n: usize) {
            if n >= 8 {
                return Self::store(v, d);
            }
            let d = &mut d[..n];
            // The low half as one plain store where it is whole, masked stores of 4 lanes
            // for the rest (`vmaskmovps` is slow on some cores; less of it is better).
            unsafe {
                let lo = _mm256_castps256_ps128(v);
                if n >= 4 {
                    _mm_storeu_ps(d.as_mut_ptr(), lo);
                    if n > 4 {
                        _mm_maskstore_ps(d.as_mut_ptr().add(4), mask4(n - 4), _mm256_extractf128_ps::<1>(v));
                    }
                } else {
                    _mm_maskstore_ps(d.as_mut_ptr(), mask4(n), lo);
                }
            }
        }
        #[inline(always)]
        fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn max(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(b, a) }
        }
        #[inline(always)]
        fn sub(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn div(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        fn round(v: __m256) -> __m256 {
            unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
        }
        #[inline(always)]
        fn scale2(y: __m256, n: __m256) -> __m256 {
            // 2^n as two powers of two of half the exponent each, so that neither leaves the
            // normal range; the product then over- or underflows as it should.
            unsafe {
                let ni = _mm256_cvtps_epi32(n);
                let h = _mm256_srai_epi32::<1>(ni);
                let k = _mm256_sub_epi32(ni, h);
                let bias = _mm256_set1_epi32(127);
                let f1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(h, bias)));
                let f2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, bias)));
                _mm256_mul_ps(_mm256_mul_ps(y, f1), f2)
            }
        }
        #[inline(always)]
        fn select_lt(a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
            unsafe { _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
        }
        #[inline(always)]
        fn relu(v: __m256) -> __m256 {
            // `maxps` returns its second operand when either is NaN.
            unsafe { _mm256_max_ps(v, _mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn clamp(v: __m256, lo: f32, hi: f32) -> __m256 {
            unsafe { _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v)) }
        }
    }
}

impl Simd for Portable {
    const L: usize = 8;
    type V = [f32; 8];
    #[inline(always)]
    fn zero() -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    fn splat(v: f32) -> [f32; 8] {
        [v; 8]
    }
    #[inline(always)]
    fn load(s: &[f32]) -> [f32; 8] {
        let mut v = [0.0; 8];
        v.copy_from_slice(&s[..8]);
        v
    }
    #[inline(always)]
    fn store(v: [f32; 8], d: &mut [f32]) {
        d[..8].copy_from_slice(&v);
    }
    #[inline(always)]
    fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    fn div(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] / b[i])
    }
    #[inline(always)]
    fn round(v: [f32; 8]) -> [f32; 8] {
        v.map(f32::round_ties_even)
    }
    #[inline(always)]
    fn scale2(y: [f32; 8], n: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| y[i] * 2f32.powi(n[i] as i32))
    }
    #[inline(always)]
    fn select_lt(a: [f32; 8], b: [f32; 8], x: [f32; 8], y: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| if a[i] < b[i] { x[i] } else { y[i] })
    }
    /// The portable path is the scalar one: `f32::tanh` per lane.
    #[inline(always)]
    fn tanh(x: [f32; 8]) -> [f32; 8] {
        x.map(f32::tanh)
    }
    /// The portable path is the scalar one: `f32::exp` per lane.
    #[inline(always)]
    fn exp(x: [f32; 8]) -> [f32; 8] {
        x.map(f32::exp)
    }
    #[inline(always)]
    fn relu(v: [f32; 8]) -> [f32; 8] {
        v.map(|x| x.max(0.0))
    }
    #[inline(always)]
    fn clamp(v: [f32; 8], lo: f32, hi: f32) -> [f32; 8] {
        v.map(|x| x.clamp(lo, hi))
    }
    #[inline(always)]
    fn max(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| if b[i] > a[i] { b[i] } else { a[i] })
    }
}

/// A micro-kernel compiled per instruction set: `run` is `#[inline(always)]` in each impl, so
/// that it is compiled inside the `#[target_feature]` wrapper [`dispatch`] calls, with `S`'s
/// vectors.
pub(crate) trait Kernel {
    fn run<S: Simd>(self);
}

/// Runs `k` compiled for `isa`.
pub(crate) fn dispatch<K: Kernel>(isa: Isa, k: K) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` and `Isa::available()` give Avx512 only when the CPU reports avx512f and fma.
        Isa::Avx512 => unsafe { run_avx512(k) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` and `Isa::available()` give Avx2 only when the CPU reports avx2 and fma.
        Isa::Avx2 => unsafe { run_avx2(k) },
        _ => k.run::<Portable>(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512<K: Kernel>(k: K) {
    k.run::<Avx512>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(k: K) {
    k.run::<Avx2>()
}

/// An element-wise function with a vector form: the exponential family, whose scalar form
/// (`f32::exp` per element, a library call) would be most of an activation's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VectorFn {
    Exp,
    Sigmoid,
    /// `x · sigmoid(x)` (swish).
    Silu,
    Tanh,
}

impl VectorFn {
    #[inline(always)]
    pub(crate) fn apply<S: Simd>(self, x: S::V) -> S::V {
        match self {
            VectorFn::Exp => S::exp(x),
            VectorFn::Sigmoid => S::sigmoid(x),
            VectorFn::Silu => S::mul(x, S::sigmoid(x)),
            VectorFn::Tanh => S::tanh(x),
        }
    }
}

/// `dst[i] = f(src[i])`, or `f` in place over `dst` when `src` is `None`.
pub(crate) fn map_vector(f: VectorFn, src: Option<&[f32]>, dst: &mut [f32]) {
    dispatch(isa(), MapVector { f, src, dst });
}

struct MapVector<'a> {
    f: VectorFn,
    src: Option<&'a [f32]>,
    dst: &'a mut [f32],
}

impl Kernel for MapVector<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let n = self.dst.len();
        let mut i = 0;
        while i < n {
            let k = S::L.min(n - i);
            let x = match self.src {
                Some(s) => S::load_part(&s[i..], k),
                None => S::load_part(&self.dst[i..], k),
            };
            S::store_part(self.f.apply::<S>(x), &mut self.dst[i..], k);
            i += S::L;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep: every 1/64 from −110 to 95 (past both ends of the range), tiny values, the
    /// specials.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-110 * 64..95 * 64).map(|i| i as f32 / 64.0).collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, 88.7, 88.72, 88.73, -87.3, -103.9, f32::INFINITY]);
        v.extend([f32::NEG_INFINITY, f32::NAN, f32::MAX, f32::MIN]);
        v
    }

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs().min(u32::MAX as u64) as u32
    }

    /// The vector exponential, sigmoid and SiLU against the scalar ones on every instruction
    /// set: within 2 ulp (4 for sigmoid and SiLU) where the result is a normal number, and the same specials (NaN, ±∞,
    /// 0 past the bottom of the range, up to a denormal).
    #[test]
    fn vector_exponentials_match_the_scalar_ones() {
        let xs = inputs();
        let scalar = |f: VectorFn, x: f32| -> f32 {
            let s = |x: f32| 1.0 / (1.0 + (-x).exp());
            match f {
                VectorFn::Exp => x.exp(),
                VectorFn::Sigmoid => s(x),
                VectorFn::Silu => x * s(x),
                VectorFn::Tanh => x.tanh(),
            }
        };
        for isa in Isa::available() {
            for f in [VectorFn::Exp, VectorFn::Sigmoid, VectorFn::Silu, VectorFn::Tanh] {
                let mut got = vec![0f32; xs.len()];
                dispatch(isa, MapVector { f, src: Some(&xs), dst: &mut got });
                for (&x, &g) in xs.iter().zip(&got) {
                    let w = scalar(f, x);
                    let ok = if w.is_nan() {
                        g.is_nan()
                    } else if w.is_infinite() || w == 0.0 {
                        g == w || (w == 0.0 && g.abs() < 1e-37)
                    } else if w.abs() < f32::MIN_POSITIVE {
                        (g - w).abs() < 1e-37
                    } else {
                        // The exponential within 2 ulp; one more rounding each for 1 + e^−x,
                        // the division and the product.
                        ulps(g, w) <= if f == VectorFn::Exp { 2 } else { 4 }
                    };
                    assert!(ok, "{isa:?} {f:?}({x}) = {g}, want {w}");
                }
            }
        }
    }

    /// In place over a buffer whose length is not a multiple of the lanes.
    #[test]
    fn in_place_covers_the_tail() {
        for isa in Isa::available() {
            let mut v: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 4.0).collect();
            let want: Vec<f32> = v.iter().map(|x| x.exp()).collect();
            dispatch(isa, MapVector { f: VectorFn::Exp, src: None, dst: &mut v });
            for (g, w) in v.iter().zip(&want) {
                assert!(ulps(*g, *w) <= 2, "{isa:?}: {g} vs {w}");
            }
        }
    }
}

//! What the convolution micro-kernels share: the geometry, the rule for splitting rows into
//! tasks, and each thread's scratch buffer (a leaf module, so the kernels import it and not
//! each other).

/// A convolution's geometry lifted to three spatial axes (leading 1s for 1-D and 2-D).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    pub n: usize,
    pub inp: [usize; 3],
    pub out: [usize; 3],
    pub k: [usize; 3],
    pub s: [usize; 3],
    pub d: [usize; 3],
    pub pad: [usize; 3],
    pub c: usize,
    pub f: usize,
}

impl Geo {
    pub(super) fn taps(&self) -> usize {
        self.k.iter().product()
    }

    /// A 1x1 convolution (unit strides, no padding) seen as rows of at least 128 pixels where
    /// the image rows are shorter: its pixels are one sequence, so any split into equal rows is
    /// the same convolution, and longer rows spread the per-row costs of the micro-kernels.
    pub(super) fn pointwise_rows(&self) -> Geo {
        let ow = self.out[2].max(1);
        let m = self.n * self.out[0] * self.out[1];
        if ow >= 128 || m == 0 {
            return *self;
        }
        // The fewest image rows per row that divide them and make 128 pixels, looked for up
        // to rows of 4096 pixels (else the rows stay as they are).
        let Some(k) = (128usize.div_ceil(ow)..=(4096 / ow).min(m)).find(|&k| m.is_multiple_of(k)) else {
            return *self;
        };
        let row = [1, m / k, ow * k];
        Geo { n: 1, inp: row, out: row, ..*self }
    }

    /// The position `(n, z, y)` of output row `r`.
    #[inline(always)]
    pub(super) fn row_pos(&self, r: usize) -> (usize, usize, usize) {
        let [od, oh, _] = self.out;
        (r / (oh * od), (r / oh) % od, r % oh)
    }

    /// The input row `(n, z, y)` read by tap row `(kz, ky)` of the output row at `pos`, if inside.
    #[inline(always)]
    pub(super) fn input_row(&self, (n, oz, oy): (usize, usize, usize), kz: usize, ky: usize) -> Option<usize> {
        let iz = (oz * self.s[0] + kz * self.d[0]).checked_sub(self.pad[0])?;
        let iy = (oy * self.s[1] + ky * self.d[1]).checked_sub(self.pad[1])?;
        (iz < self.inp[0] && iy < self.inp[1]).then(|| (n * self.inp[0] + iz) * self.inp[1] + iy)
    }

    /// The input column read by tap column `kx` of output column `ox`, if inside.
    #[inline(always)]
    pub(super) fn input_col(&self, ox: usize, kx: usize) -> Option<usize> {
        let ix = (ox * self.s[2] + kx * self.d[2]).checked_sub(self.pad[2])?;
        (ix < self.inp[2]).then_some(ix)
    }
}

/// Work (a dense kernel's multiply-adds, [`row_cost`]) below which a task is not split
/// further: ~10-25 µs on one core. The calling thread is one of the pool's (the CLI makes it
/// worker 0; a library caller's run goes onto the pool whole, [`crate::on_pool`]), so it runs
/// the first task itself and takes back any task no other thread has started: a split costs a
/// wake-up only where another thread is free to take work. Measured on this 2-core machine
/// (MobileNetV2 at batch 8, two threads): 2^19 gave 2.1-2.3 ms, 2^20 3.2-3.5 ms (one thread:
/// 3.8-4.2 ms), 2^17-2^18 within noise of 2^19; batch 1 is within noise of one thread at every
/// size.
const MIN_TASK_MACS: usize = 1 << 19;

/// The kernel `(taps, C, F)` with each row of `F` filters widened to `width` (≥ F), zeros past
/// `F`: the layout a micro-kernel reads whole vectors of filters from.
pub(super) fn pad_filters(w: &[f32], f: usize, width: usize) -> Vec<f32> {
    let rows = w.len() / f.max(1);
    let mut p = vec![0f32; rows * width];
    for (dst, src) in p.chunks_exact_mut(width).zip(w.chunks_exact(f.max(1))) {
        dst[..f].copy_from_slice(src);
    }
    p
}

/// The cost of an output row in a dense kernel's multiply-adds (the unit of
/// [`MIN_TASK_MACS`]): its `macs` multiply-adds, weighted by `per_mac` (1 for the dense
/// kernels; 4 for depthwise, which reaches a quarter of their rate: one multiply-add per loaded
/// value), plus its `outputs` values (each a store and its epilogue, the time of ~16
/// multiply-adds at the dense rate: what makes a 1x1 convolution over 8 channels run at a third
/// of it).
pub(super) fn row_cost(macs: usize, per_mac: usize, outputs: usize) -> usize {
    macs * per_mac + 16 * outputs
}

/// Output rows per task for rows of `cost` ([`row_cost`]) each.
pub(super) fn rows_per_task(cost: usize) -> usize {
    (MIN_TASK_MACS / cost.max(1)).max(1)
}

thread_local! {
    /// Each thread's buffer of the zero-padded input spans of the pixels at the borders
    /// ([`super::direct`]).
    pub(super) static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

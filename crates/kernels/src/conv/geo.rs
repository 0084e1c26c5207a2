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
    /// Each thread's zero-padded copies of the input rows its task reads ([`PaddedRows`]).
    pub(super) static ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where the input rows of a convolution padded along its width are read from: zero-padded
/// copies in a per-thread buffer, one slot per kernel row, so that every pixel's taps are inside
/// a row (the border pixels read the zeros around a copy instead of going through a per-pixel
/// path: in the direct kernel that path spills the accumulators, 30 against 43 GMAC/s on a 3x3
/// 16→16 layer at 32x32, where every block of 16 pixels touches a border). Slot
/// `(iz mod kd·dz, iy mod kh·dy)` holds an input row `(iz, iy)`: the rows of one output row never
/// share a slot, and consecutive output rows find most of theirs already there.
#[derive(Clone, Copy)]
pub(super) struct PaddedRows {
    /// Columns per slot (input column `x` at `x + pad`, zeros around it, room for the widest
    /// block past the last pixel).
    width: usize,
    /// Slots along the depth and height.
    mz: usize,
    my: usize,
}

impl PaddedRows {
    /// The copies' layout, if the convolution is padded along its width (or its last kernel
    /// column can read past the row's end), for blocks of up to `block` pixels.
    pub(super) fn plan(g: &Geo, block: usize) -> Option<PaddedRows> {
        let span = (g.k[2] - 1) * g.d[2] + 1;
        let ow = g.out[2];
        if g.pad[2] == 0 && (ow - 1) * g.s[2] + span <= g.inp[2] {
            return None;
        }
        // The widest block from the last pixel on.
        let width = ((ow + block - 1) * g.s[2] + span).max(g.pad[2] + g.inp[2]);
        Some(PaddedRows { width, mz: g.k[0] * g.d[0], my: g.k[1] * g.d[1] })
    }
}

/// A task's input rows ([`PaddedRows`]' copies, or the input itself), output row by output row.
pub(super) struct RowSource<'a> {
    g: &'a Geo,
    x: &'a [f32],
    padded: Option<PaddedRows>,
    copies: &'a mut Vec<f32>,
    /// The input row each slot holds.
    tags: Vec<usize>,
    starts: Vec<Option<usize>>,
}

/// The input rows of one output row: `starts[kz · kh + ky]` is the first value in `x` of kernel
/// row `(kz, ky)`'s input row (if inside), a row of `iw` columns whose first is `pl` columns
/// left of the input's.
pub(super) struct Rows<'b> {
    pub x: &'b [f32],
    pub iw: usize,
    pub pl: usize,
    pub starts: &'b [Option<usize>],
}

impl<'a> RowSource<'a> {
    pub(super) fn new(g: &'a Geo, x: &'a [f32], padded: Option<PaddedRows>, copies: &'a mut Vec<f32>) -> Self {
        let mut tags = Vec::new();
        if let Some(p) = padded {
            copies.clear();
            copies.resize(p.mz * p.my * p.width * g.c, 0.0);
            tags.resize(p.mz * p.my, usize::MAX);
        }
        RowSource { g, x, padded, copies, tags, starts: vec![None; g.k[0] * g.k[1]] }
    }

    /// The input rows of output row `r`, copying those not yet in a slot.
    pub(super) fn row(&mut self, r: usize) -> Rows<'_> {
        let g = self.g;
        let c = g.c;
        let pos = g.row_pos(r);
        for kz in 0..g.k[0] {
            for ky in 0..g.k[1] {
                let row = g.input_row(pos, kz, ky);
                self.starts[kz * g.k[1] + ky] = match (self.padded, row) {
                    (None, row) => row.map(|row| row * g.inp[2] * c),
                    (Some(_), None) => None,
                    (Some(p), Some(row)) => {
                        let (iz, iy) = ((row / g.inp[1]) % g.inp[0], row % g.inp[1]);
                        let slot = (iz % p.mz) * p.my + iy % p.my;
                        let at = slot * p.width * c;
                        if self.tags[slot] != row {
                            self.tags[slot] = row;
                            let from = row * g.inp[2] * c;
                            let len = g.inp[2] * c;
                            let to = at + g.pad[2] * c;
                            self.copies[to..to + len].copy_from_slice(&self.x[from..from + len]);
                        }
                        Some(at)
                    }
                };
            }
        }
        match self.padded {
            Some(p) => Rows { x: &self.copies[..], iw: p.width, pl: 0, starts: &self.starts },
            None => Rows { x: self.x, iw: g.inp[2], pl: g.pad[2], starts: &self.starts },
        }
    }
}

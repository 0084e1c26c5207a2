//! `kerasc bench`: the naive plan (the frontend's graph op by op, one buffer per tensor, no
//! passes) and the optimized plan, on the same device and the same random input, in one process.

use crate::ir::{DType, Dim, Graph, Op, Producer, Tensor, TensorData};
use crate::optimizer;
use crate::{CompileError, Executor, ExecutorOptions, LogicalDevice, OptimizeOptions, OptimizeReport, RuntimeError};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where both plans run (and the one-replica side of a mirrored benchmark).
    pub device: LogicalDevice,
    /// With two or more devices: the optimized plan is also timed spread across them, mirrored
    /// (`tf.distribute.MirroredStrategy`, the batch split between them) or, with `placement`,
    /// placed (model parallelism, micro-batches pipelined through the stages).
    pub spread: Vec<LogicalDevice>,
    /// Place the model's layers on `spread` instead of mirroring it: how, and the micro-batches.
    pub placement: Option<(crate::Placement, usize)>,
    pub batch: usize,
    pub warmup: usize,
    pub runs: usize,
    pub profile: bool,
    pub seed: u64,
    /// Where compiled PTX is cached (GPU runs).
    pub ptx_cache: std::path::PathBuf,
    /// The optimized plan's matrix arithmetic on a GPU (the naive plan stays float32, so the
    /// difference between them is the precision's error).
    pub precision: codegen::cuda::Precision,
    /// The most bytes the runs' tensors may take; `None`: what the machine or device has.
    pub memory_limit: Option<usize>,
}

/// Timings of one plan, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
    /// Kernels launched per run (aliased reshapes excluded).
    pub kernels: usize,
    /// Per node: (name, op, milliseconds) of one profiled run, when asked for.
    pub profile: Vec<(String, String, f64)>,
}

/// Everything `bench` reports.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub model: String,
    pub device: String,
    pub batch: usize,
    pub naive: Timing,
    pub optimized: Timing,
    pub naive_bytes: usize,
    pub arena_bytes: usize,
    pub lower_bound_bytes: usize,
    pub max_abs_diff: f64,
    /// ‖optimized − naive‖ / ‖naive‖ over every output.
    pub rel_l2_diff: f64,
    pub precision: codegen::cuda::Precision,
    pub optimizer: OptimizeReport,
    pub naive_graph: Graph,
    pub optimized_graph: Graph,
    /// The optimized plan spread across [`BenchOptions::spread`], when asked for.
    pub spread: Option<SpreadTiming>,
    /// What the optimized plan needs on each device it runs on: its weights, its arena and any
    /// tensor outside it, at the batch (or the replica's share) benchmarked.
    pub device_bytes: Vec<(String, usize)>,
}

/// The optimized plan spread across several devices, beside one.
#[derive(Debug, Clone)]
pub struct SpreadTiming {
    /// `mirrored` or `placed`.
    pub kind: &'static str,
    pub devices: Vec<String>,
    pub timing: Timing,
    /// Largest difference from the one-device output.
    pub max_abs_diff: f64,
}

impl SpreadTiming {
    /// Samples per second at batch `batch` at the median time.
    pub fn throughput(&self, batch: usize) -> f64 {
        batch as f64 / (self.timing.median_ms / 1e3).max(1e-12)
    }
}

impl BenchResult {
    /// Naive median over optimized median.
    pub fn speedup(&self) -> f64 {
        self.naive.median_ms / self.optimized.median_ms.max(1e-9)
    }

    /// Samples per second of the optimized plan on one device, at the median time.
    pub fn throughput(&self) -> f64 {
        self.batch as f64 / (self.optimized.median_ms / 1e3).max(1e-12)
    }
}

/// Errors of a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Compile(String),
}

impl From<CompileError> for BenchError {
    fn from(e: CompileError) -> Self {
        BenchError::Compile(e.to_string())
    }
}

/// A small deterministic generator (SplitMix64) for benchmark inputs.
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The largest id every embedding or gather fed by graph input `i` accepts.
fn index_limit(g: &Graph, input: usize) -> usize {
    let v = g.inputs()[input];
    let mut limit = usize::MAX;
    for n in g.nodes() {
        if let (Op::Gather { axis }, Some(&idx), Some(&data)) = (&n.op, n.inputs.get(1), n.inputs.first()) {
            if idx == v {
                if let Some(Dim::Fixed(d)) = g.value(data).ty.shape.dims().get(*axis) {
                    limit = limit.min(*d);
                }
            }
        }
    }
    if limit == usize::MAX {
        2
    } else {
        limit.max(1)
    }
}

/// Random inputs for every graph input at a batch size: floats in [-1, 1), ids in range.
pub fn random_inputs(g: &Graph, batch: usize, seed: u64) -> Result<Vec<Tensor>, RuntimeError> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let shapes: Vec<Vec<usize>> = g
        .inputs()
        .iter()
        .map(|&v| g.value(v).ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(batch)).collect())
        .collect();
    // The inputs are allocated here: they must fit before anything else is checked.
    let bytes = shapes.iter().zip(g.inputs()).try_fold(0usize, |acc, (s, &v)| {
        let n = s.iter().try_fold(g.value(v).ty.dtype.size(), |a, &d| a.checked_mul(d))?;
        acc.checked_add(n)
    });
    let machine = runtime::memory::available_memory().map(|m| (m, "available on this machine"));
    runtime::memory::check(bytes.unwrap_or(usize::MAX), None, machine)?;
    for (i, (&v, shape)) in g.inputs().iter().zip(shapes).enumerate() {
        let ty = &g.value(v).ty;
        let n: usize = shape.iter().product();
        let t = if ty.dtype.is_float() {
            Tensor::from_f32(&shape, (0..n).map(|_| rng.uniform()).collect())?.cast(ty.dtype)
        } else {
            let lim = index_limit(g, i) as u64;
            let ids: Vec<i64> = (0..n).map(|_| (rng.next_u64() % lim) as i64).collect();
            Tensor::new(shape, TensorData::I64(ids))?.cast(if ty.dtype == DType::Bool { DType::I64 } else { ty.dtype })
        };
        out.push(t);
    }
    Ok(out)
}

fn time<F: FnMut() -> Result<(), RuntimeError>>(warmup: usize, runs: usize, mut f: F) -> Result<Timing, RuntimeError> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        f()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        ..Default::default()
    })
}

fn profile_rows(g: &Graph, times: &[f64]) -> Vec<(String, String, f64)> {
    g.nodes().iter().zip(times).map(|(n, &t)| (n.name.clone(), n.op.name(), t * 1e3)).collect()
}

/// Bytes of one buffer per intermediate tensor of `g` at a batch size.
pub fn naive_bytes(g: &Graph, batch: usize) -> usize {
    g.values()
        .iter()
        .filter(|v| matches!(v.producer, Producer::Node(..)))
        .map(|v| v.ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(batch)).product::<usize>() * v.ty.dtype.size())
        .sum()
}

/// Times one executor: CUDA events around the kernels on a GPU, wall clock on the CPU.
fn time_exec(e: &Executor, inputs: &[Tensor], warmup: usize, runs: usize) -> Result<Timing, RuntimeError> {
    match e {
        Executor::Cuda(s) => {
            for _ in 0..warmup {
                s.run(inputs)?;
            }
            let mut ms = Vec::with_capacity(runs);
            for _ in 0..runs.max(1) {
                ms.push(s.run_timed(inputs)?.1);
            }
            ms.sort_by(f64::total_cmp);
            Ok(Timing {
                median_ms: ms[ms.len() / 2],
                min_ms: ms[0],
                mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
                ..Default::default()
            })
        }
        _ => time(warmup, runs, || e.run(inputs).map(|_| ())),
    }
}

fn profile_of(e: &Executor, inputs: &[Tensor]) -> Result<Vec<(String, String, f64)>, RuntimeError> {
    Ok(match e {
        Executor::Cpu(s) => profile_rows(s.graph(), &s.run_profiled(inputs)?.1),
        Executor::CpuNaive(s) => profile_rows(s.graph(), &s.run_profiled(inputs)?.1),
        // Per-kernel times on the GPU are not measured yet.
        Executor::Cuda(_) | Executor::Mirrored(_) | Executor::Placed { .. } => Vec::new(),
    })
}

/// What the plan of `g` needs at these input shapes: its weights, its arena and any tensor
/// outside it.
pub fn plan_bytes(g: &Graph, input_shapes: &[Vec<usize>]) -> Result<usize, BenchError> {
    let plan = optimizer::plan_for_shapes(g, input_shapes).map_err(|e| BenchError::Compile(e.to_string()))?;
    Ok(runtime::memory::weight_bytes(g).saturating_add(runtime::memory::planned_bytes(g, &plan)))
}

/// The shapes of a graph's inputs with `rows` rows on the batch axis.
fn with_rows(g: &Graph, shapes: &[Vec<usize>], rows: usize) -> Vec<Vec<usize>> {
    shapes
        .iter()
        .zip(g.inputs())
        .map(|(s, &v)| {
            let mut s = s.clone();
            if runtime::strategy::batched(g, v) {
                s[0] = rows;
            }
            s
        })
        .collect()
}

/// What a spread executor needs on each of `devices`: a replica's plan at its share of the
/// batch, or the plans of the stages placed there at a micro-batch.
fn spread_bytes(
    e: &Executor,
    devices: &[LogicalDevice],
    shapes: &[Vec<usize>],
) -> Result<Vec<(String, usize)>, BenchError> {
    let batch = shapes.first().and_then(|s| s.first()).copied().unwrap_or(1);
    let mut out: Vec<(String, usize)> = devices.iter().map(|d| (d.device.to_string(), 0)).collect();
    match e {
        Executor::Mirrored(r) => {
            for ((slot, rows), rep) in out.iter_mut().zip(runtime::strategy::shares(batch, r.len())).zip(r) {
                if !rows.is_empty() {
                    slot.1 = plan_bytes(rep.graph(), &with_rows(rep.graph(), shapes, rows.len()))?;
                }
            }
        }
        Executor::Placed { placed, micro_batches, .. } => {
            let rows = runtime::strategy::shares(batch, *micro_batches).first().map_or(batch, |r| r.len());
            for st in &placed.stages {
                let dims: Vec<Vec<usize>> = st
                    .graph
                    .inputs()
                    .iter()
                    .map(|&v| st.graph.value(v).ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(rows)).collect())
                    .collect();
                if let Some(slot) = out.get_mut(st.device) {
                    slot.1 = slot.1.saturating_add(plan_bytes(&st.graph, &dims)?);
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The largest element-wise difference between two lists of outputs (NaN if any is NaN).
fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    let mut m = 0f64;
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
            let d = (p - q).abs();
            m = if d.is_nan() { f64::NAN } else { m.max(d) };
        }
    }
    m
}

/// Runs the benchmark.
pub fn bench(name: &str, graph: &Graph, options: &BenchOptions) -> Result<BenchResult, BenchError> {
    let exec_opts = |naive: bool| ExecutorOptions {
        device: options.device.clone(),
        naive,
        optimize: OptimizeOptions::default(),
        ptx_cache: options.ptx_cache.clone(),
        precision: if naive { codegen::cuda::Precision::Fp32 } else { options.precision },
        memory_limit: options.memory_limit,
    };
    let (naive, _) = Executor::new(graph, &exec_opts(true))?;
    let (planned, report) = Executor::new(graph, &exec_opts(false))?;
    let report = report.unwrap_or_default();
    let inputs = random_inputs(graph, options.batch, options.seed)?;
    let want = naive.run(&inputs)?;
    let got = planned.run(&inputs)?;
    let mut max_abs_diff = 0f64;
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in got.iter().zip(&want) {
        for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            let d = (x - y).abs();
            max_abs_diff = if d.is_nan() { f64::NAN } else { max_abs_diff.max(d) };
            num += d * d;
            den += y * y;
        }
    }
    let rel_l2_diff = if den > 0.0 { (num / den).sqrt() } else { num.sqrt() };
    let mut nt = time_exec(&naive, &inputs, options.warmup, options.runs)?;
    let mut ot = time_exec(&planned, &inputs, options.warmup, options.runs)?;
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let plan = optimizer::plan_for_shapes(planned.graph(), &shapes).map_err(|e| BenchError::Compile(e.to_string()))?;
    nt.kernels = graph.nodes().len();
    ot.kernels = planned.graph().nodes().len() - plan.aliases;
    if options.profile {
        nt.profile = profile_of(&naive, &inputs)?;
        ot.profile = profile_of(&planned, &inputs)?;
    }
    let og = planned.graph();
    let mut device_bytes = vec![(options.device.device.to_string(), plan_bytes(og, &shapes)?)];
    let spread = if options.spread.len() >= 2 {
        let (kind, m) = match &options.placement {
            Some((p, k)) => ("placed", Executor::placed(graph, &exec_opts(false), &options.spread, p, *k)?.0),
            None => ("mirrored", Executor::mirrored(graph, &exec_opts(false), &options.spread)?.0),
        };
        let diff = max_diff(&m.run(&inputs)?, &got);
        let timing = time_exec(&m, &inputs, options.warmup, options.runs)?;
        device_bytes = spread_bytes(&m, &options.spread, &shapes)?;
        Some(SpreadTiming {
            kind,
            devices: options.spread.iter().map(|d| d.device.to_string()).collect(),
            timing,
            max_abs_diff: diff,
        })
    } else {
        None
    };
    Ok(BenchResult {
        model: name.to_string(),
        device: options.device.device.to_string(),
        batch: options.batch,
        naive: nt,
        optimized: ot,
        naive_bytes: naive_bytes(graph, options.batch),
        arena_bytes: plan.arena_bytes,
        lower_bound_bytes: plan.lower_bound_bytes,
        max_abs_diff,
        rel_l2_diff,
        precision: options.precision,
        optimizer: report,
        naive_graph: graph.clone(),
        optimized_graph: planned.graph().clone(),
        spread,
        device_bytes,
    })
}

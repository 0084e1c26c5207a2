//! The `kerasc` command line: [`main`] parses the arguments and runs the command (the binary's
//! `main` and the Python package's `kerasc` command both call it).

use crate::bench::BenchOptions;
use crate::{ir, npy, Device, LogicalDevice, LogicalDevices, OptimizeOptions};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "kerasc", version, about = "Compile, run and inspect saved Keras models outside Python")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for the kernels (default: KERASC_NUM_THREADS, else every core)
    #[arg(long, global = true, value_parser = parse_positive)]
    threads: Option<usize>,
    /// Split the physical devices into logical ones (default: KERASC_LOGICAL_DEVICES): `cpu=2`
    /// makes /CPU:0 and /CPU:1, each with its share of the threads; `gpu:0=2x20GiB` makes two
    /// logical GPUs of 20 GiB each out of GPU 0 (`gpu:1=10GiB+30GiB` for unequal ones);
    /// comma-separated
    #[arg(long, global = true)]
    logical_devices: Option<String>,
}

/// How a model is spread over devices.
#[derive(clap::Args, Clone, Debug)]
struct Distribute {
    /// `mirrored`: data parallelism as tf.distribute.MirroredStrategy, the batch split across
    /// --devices, one replica of the model on each. `multi-worker` (fit): one process per
    /// worker, launched by mpirun or srun (a build with `--features mpi`) or named by TF_CONFIG
    /// (GPU workers), each on its --devices (default: its local rank's GPU, else the CPU), the
    /// global batch split across every worker's replicas and the gradients summed over NCCL or
    /// MPI (Horovod's and MultiWorkerMirroredStrategy's way)
    #[arg(long)]
    strategy: Option<Strategy>,
    /// Model parallelism: `auto` (stages balanced by estimated time under each device's memory
    /// limit) or a file of `LAYER DEVICE` lines (or a JSON object) placing layers on --devices;
    /// values crossing devices are moved by explicit Transfer ops
    #[arg(long, conflicts_with = "strategy")]
    placement: Option<String>,
    /// With --placement: micro-batches pipelined through the stages
    #[arg(long, default_value_t = 1, value_parser = parse_positive, requires = "placement")]
    micro_batches: usize,
    /// The devices of --strategy or --placement: `all` (every GPU, else every CPU device) or a
    /// comma-separated list such as /CPU:0,/CPU:1 (default: all)
    #[arg(long)]
    devices: Option<String>,
}

impl Distribute {
    fn spread(&self) -> bool {
        self.strategy.is_some() || self.placement.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum Strategy {
    Mirrored,
    MultiWorker,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Print the model's layers like Keras's model.summary()
    Inspect {
        /// A Keras model file (.h5 or .keras)
        model: PathBuf,
        /// Print one JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Run a model on inputs from .npy files
    Run {
        /// A Keras model file (.h5 or .keras)
        model: PathBuf,
        /// One .npy file per model input, in model.inputs order
        #[arg(long = "input", short = 'i', required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write each output (.npy), in model.outputs order
        #[arg(long = "output", short = 'o')]
        outputs: Vec<PathBuf>,
        /// Device: /CPU:0, /GPU:0, /device:GPU:1, cpu, gpu:1 ... (default: the best available)
        #[arg(long)]
        device: Option<String>,
        /// Run the frontend's graph op by op, without the optimizer
        #[arg(long)]
        naive: bool,
        /// If the requested GPU is not usable, run on the CPU instead (with a warning)
        #[arg(long)]
        soft_placement: bool,
        /// Matrix products and convolutions on a GPU: fp32, or the tensor cores with tf32, bf16
        /// or fp16 operands (float32 accumulation)
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// The most memory the run's tensors may take (bytes, or with KiB/MiB/GiB/KB/MB/GB);
        /// default: what the machine (or the GPU) has
        #[arg(long, value_parser = runtime::memory::parse_bytes)]
        memory_limit: Option<usize>,
        /// Say which device runs the model before running it (else only once it succeeded)
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        distribute: Distribute,
    },
    /// Show each compilation stage: the IR, the optimized graph, the memory plan, Graphviz DOT
    Compile {
        /// A Keras model file (.h5 or .keras)
        model: PathBuf,
        /// Stage to print: ir, optimized, plan, dot, or placement (which device runs each op
        /// and the bytes each transfer moves; with --placement and --devices)
        #[arg(long, default_value = "optimized")]
        emit: Emit,
        /// Write every stage into this folder instead (ir.txt, optimized.txt, plan.txt, before.dot, after.dot)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Batch size the memory plan is laid out for
        #[arg(long, default_value_t = 1, value_parser = parse_positive)]
        batch: usize,
        /// `cuda`: write every generated kernel as OUT/<kernel>.cu (and .ptx when NVRTC is present)
        #[arg(long)]
        target: Option<Target>,
        /// GPU architecture of the PTX (with --target cuda)
        #[arg(long, default_value = "sm_90")]
        arch: String,
        /// Matrix products and convolutions in the CUDA kernels: fp32, tf32, bf16, fp16
        #[arg(long, default_value = "fp32")]
        precision: String,
        #[command(flatten)]
        distribute: Distribute,
    },
    /// Time the naive plan against the optimized plan, side by side
    Bench {
        /// A Keras model file (.h5 or .keras)
        model: PathBuf,
        /// Device: /CPU:0, /GPU:0, cpu, gpu:1 ... (default: the best available)
        #[arg(long)]
        device: Option<String>,
        /// Batch size of the random input
        #[arg(long, default_value_t = 1, value_parser = parse_positive)]
        batch: usize,
        /// Untimed runs first
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Timed runs of each plan
        #[arg(long, default_value_t = 30, value_parser = parse_positive)]
        runs: usize,
        /// Add the ten most expensive ops of each plan
        #[arg(long)]
        profile: bool,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
        /// Write a self-contained HTML report (graphs and per-op time charts)
        #[arg(long)]
        report: Option<PathBuf>,
        /// Seed of the random input
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The optimized plan's matrix arithmetic on a GPU (fp32, tf32, bf16, fp16); the naive
        /// plan stays fp32, so max_abs_diff is the precision's error
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// The most memory the runs' tensors may take (bytes, or with KiB/MiB/GiB/KB/MB/GB);
        /// default: what the machine (or the GPU) has
        #[arg(long, value_parser = runtime::memory::parse_bytes)]
        memory_limit: Option<usize>,
        /// Say which device runs the model before running it (else only once it succeeded)
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        distribute: Distribute,
    },
    /// Fine-tune a model (on the lowest GPU, else the CPU) and write it in the input's format (Keras loads it back)
    Fit {
        /// A Keras model file (.h5 or .keras)
        model: PathBuf,
        #[command(flatten)]
        options: crate::fit::FitOptions,
        /// Device to train on (TensorFlow names: /GPU:0, /CPU:0; default: the lowest GPU, else
        /// the CPU). On a GPU each step's forward and backward pass and the optimizer's update
        /// run there, the weights staying on the device.
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        distribute: Distribute,
    },
    /// List the physical devices, and the logical devices plans can run on
    Devices,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Target {
    Cuda,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Emit {
    Ir,
    Optimized,
    Plan,
    Placement,
    Dot,
}

/// Runs the command line `args` (the program's name first) and returns the process's exit
/// status: 0, 1 after an error (printed on stderr), 2 for arguments clap rejects (0 for
/// `--help` and `--version`, printed as clap prints them).
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match set_threads(cli.threads).and_then(|()| run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Sizes the kernels' thread pool: `--threads`, else `KERASC_NUM_THREADS`, else every core.
fn set_threads(flag: Option<usize>) -> Result<()> {
    let n = match (flag, std::env::var("KERASC_NUM_THREADS")) {
        (Some(n), _) => n,
        (None, Ok(v)) => parse_positive(&v).map_err(|e| anyhow::anyhow!("KERASC_NUM_THREADS='{v}': {e}"))?,
        // rayon's own default: RAYON_NUM_THREADS, else every core.
        (None, Err(_)) => 0,
    };
    // This thread is worker 0 of the pool: an op it splits runs its first part here and takes
    // back any part no other worker has started, instead of handing the whole op to the pool
    // and sleeping until it is done (two thread wake-ups per op).
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .use_current_thread()
        .build_global()
        .context("setting the number of threads")?;
    Ok(())
}

/// This process's devices: the physical ones, split as `--logical-devices` (else
/// `KERASC_LOGICAL_DEVICES`) says.
fn logical_devices(flag: Option<&str>) -> Result<LogicalDevices> {
    let env = std::env::var("KERASC_LOGICAL_DEVICES").ok().filter(|v| !v.trim().is_empty());
    let spec = match (flag, env.as_deref()) {
        (Some(s), _) | (None, Some(s)) => crate::LogicalSpec::parse(s)?,
        (None, None) => crate::LogicalSpec::default(),
    };
    Ok(LogicalDevices::new(&spec, rayon::current_num_threads())?)
}

fn run(cli: Cli) -> Result<()> {
    let devs = logical_devices(cli.logical_devices.as_deref())?;
    match cli.command {
        Command::Inspect { model, json } => inspect(&model, json),
        Command::Run {
            model,
            inputs,
            outputs,
            device,
            naive,
            soft_placement,
            precision,
            memory_limit,
            verbose,
            distribute,
        } => {
            let mut notes = Notes::new(verbose);
            let precision = parse_precision(&precision)?;
            only_fit_is_multi_worker(&distribute)?;
            let replicas = spread_devices(&distribute, device.as_deref(), &devs, &mut notes)?;
            let device = match replicas.first() {
                Some(first) => first.clone(),
                None => pick_device(device.as_deref(), soft_placement, &devs, &mut notes)?,
            };
            check_precision_device(precision, device.device)?;
            let options = crate::ExecutorOptions {
                device,
                naive,
                optimize: OptimizeOptions::default(),
                ptx_cache: crate::devices::ptx_cache_dir(),
                precision,
                memory_limit,
            };
            let spread = Spread::of(&distribute, replicas)?;
            run_model(&model, &inputs, &outputs, &options, &spread, &mut notes)
        }
        Command::Compile { model, emit: _, out, batch, target: Some(Target::Cuda), arch, precision, .. } => {
            let out = out.context("--target cuda needs --out DIR")?;
            compile_cuda(&model, &out, batch, &arch, parse_precision(&precision)?)
        }
        Command::Compile { model, emit: Emit::Placement, batch, distribute, .. } => {
            let mut notes = Notes::new(false);
            only_fit_is_multi_worker(&distribute)?;
            let devices = spread_devices(&distribute, None, &devs, &mut notes)?;
            let how = placement(&distribute)?.context("--emit placement needs --placement auto|FILE")?;
            let m = crate::load(&model)?;
            let opts = crate::ExecutorOptions {
                device: devices.first().cloned().context("no device to place on")?,
                naive: false,
                optimize: OptimizeOptions::default(),
                ptx_cache: crate::devices::ptx_cache_dir(),
                precision: Default::default(),
                memory_limit: None,
            };
            let (exec, _) = crate::Executor::placed(&m.graph, &opts, &devices, &how, 1)?;
            if let crate::Executor::Placed { placed, .. } = &exec {
                print!("{}", crate::runtime::placement::describe(placed, batch));
            }
            Ok(())
        }
        Command::Compile { model, emit, out, batch, target: None, .. } => compile(&model, emit, out.as_deref(), batch),
        Command::Bench {
            model,
            device,
            batch,
            warmup,
            runs,
            profile,
            json,
            report,
            seed,
            precision,
            memory_limit,
            verbose,
            distribute,
        } => {
            let mut notes = Notes::new(verbose);
            let precision = parse_precision(&precision)?;
            only_fit_is_multi_worker(&distribute)?;
            let spread = spread_devices(&distribute, device.as_deref(), &devs, &mut notes)?;
            let placement = placement(&distribute)?.map(|p| (p, distribute.micro_batches));
            let device = match spread.first() {
                Some(first) => first.clone(),
                None => pick_device(device.as_deref(), false, &devs, &mut notes)?,
            };
            check_precision_device(precision, device.device)?;
            let opts = crate::bench::BenchOptions {
                device,
                spread,
                placement,
                batch,
                warmup,
                runs,
                profile: profile || report.is_some(),
                seed,
                ptx_cache: crate::devices::ptx_cache_dir(),
                precision,
                memory_limit,
            };
            bench(&model, &opts, json, profile, report.as_deref(), &mut notes)
        }
        Command::Devices => {
            print!("{}", crate::devices::listing(&devs));
            Ok(())
        }
        Command::Fit { model, mut options, device, distribute } => {
            let mut notes = Notes::new(false);
            // Multi-worker: join the cluster first (MPI or TF_CONFIG), so that a build without
            // MPI says so.
            let mut cluster = match distribute.strategy {
                Some(Strategy::MultiWorker) => Some(crate::cluster::join()?),
                _ => None,
            };
            if cluster.as_ref().is_some_and(|c| c.rank != 0) {
                options.verbose = 0;
            }
            let mut spread = spread_devices(&distribute, device.as_deref(), &devs, &mut notes)?;
            if let Some(c) = &mut cluster {
                if spread.is_empty() {
                    spread = vec![match device.as_deref() {
                        Some(_) => pick_device(device.as_deref(), false, &devs, &mut notes)?,
                        None => c.default_device(&devs)?,
                    }];
                }
                let (worker, note) = c.connect_replicas(&spread)?;
                if let Some(n) = note {
                    notes.add(format!("note: {n}"));
                }
                options.worker = Some(worker);
            }
            let m = crate::load(&model)?;
            if let Some(how) = placement(&distribute)? {
                use crate::runtime::training::StageOn;
                let layers = crate::layer_placement(&m.graph, &spread, &how, options.memory_limit)?;
                let on = |d: &LogicalDevice| match d.cuda_options(crate::devices::ptx_cache_dir(), options.memory_limit)
                {
                    Some(c) => StageOn::Cuda(c),
                    None => StageOn::Cpu(d.session_options(options.memory_limit)),
                };
                let devices = spread.iter().map(|d| (d.device, on(d))).collect();
                options.placement = Some(crate::runtime::training::StepPlacement {
                    devices,
                    layers,
                    micro_batches: distribute.micro_batches,
                });
            } else {
                options.replicas = spread.clone();
            }
            // Like `run`: the requested device (the first replica), else the lowest visible GPU,
            // else the CPU.
            let device = match spread.first() {
                Some(first) => first.clone(),
                None => pick_device(device.as_deref(), false, &devs, &mut notes)?,
            };
            options.cuda = device.cuda_options(crate::devices::ptx_cache_dir(), options.memory_limit);
            options.pool = device.pool().cloned();
            options.device = Some(device.device);
            let h = crate::fit::fit(&m, &model, &options)?;
            if cluster.as_ref().is_some_and(|c| c.rank != 0) {
                return Ok(());
            }
            notes.flush();
            eprintln!(
                "wrote {} ({} steps, final loss {:.4})",
                options.output.display(),
                h.step_loss.len(),
                h.get("loss").and_then(|l| l.last()).copied().unwrap_or(f64::NAN)
            );
            Ok(())
        }
    }
}

fn parse_precision(p: &str) -> Result<crate::codegen::cuda::Precision> {
    crate::codegen::cuda::Precision::parse(p)
        .with_context(|| format!("unknown precision '{p}': one of fp32, tf32, bf16, fp16"))
}

/// tf32, bf16 and fp16 are the GPU's tensor-core formats; the CPU computes in float32.
fn check_precision_device(p: crate::codegen::cuda::Precision, device: Device) -> Result<()> {
    if p != crate::codegen::cuda::Precision::Fp32 && device.is_cpu() {
        bail!("--precision {} runs on a GPU's tensor cores; on the CPU kerasc computes in fp32", p.name());
    }
    Ok(())
}

/// Lines about how a command ran (the device, a fallback to the CPU): printed on stderr once the
/// command has succeeded, so that a failing command prints its error alone; at once with
/// `--verbose`.
struct Notes {
    lines: Vec<String>,
    verbose: bool,
}

impl Notes {
    fn new(verbose: bool) -> Notes {
        Notes { lines: Vec::new(), verbose }
    }

    fn add(&mut self, line: String) {
        if self.verbose {
            eprintln!("{line}");
        } else {
            self.lines.push(line);
        }
    }

    /// Prints what was held back (the command succeeded).
    fn flush(&mut self) {
        for l in self.lines.drain(..) {
            eprintln!("{l}");
        }
    }
}

/// The device to run on: the requested one, or the lowest visible GPU, else the CPU. With soft
/// placement an unusable GPU falls back to the CPU, with a warning.
fn pick_device(
    requested: Option<&str>,
    soft_placement: bool,
    devs: &LogicalDevices,
    notes: &mut Notes,
) -> Result<LogicalDevice> {
    preload_nvrtc();
    let device = match requested {
        Some(s) => Device::parse(s)?,
        None => devs.default_device(),
    };
    let device = match devs.get(device) {
        Ok(d) => d.clone(),
        Err(e) if soft_placement && !device.is_cpu() => {
            notes.add(format!("warning: {e}; soft placement: running on /CPU:0 instead"));
            devs.get(Device::CPU)?.clone()
        }
        Err(e) => return Err(e.into()),
    };
    notes.add(format!("running on {} ({})", device.device, crate::devices::describe(&device, devs)));
    Ok(device)
}

fn preload_nvrtc() {
    if let Some(dir) = std::env::var_os("KERASC_NVRTC_DIR") {
        crate::runtime::cuda::preload_nvrtc(&[PathBuf::from(dir)]);
    }
}

/// `--strategy multi-worker` trains; running and benchmarking spread over one process's devices.
fn only_fit_is_multi_worker(d: &Distribute) -> Result<()> {
    if d.strategy == Some(Strategy::MultiWorker) {
        bail!("--strategy multi-worker trains a model across MPI workers (kerasc fit); run, bench and compile spread over one process's devices with --strategy mirrored");
    }
    Ok(())
}

/// The devices of `--strategy mirrored` or `--placement` (none without either).
fn spread_devices(
    d: &Distribute,
    device: Option<&str>,
    devs: &LogicalDevices,
    notes: &mut Notes,
) -> Result<Vec<LogicalDevice>> {
    if !d.spread() {
        if d.devices.is_some() {
            bail!("--devices names the devices of --strategy mirrored or --placement; for one device use --device");
        }
        return Ok(Vec::new());
    }
    if d.strategy == Some(Strategy::MultiWorker) {
        // Each worker's own devices: those named, else none (the caller picks the best one).
        return match &d.devices {
            Some(_) if device.is_some() => {
                bail!("--device and --devices exclude each other: name a worker's devices with --devices")
            }
            Some(list) => {
                let chosen = devs.select(list)?;
                chosen.iter().map(|&x| Ok(devs.get(x)?.clone())).collect()
            }
            None => Ok(Vec::new()),
        };
    }
    if device.is_some() {
        bail!("--device and --strategy/--placement exclude each other: name the devices with --devices");
    }
    preload_nvrtc();
    let list = devs.select(d.devices.as_deref().unwrap_or("all"))?;
    let chosen: Vec<LogicalDevice> = list.iter().map(|&x| devs.get(x).cloned()).collect::<Result<_, _>>()?;
    let names: Vec<String> = list.iter().map(|x| x.to_string()).collect();
    let what = if d.strategy.is_some() { "mirrored over" } else { "placed on" };
    notes.add(format!("{what} {} device(s): {}", names.len(), names.join(", ")));
    Ok(chosen)
}

/// How a model is spread over devices: one device, mirrored replicas, or placed stages.
enum Spread {
    One,
    Mirrored(Vec<LogicalDevice>),
    Placed(Vec<LogicalDevice>, crate::Placement, usize),
}

impl Spread {
    fn of(d: &Distribute, devices: Vec<LogicalDevice>) -> Result<Spread> {
        Ok(match placement(d)? {
            Some(p) => Spread::Placed(devices, p, d.micro_batches),
            None if devices.is_empty() => Spread::One,
            None => Spread::Mirrored(devices),
        })
    }

    fn executor(
        &self,
        g: &ir::Graph,
        options: &crate::ExecutorOptions,
    ) -> std::result::Result<(crate::Executor, Option<crate::OptimizeReport>), crate::CompileError> {
        match self {
            Spread::One => crate::Executor::new(g, options),
            Spread::Mirrored(d) => crate::Executor::mirrored(g, options, d),
            Spread::Placed(d, p, k) => crate::Executor::placed(g, options, d, p, *k),
        }
    }
}

/// The placement `--placement` names (`auto` or a file).
fn placement(d: &Distribute) -> Result<Option<crate::Placement>> {
    match d.placement.as_deref() {
        None => Ok(None),
        Some("auto") => Ok(Some(crate::Placement::Auto)),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read the placement file {path}"))?;
            Ok(Some(crate::Placement::Layers(crate::runtime::placement::parse_layer_map(&text)?)))
        }
    }
}

fn inspect(path: &Path, as_json: bool) -> Result<()> {
    let model = crate::load(path)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&crate::report::json::inspect(&model))?);
    } else {
        print!("{}", crate::report::text::inspect(&model));
    }
    Ok(())
}

fn bench(
    path: &Path,
    opts: &BenchOptions,
    as_json: bool,
    profile: bool,
    report: Option<&Path>,
    notes: &mut Notes,
) -> Result<()> {
    let model = crate::load(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let r = crate::bench::bench(&name, &model.graph, opts)?;
    if let Some(p) = report {
        crate::write_atomic(p, crate::report::html(&r).as_bytes())?;
        notes.add(format!("wrote the report to {}", p.display()));
    }
    notes.flush();
    if as_json {
        println!("{}", crate::report::json::bench(&r));
    } else {
        print!("{}", crate::report::text::bench(&r, opts, profile));
    }
    Ok(())
}

fn run_model(
    path: &Path,
    inputs: &[PathBuf],
    outputs: &[PathBuf],
    options: &crate::ExecutorOptions,
    spread: &Spread,
    notes: &mut Notes,
) -> Result<()> {
    // An ONNX model's symbolic dimensions other than the batch take the inputs' sizes; a
    // broken model is reported before a broken input.
    let arrays = match inputs.iter().map(|p| npy::read_array(p)).collect::<Result<Vec<npy::Array>, _>>() {
        Ok(r) => r,
        Err(e) => {
            crate::load(path)?;
            return Err(e.into());
        }
    };
    // An ONNX model whose sizes or shape-deciding values come from its inputs compiles for them.
    let (model, bound) = crate::specialize::load_for(path, &arrays)?;
    let compiled_in: Vec<String> =
        bound.iter().zip(inputs).filter(|(b, _)| **b).map(|(_, p)| p.display().to_string()).collect();
    if !compiled_in.is_empty() {
        notes.add(format!("compiled for the values of {} (they decide shapes)", compiled_in.join(", ")));
    }
    let raw = crate::host::host_inputs(&model, arrays, inputs)?;
    let n_out = model.graph.outputs().len();
    if !outputs.is_empty() && outputs.len() != n_out {
        bail!("the model has {n_out} output(s) but {} --output path(s) were given", outputs.len());
    }
    let tensors = crate::host::as_input_dtypes(&model.graph, raw);
    let (exec, _) = spread.executor(&model.graph, options).context("cannot prepare the model")?;
    let results = exec.run(&tensors)?;
    let graph = exec.graph();
    for (t, p) in results.iter().zip(outputs) {
        npy::write(p, t)?;
        notes.add(format!("wrote {} {:?} to {}", t.dtype(), t.shape(), p.display()));
    }
    notes.flush();
    if outputs.is_empty() {
        for (i, t) in results.iter().enumerate() {
            let vals = t.to_f64_vec();
            let head: Vec<String> = vals.iter().take(8).map(|v| format!("{v:.6}")).collect();
            let more = if vals.len() > 8 { ", ..." } else { "" };
            println!(
                "output {i} ({}): shape {:?} {} [{}{}]",
                graph.value(graph.outputs()[i]).name,
                t.shape(),
                t.dtype(),
                head.join(", "),
                more
            );
        }
    }
    Ok(())
}

fn compile(path: &Path, emit: Emit, out: Option<&Path>, batch: usize) -> Result<()> {
    let model = crate::load(path)?;
    let opt = crate::optimizer::optimize(&model.graph, &OptimizeOptions::default()).context("optimizer failed")?;
    let plan = crate::optimizer::plan(&opt.graph, batch).context("memory planner failed")?;
    let ir_text = ir::render::to_text(&model.graph);
    let opt_text = format!("{}\n{}", crate::report::text::optimizer(&opt.report), ir::render::to_text(&opt.graph));
    let plan_txt = crate::report::text::plan(&opt.graph, &plan);
    let before = ir::render::to_dot(&model.graph);
    let after = ir::render::to_dot(&opt.graph);
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, text) in [
                ("ir.txt", &ir_text),
                ("optimized.txt", &opt_text),
                ("plan.txt", &plan_txt),
                ("before.dot", &before),
                ("after.dot", &after),
            ] {
                crate::write_atomic(&dir.join(name), text.as_bytes())?;
            }
            eprintln!("wrote ir.txt, optimized.txt, plan.txt, before.dot, after.dot to {}", dir.display());
        }
        None => match emit {
            Emit::Ir => print!("{ir_text}"),
            Emit::Optimized => print!("{opt_text}"),
            Emit::Plan => print!("{plan_txt}"),
            Emit::Dot => print!("{before}{after}"),
            Emit::Placement => bail!("--emit placement needs --placement auto|FILE"),
        },
    }
    Ok(())
}

/// The architectures NVRTC is asked for (it takes a `'static` name).
fn arch_name(arch: &str) -> Result<&'static str> {
    const ARCHS: [&str; 8] = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"];
    ARCHS
        .iter()
        .copied()
        .find(|a| *a == arch)
        .with_context(|| format!("unknown architecture '{arch}'; one of {}", ARCHS.join(", ")))
}

fn compile_cuda(
    path: &Path,
    out: &Path,
    batch: usize,
    arch: &str,
    precision: crate::codegen::cuda::Precision,
) -> Result<()> {
    let arch = arch_name(arch)?;
    let model = crate::load(path)?;
    let opt = crate::optimizer::optimize(&model.graph, &OptimizeOptions::default()).context("optimizer failed")?;
    let plan = crate::optimizer::plan(&opt.graph, batch.max(1)).context("memory planner failed")?;
    let steps = crate::codegen::cuda::emit_plan_with(&opt.graph, &plan, precision)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let dirs = crate::runtime::cuda::default_nvrtc_dirs();
    let nvrtc = crate::runtime::cuda::nvrtc_version(&dirs);
    let mut manifest = Vec::new();
    let mut n = 0;
    for step in &steps {
        let node = &opt.graph.nodes()[step.node.0];
        for k in &step.kernels {
            crate::write_atomic(&out.join(format!("{}.cu", k.name)), k.source.as_bytes())?;
            if nvrtc.is_ok() {
                let ptx = crate::runtime::cuda::compile_ptx(&k.name, &k.source, arch, &dirs)?;
                crate::write_atomic(&out.join(format!("{}.ptx", k.name)), ptx.as_bytes())?;
            }
            manifest.push(json!({
                "kernel": k.name,
                "node": node.name,
                "op": node.op.name(),
                "grid": k.launch.grid,
                "block": k.launch.block,
                "args": k.args.iter().map(|a| json!({"value": opt.graph.value(a.value).name, "output": a.output})).collect::<Vec<_>>(),
            }));
            n += 1;
        }
    }
    let manifest =
        json!({"model": path.display().to_string(), "batch": batch.max(1), "arch": arch, "kernels": manifest});
    crate::write_atomic(&out.join("kernels.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    match nvrtc {
        Ok((a, b)) => eprintln!(
            "wrote {n} kernels (.cu and .ptx for {arch}, NVRTC {a}.{b}) and kernels.json to {}",
            out.display()
        ),
        Err(why) => eprintln!("wrote {n} kernels (.cu only: {why}) and kernels.json to {}", out.display()),
    }
    Ok(())
}

/// A count that must be at least 1.
fn parse_positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

//! The `kerasc` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kerasc::{ir, npy, Device, Session, SessionOptions};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "kerasc", version, about = "Compile, run and inspect saved Keras models outside Python")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
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
    },
    /// List the devices plans can run on
    Devices,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json } => inspect(&model, json),
        Command::Run { model, inputs, outputs, device } => run_model(&model, &inputs, &outputs, device.as_deref()),
        Command::Devices => {
            for d in kerasc::available_devices() {
                println!("{}  {}  ({} threads)", d.device, d.name, d.threads);
            }
            println!("no GPU: this build has no CUDA backend yet");
            Ok(())
        }
    }
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: usize) -> String {
    let b = n as f64;
    if b < 1024.0 {
        format!("{b:.2} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

fn inspect(path: &Path, as_json: bool) -> Result<()> {
    let model = kerasc::load(path)?;
    let info = &model.info;
    if as_json {
        let layers: Vec<_> = info
            .layers
            .iter()
            .map(|l| {
                json!({
                    "name": l.name, "class": l.class,
                    "output_shape": if l.output_shapes.len() == 1 { json!(l.output_shapes[0]) } else { json!(l.output_shapes) },
                    "params": l.params, "trainable_params": l.trainable_params, "connected_to": l.connected_to,
                })
            })
            .collect();
        let g = &model.graph;
        let io = |ids: &[ir::ValueId]| -> Vec<_> {
            ids.iter().map(|&v| json!({"name": g.value(v).name, "shape": g.value(v).ty.shape.to_string(), "dtype": g.value(v).ty.dtype.name()})).collect()
        };
        let out = json!({
            "model": info.name, "class": info.model_class, "format": info.format.describe(),
            "keras_version": info.keras_version, "backend": info.backend,
            "layers": layers, "total_params": info.total_params, "trainable_params": info.trainable_params,
            "non_trainable_params": info.non_trainable_params(),
            "inputs": io(g.inputs()), "outputs": io(g.outputs()),
            "training_config": info.training_config, "ir_nodes": g.nodes().len(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Model: \"{}\"  ({}, {}, Keras {})",
        info.name,
        info.model_class,
        info.format.describe(),
        info.keras_version
    );
    let w0 = info.layers.iter().map(|l| l.name.len() + l.class.len() + 3).max().unwrap_or(10).clamp(14, 60);
    let w1 = info.layers.iter().flat_map(|l| l.output_shapes.iter().map(String::len)).max().unwrap_or(12).max(12);
    let line = |c: char| c.to_string().repeat(w0 + w1 + 18);
    println!("{}", line('━'));
    println!("{:<w0$}  {:<w1$}  {:>12}", "Layer (type)", "Output Shape", "Param #");
    println!("{}", line('━'));
    for l in &info.layers {
        let mut label = format!("{} ({})", l.name, l.class);
        if label.len() > w0 {
            label = format!("{}…", &label.chars().take(w0 - 1).collect::<String>());
        }
        let first = l.output_shapes.first().cloned().unwrap_or_default();
        println!("{:<w0$}  {:<w1$}  {:>12}", label, first, group(l.params));
        for s in l.output_shapes.iter().skip(1) {
            println!("{:<w0$}  {:<w1$}", "", s);
        }
    }
    println!("{}", line('━'));
    let nt = info.non_trainable_params();
    println!(" Total params: {} ({})", group(info.total_params), human_bytes(info.total_params * 4));
    println!(" Trainable params: {} ({})", group(info.trainable_params), human_bytes(info.trainable_params * 4));
    println!(" Non-trainable params: {} ({})", group(nt), human_bytes(nt * 4));
    Ok(())
}

fn pick_device(requested: Option<&str>) -> Result<Device> {
    let device = match requested {
        Some(s) => Device::parse(s)?,
        None => Device::default_device(),
    };
    let device = device.ensure_available()?;
    let why = if requested.is_some() { "as requested" } else { "no GPU backend in this build" };
    eprintln!("running on {device} ({why})");
    Ok(device)
}

fn run_model(path: &Path, inputs: &[PathBuf], outputs: &[PathBuf], device: Option<&str>) -> Result<()> {
    let model = kerasc::load(path)?;
    let n_out = model.graph.outputs().len();
    if !outputs.is_empty() && outputs.len() != n_out {
        bail!("the model has {n_out} output(s) but {} --output path(s) were given", outputs.len());
    }
    let mut tensors = Vec::new();
    for (i, p) in inputs.iter().enumerate() {
        let t = npy::read(p)?;
        let want = model.graph.value(model.graph.inputs().get(i).copied().unwrap_or(ir::ValueId(0))).ty.dtype;
        // Token ids may come as int32 or int64, and float inputs as float64: convert like Keras.
        let t = if t.dtype() != want && (t.dtype().is_float() == want.is_float()) { t.cast(want) } else { t };
        tensors.push(t);
    }
    let device = pick_device(device)?;
    let session =
        Session::new(model.graph, SessionOptions { device: Some(device) }).context("cannot prepare the model")?;
    let results = session.run(&tensors)?;
    if outputs.is_empty() {
        for (i, t) in results.iter().enumerate() {
            let vals = t.to_f64_vec();
            let head: Vec<String> = vals.iter().take(8).map(|v| format!("{v:.6}")).collect();
            let more = if vals.len() > 8 { ", ..." } else { "" };
            println!(
                "output {i} ({}): shape {:?} {} [{}{}]",
                session.graph().value(session.graph().outputs()[i]).name,
                t.shape(),
                t.dtype(),
                head.join(", "),
                more
            );
        }
    } else {
        for (t, p) in results.iter().zip(outputs) {
            npy::write(p, t)?;
            eprintln!("wrote {} {:?} to {}", t.dtype(), t.shape(), p.display());
        }
    }
    Ok(())
}

//! The text the commands print: the layer table of `inspect` (like Keras's `model.summary()`),
//! the memory plan and optimizer report of `compile`, and `bench`'s side-by-side table.

use super::{group, human_bytes, top_ops};
use crate::bench::{BenchOptions, BenchResult};
use crate::codegen::cuda::Precision;
use crate::ir::{Graph, MemoryPlan, Placement};
use crate::runtime::memory::human_bytes as iec;
use crate::{Model, ModelFormat, OptimizeReport};
use std::fmt::Write;

/// The layer table `inspect` prints, like Keras's `model.summary()`.
pub fn inspect(model: &Model) -> String {
    let info = &model.info;
    let mut s = String::new();
    // For ONNX the version field holds the opset and the producer.
    let version = if info.format == ModelFormat::Onnx {
        info.keras_version.clone()
    } else {
        format!("Keras {}", info.keras_version)
    };
    let _ = writeln!(s, "Model: \"{}\"  ({}, {}, {version})", info.name, info.model_class, info.format.describe());
    let w0 = info.layers.iter().map(|l| l.name.len() + l.class.len() + 3).max().unwrap_or(10).clamp(14, 60);
    let w1 = info.layers.iter().flat_map(|l| l.output_shapes.iter().map(String::len)).max().unwrap_or(12).max(12);
    let line = |c: char| c.to_string().repeat(w0 + w1 + 18);
    let _ = writeln!(s, "{}", line('━'));
    let _ = writeln!(s, "{:<w0$}  {:<w1$}  {:>12}", "Layer (type)", "Output Shape", "Param #");
    let _ = writeln!(s, "{}", line('━'));
    for l in &info.layers {
        let mut label = format!("{} ({})", l.name, l.class);
        if label.len() > w0 {
            label = format!("{}…", &label.chars().take(w0 - 1).collect::<String>());
        }
        let first = l.output_shapes.first().cloned().unwrap_or_default();
        let _ = writeln!(s, "{:<w0$}  {:<w1$}  {:>12}", label, first, group(l.params));
        for o in l.output_shapes.iter().skip(1) {
            let _ = writeln!(s, "{:<w0$}  {:<w1$}", "", o);
        }
    }
    let _ = writeln!(s, "{}", line('━'));
    let nt = info.non_trainable_params();
    let _ = writeln!(s, " Total params: {} ({})", group(info.total_params), human_bytes(info.total_params * 4));
    let _ =
        writeln!(s, " Trainable params: {} ({})", group(info.trainable_params), human_bytes(info.trainable_params * 4));
    let _ = writeln!(s, " Non-trainable params: {} ({})", group(nt), human_bytes(nt * 4));
    s
}

/// The memory plan as `compile --emit plan` prints it: the arena's size against the naive layout
/// and the lower bound, then each step's output with its offset.
pub fn plan(g: &Graph, plan: &MemoryPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "memory plan at batch {} ({})", plan.batch, plan.heuristic);
    let _ = writeln!(
        s,
        "arena {} · one buffer per tensor {} · lower bound {} · {} in place · {} reshapes aliased",
        iec(plan.arena_bytes),
        iec(plan.naive_bytes),
        iec(plan.lower_bound_bytes),
        plan.in_place.len(),
        plan.aliases
    );
    let _ = writeln!(s, "{:>4}  {:<28} {:<16} {:>12} {:>12}", "step", "node", "op", "offset", "bytes");
    for (step, nid) in plan.order.iter().enumerate() {
        let node = &g.nodes()[nid.0];
        for o in &node.outputs {
            let (off, bytes) = match plan.placements[o.0] {
                Placement::Arena { offset, bytes } => (offset.to_string(), bytes.to_string()),
                other => (format!("{other:?}"), String::new()),
            };
            let mark = if plan.in_place.contains(nid) { " (in place)" } else { "" };
            let _ = writeln!(s, "{step:>4}  {:<28} {:<16} {off:>12} {bytes:>12}{mark}", node.name, node.op.name());
        }
    }
    s
}

/// What the optimizer did: each pass's node counts, time and rewrites, and the e-graph's
/// statistics.
pub fn optimizer(r: &OptimizeReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "optimizer: {:.3} s", r.seconds);
    for p in &r.passes {
        let changes: Vec<String> = p.changes.iter().filter(|(_, n)| *n > 0).map(|(w, n)| format!("{w} {n}")).collect();
        let _ = writeln!(
            s,
            "  {:<18} {:>4} -> {:<4} nodes  {:>7.1} ms  {}",
            p.name,
            p.nodes_before,
            p.nodes_after,
            p.seconds * 1e3,
            changes.join(", ")
        );
    }
    let e = &r.egraph;
    let _ = writeln!(
        s,
        "  e-graph: {} iterations, {} nodes, {} classes, stopped: {}; cost {:.0} -> {:.0}",
        e.iterations, e.nodes, e.classes, e.stop_reason, e.cost_before, e.cost_after
    );
    s
}

/// `bench`'s table: both plans' times and kernel counts, the speedup, memory, the outputs'
/// difference, the optimizer's report and (with `profile`) the most expensive ops.
pub fn bench(r: &BenchResult, opts: &BenchOptions, profile: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}  on {}  batch {}  ({} warm-up, {} timed runs)",
        r.model, r.device, r.batch, opts.warmup, opts.runs
    );
    let _ = writeln!(s, "              median ms    min ms   kernels");
    let _ = writeln!(s, "  naive      {:>10.3} {:>9.3} {:>9}", r.naive.median_ms, r.naive.min_ms, r.naive.kernels);
    let _ = writeln!(
        s,
        "  optimized  {:>10.3} {:>9.3} {:>9}",
        r.optimized.median_ms, r.optimized.min_ms, r.optimized.kernels
    );
    let _ = writeln!(s, "  speedup    {:>10.2}x", r.speedup());
    let _ = writeln!(
        s,
        "  memory     naive {} · arena {} · lower bound {} (arena/bound {:.2})",
        iec(r.naive_bytes),
        iec(r.arena_bytes),
        iec(r.lower_bound_bytes),
        r.arena_bytes as f64 / r.lower_bound_bytes.max(1) as f64
    );
    if r.precision == Precision::Fp32 {
        let _ = writeln!(s, "  max |optimized - naive| = {:.3e}", r.max_abs_diff);
    } else {
        let _ = writeln!(
            s,
            "  precision {} (tensor cores) vs fp32 naive: max |diff| = {:.3e}, relative L2 = {:.3e}",
            r.precision.name(),
            r.max_abs_diff,
            r.rel_l2_diff
        );
    }
    if let Some(m) = &r.spread {
        let _ = writeln!(
            s,
            "  {} over {} ({} devices): optimized {:.3} ms median, {:.3} min; {:.0} samples/s against {:.0} on one device ({:.2}x); max |spread - one| = {:.3e}",
            m.kind,
            m.devices.join(", "),
            m.devices.len(),
            m.timing.median_ms,
            m.timing.min_ms,
            m.throughput(r.batch),
            r.throughput(),
            m.throughput(r.batch) / r.throughput().max(1e-12),
            m.max_abs_diff
        );
    }
    let per_device: Vec<String> = r.device_bytes.iter().map(|(d, b)| format!("{d} {}", iec(*b))).collect();
    let _ = writeln!(s, "  peak memory per device (weights + arena): {}", per_device.join(" · "));
    s.push_str(&optimizer(&r.optimizer));
    if profile {
        for (label, t) in [("naive", &r.naive), ("optimized", &r.optimized)] {
            let _ = writeln!(s, "  top ops, {label}:");
            for (n, o, ms) in top_ops(&t.profile) {
                let _ = writeln!(s, "    {ms:>9.3} ms  {o:<16} {n}");
            }
        }
    }
    s
}

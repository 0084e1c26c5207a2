//! The JSON objects `inspect --json` and `bench --json` print.

use super::top_ops;
use crate::bench::{BenchResult, Timing};
use crate::ir::ValueId;
use crate::Model;
use serde_json::{json, Value};

/// What `inspect --json` prints: the layer table, parameter counts, inputs and outputs, the
/// training config.
pub fn inspect(model: &Model) -> Value {
    let info = &model.info;
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
    let io = |ids: &[ValueId]| -> Vec<_> {
        ids.iter().map(|&v| json!({"name": g.value(v).name, "shape": g.value(v).ty.shape.to_string(), "dtype": g.value(v).ty.dtype.name()})).collect()
    };
    json!({
        "model": info.name, "class": info.model_class, "format": info.format.describe(),
        "keras_version": info.keras_version, "backend": info.backend,
        "layers": layers, "total_params": info.total_params, "trainable_params": info.trainable_params,
        "non_trainable_params": info.non_trainable_params(),
        "inputs": io(g.inputs()), "outputs": io(g.outputs()),
        "training_config": info.training_config, "ir_nodes": g.nodes().len(),
    })
}

/// What `bench --json` prints: both plans' timings and top ops, memory, the outputs'
/// difference and the optimizer's statistics.
pub fn bench(r: &BenchResult) -> Value {
    let timing = |t: &Timing| {
        json!({
            "median_ms": t.median_ms,
            "min_ms": t.min_ms,
            "mean_ms": t.mean_ms,
            "kernels": t.kernels,
            "top_ops": top_ops(&t.profile).iter().map(|(n, o, ms)| json!({"node": n, "op": o, "ms": ms})).collect::<Vec<_>>(),
        })
    };
    let e = &r.optimizer.egraph;
    let rules: serde_json::Map<String, Value> = r
        .optimizer
        .passes
        .iter()
        .flat_map(|p| p.changes.iter().map(move |(w, n)| (format!("{}/{}", p.name, w), json!(n))))
        .collect();
    json!({
        "model": r.model,
        "device": r.device,
        "batch": r.batch,
        "naive": timing(&r.naive),
        "optimized": timing(&r.optimized),
        "speedup": r.speedup(),
        "memory": {
            "naive_bytes": r.naive_bytes,
            "arena_bytes": r.arena_bytes,
            "lower_bound_bytes": r.lower_bound_bytes,
        },
        "max_abs_diff": r.max_abs_diff,
        "rel_l2_diff": r.rel_l2_diff,
        "throughput": r.throughput(),
        "spread": r.spread.as_ref().map(|m| json!({
            "kind": m.kind,
            "devices": m.devices,
            "timing": timing(&m.timing),
            "throughput": m.throughput(r.batch),
            "scaling": m.throughput(r.batch) / r.throughput().max(1e-12),
            "max_abs_diff": m.max_abs_diff,
        })),
        "device_peak_bytes": r.device_bytes.iter().map(|(d, b)| json!({"device": d, "bytes": b})).collect::<Vec<_>>(),
        "precision": r.precision.name(),
        "optimizer": {
            "seconds": r.optimizer.seconds,
            "stop_reason": e.stop_reason,
            "iterations": e.iterations,
            "egraph_nodes": e.nodes,
            "egraph_classes": e.classes,
            "cost_before": e.cost_before,
            "cost_after": e.cost_after,
            "changes": rules,
        },
    })
}

//! How much memory a run needs, against what it may use: a run whose tensors would not fit is
//! refused before anything is allocated, naming both figures.

use crate::RuntimeError;
use ir::{Graph, MemoryPlan, Placement};

/// `n` bytes in B, KiB, MiB or GiB.
pub fn human_bytes(n: usize) -> String {
    let b = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

/// What this machine has available now (`MemAvailable` of `/proc/meminfo`), where it says.
pub fn available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuses a run that needs `needed` bytes when more than `limit` (the user's limit) or, with
/// none, than `fallback` (the machine's or device's memory, described by `what`) allows.
pub fn check(needed: usize, limit: Option<usize>, fallback: Option<(usize, &str)>) -> Result<(), RuntimeError> {
    let (cap, what) = match (limit, fallback) {
        (Some(l), _) => (l, "the memory limit".to_string()),
        (None, Some((f, what))) => (f, what.to_string()),
        (None, None) => return Ok(()),
    };
    if needed > cap {
        return Err(RuntimeError::Memory {
            needed: human_bytes(needed),
            available: format!("{} ({what})", human_bytes(cap)),
        });
    }
    Ok(())
}

/// The bytes of a value of concrete shape `shape` and the value's dtype.
fn bytes_of(g: &Graph, v: usize, shape: &[usize]) -> usize {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
    n.saturating_mul(g.values()[v].ty.dtype.size())
}

/// The bytes a planned run allocates: its arena and the intermediates that live outside it.
pub fn planned_bytes(g: &Graph, plan: &MemoryPlan) -> usize {
    let separate = plan
        .placements
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Placement::Separate))
        .map(|(v, _)| plan.shapes.get(v).map_or(0, |s| bytes_of(g, v, s)))
        .fold(0usize, usize::saturating_add);
    plan.arena_bytes.saturating_add(separate)
}

/// The most bytes the naive executor holds at once: node by node in the graph's order, each
/// output allocated and each intermediate freed after its last reader.
pub fn naive_peak_bytes(g: &Graph, shapes: &[Vec<usize>]) -> usize {
    let mut last_use = vec![0usize; g.values().len()];
    for (i, node) in g.nodes().iter().enumerate() {
        for v in &node.inputs {
            last_use[v.0] = i;
        }
    }
    for v in g.outputs() {
        last_use[v.0] = usize::MAX;
    }
    let (mut live, mut peak) = (0usize, 0usize);
    let mut freed = vec![false; g.values().len()];
    for (i, node) in g.nodes().iter().enumerate() {
        for o in &node.outputs {
            live = live.saturating_add(shapes.get(o.0).map_or(0, |s| bytes_of(g, o.0, s)));
        }
        peak = peak.max(live);
        for v in &node.inputs {
            if last_use[v.0] == i && !freed[v.0] && matches!(g.value(*v).producer, ir::Producer::Node(..)) {
                freed[v.0] = true;
                live = live.saturating_sub(shapes.get(v.0).map_or(0, |s| bytes_of(g, v.0, s)));
            }
        }
    }
    peak
}

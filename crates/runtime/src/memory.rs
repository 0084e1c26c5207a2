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

/// A size in bytes: a number, optionally with KiB, MiB, GiB (powers of 1024) or KB, MB, GB
/// (powers of 1000).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        other => return Err(format!("unknown unit '{other}' (use bytes, KiB, MiB, GiB, KB, MB or GB)")),
    };
    let v: f64 = num.parse().map_err(|_| format!("'{s}' is not a size"))?;
    let bytes = v * scale as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < usize::MAX as f64) {
        return Err(format!("'{s}' is not a usable size"));
    }
    Ok(bytes as usize)
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

/// The bytes of the graph's constants (its weights).
pub fn weight_bytes(g: &Graph) -> usize {
    g.constants().values().map(|t| t.len().saturating_mul(t.dtype().size())).fold(0usize, usize::saturating_add)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_both_unit_systems_and_refuse_nonsense() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("3 mb"), Ok(3_000_000));
        for bad in ["0", "-1MiB", "abc", "1 parsec", "1e400", "NaN"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_counts_print_in_iec_units() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
    }

    #[test]
    fn the_limit_wins_over_the_machine_and_names_both_figures() {
        assert!(check(100, Some(100), Some((10, "machine"))).is_ok());
        let e = check(2048, Some(1024), None).unwrap_err().to_string();
        assert!(e.contains("2.0 KiB") && e.contains("1.0 KiB") && e.contains("memory limit"), "{e}");
        let e = check(4096, None, Some((1024, "available on this machine"))).unwrap_err().to_string();
        assert!(e.contains("available on this machine"), "{e}");
        assert!(check(usize::MAX, None, None).is_ok());
    }
}

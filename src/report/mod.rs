//! How kerasc shows its results: the text and JSON its commands print (`text`, `json`) and the
//! self-contained HTML reports of `bench --report` (`html`) and `fit --report` (`fit_html`).

pub mod fit_html;
pub mod html;
pub mod json;
pub mod text;

pub use html::html;

/// `1234567` as `1,234,567`.
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

/// A byte count in B, KB, MB or GB (powers of 1024), as Keras's summary prints it.
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

/// A profile's rows `(node, op, time)` summed per op: `op → (total time, nodes)`.
pub(crate) fn by_kind(rows: &[(String, String, f64)]) -> std::collections::BTreeMap<String, (f64, usize)> {
    let mut m = std::collections::BTreeMap::new();
    for (_, op, t) in rows {
        let e = m.entry(op.clone()).or_insert((0.0, 0));
        *e = (e.0 + t, e.1 + 1);
    }
    m
}

/// The ten most expensive rows of a profile `(node, op, ms)`.
pub(crate) fn top_ops(rows: &[(String, String, f64)]) -> Vec<&(String, String, f64)> {
    let mut v: Vec<&(String, String, f64)> = rows.iter().collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v.truncate(10);
    v
}

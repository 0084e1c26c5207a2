//! The self-contained HTML report of `kerasc bench --report`: the graph before and after as SVG
//! (laid out here, no Graphviz needed) and bar charts of time per op kind, naive vs optimized.

use crate::bench::BenchResult;
use crate::ir::{Graph, Producer};
use crate::runtime::memory::human_bytes;
use std::collections::BTreeMap;
use std::fmt::Write;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Width in pixels of `text` at the graph's 13-pixel font (an estimate: 7.4 px a character).
fn text_width(text: &str) -> usize {
    text.chars().count() * 74 / 10
}

/// The graph as an SVG: one box per node in layers by depth, inputs on top, edges as lines.
/// Every box is as wide as its longest label (op and node name, output type), so nothing is
/// clipped; the SVG scales to the width of its container (`viewBox`).
pub fn graph_svg(g: &Graph, color: &str) -> String {
    const H: usize = 48;
    const GAP_X: usize = 24;
    const GAP_Y: usize = 30;
    let mut layer_of_value: Vec<usize> = vec![0; g.values().len()];
    let mut layers: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut pos_of_value: Vec<Option<(usize, usize)>> = vec![None; g.values().len()];
    for &v in g.inputs() {
        pos_of_value[v.0] = Some((0, layers[0].len()));
        layers[0].push((g.value(v).name.clone(), g.value(v).ty.to_string()));
    }
    let mut node_pos = Vec::new();
    for n in g.nodes() {
        let depth = n
            .inputs
            .iter()
            .filter(|v| !matches!(g.value(**v).producer, Producer::Constant))
            .map(|v| layer_of_value[v.0] + 1)
            .max()
            .unwrap_or(1);
        if layers.len() <= depth {
            layers.resize(depth + 1, Vec::new());
        }
        let p = (depth, layers[depth].len());
        let ty = n.outputs.first().map(|&o| g.value(o).ty.to_string()).unwrap_or_default();
        layers[depth].push((format!("{} · {}", n.op.name(), n.name), ty));
        for &o in &n.outputs {
            layer_of_value[o.0] = depth;
            pos_of_value[o.0] = Some(p);
        }
        node_pos.push(p);
    }
    // One width for every box (the widest label), so the columns line up.
    let w = layers.iter().flatten().map(|(l, t)| text_width(l).max(text_width(t))).max().unwrap_or(100).clamp(120, 460)
        + 16;
    let width = layers.iter().map(|l| l.len()).max().unwrap_or(1) * (w + GAP_X) + GAP_X;
    let height = layers.len() * (H + GAP_Y) + GAP_Y;
    let xy = |(d, i): (usize, usize)| (GAP_X + i * (w + GAP_X), GAP_Y + d * (H + GAP_Y));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"100%\" style=\"max-width:{width}px\" font-family=\"Helvetica,Arial,sans-serif\" font-size=\"13\">"
    );
    for (n, &p) in g.nodes().iter().zip(&node_pos) {
        let (x2, y2) = xy(p);
        for v in &n.inputs {
            if let Some(q) = pos_of_value[v.0] {
                if matches!(g.value(*v).producer, Producer::Constant) {
                    continue;
                }
                let (x1, y1) = xy(q);
                let _ = write!(
                    s,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-width=\"1.2\"/>",
                    x1 + w / 2,
                    y1 + H,
                    x2 + w / 2,
                    y2
                );
            }
        }
    }
    for (d, layer) in layers.iter().enumerate() {
        for (i, (label, ty)) in layer.iter().enumerate() {
            let (x, y) = xy((d, i));
            let fill = if d == 0 { "#eee" } else { color };
            let short: String = label.chars().take(60).collect();
            let _ = write!(
                s,
                "<g><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{H}\" rx=\"5\" fill=\"{fill}\" stroke=\"#555\"/><text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" fill=\"#444\">{}</text></g>",
                esc(label),
                x + 8,
                y + 19,
                esc(&short),
                x + 8,
                y + 38,
                esc(ty)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars of total milliseconds per op kind, naive and optimized side by side.
pub fn bars_svg(naive: &[(String, String, f64)], optimized: &[(String, String, f64)]) -> String {
    let total =
        |rows| -> BTreeMap<String, f64> { super::by_kind(rows).into_iter().map(|(k, (t, _))| (k, t)).collect() };
    kind_bars_svg(&[("naive", "#d9822b", total(naive)), ("optimized", "#2b7bd9", total(optimized))])
}

/// Horizontal bars of milliseconds per op kind, one bar per series `(label, colour, ms by
/// kind)` in each row, the rows by their largest value.
pub fn kind_bars_svg(series: &[(&str, &str, BTreeMap<String, f64>)]) -> String {
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let mut kinds: Vec<String> = series.iter().flat_map(|(_, _, m)| m.keys().cloned()).collect();
    kinds.sort();
    kinds.dedup();
    let largest = |k: &str| series.iter().map(|(_, _, m)| get(m, k)).fold(0.0, f64::max);
    kinds.sort_by(|x, y| largest(y).total_cmp(&largest(x)));
    let max = series.iter().flat_map(|(_, _, m)| m.values()).copied().fold(1e-9, f64::max);
    let label_w = kinds.iter().map(|k| text_width(k)).max().unwrap_or(100).max(120) as f64 + 16.0;
    let bar_h = 12.0;
    let (bar_w, row_h) = (560.0, bar_h * series.len() as f64 + 8.0);
    let height = 40.0 + kinds.len() as f64 * row_h;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"Helvetica,Arial,sans-serif\" font-size=\"12\">",
        label_w + bar_w + 120.0
    );
    let mut x = label_w;
    for (label, color, _) in series {
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"6\" width=\"12\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"15\">{}</text>",
            x + 16.0,
            esc(label)
        );
        x += 32.0 + text_width(label) as f64;
    }
    for (i, k) in kinds.iter().enumerate() {
        let y = 30.0 + i as f64 * row_h;
        let _ = write!(s, "<text x=\"0\" y=\"{}\">{}</text>", y + bar_h * series.len() as f64 / 2.0 + 4.0, esc(k));
        for (j, (_, c, m)) in series.iter().enumerate() {
            let v = get(m, k);
            let w = (v / max * bar_w).max(if v > 0.0 { 1.0 } else { 0.0 });
            let yy = y + j as f64 * bar_h;
            let _ = write!(
                s,
                "<rect x=\"{label_w}\" y=\"{yy}\" width=\"{w:.1}\" height=\"{}\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{}\">{v:.3} ms</text>",
                bar_h - 1.0,
                label_w + w + 4.0,
                yy + 9.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A line chart of `series` `(label, colour, values)` against their index (starting at
/// `first_x`), with the y range, the x axis named `x_label`, and a legend.
pub fn line_svg(title: &str, x_label: &str, first_x: usize, series: &[(&str, &str, &[f64])]) -> String {
    let (w, h, left, top, bottom) = (640.0, 240.0, 64.0, 28.0, 36.0);
    let finite = || series.iter().flat_map(|(_, _, v)| v.iter().copied()).filter(|v| v.is_finite());
    let (mut lo, mut hi) = (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let n = series.iter().map(|(_, _, v)| v.len()).max().unwrap_or(0).max(2);
    let px = |i: usize| left + (w - left - 16.0) * i as f64 / (n - 1) as f64;
    let py = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"Helvetica,Arial,sans-serif\" font-size=\"12\"><text x=\"{left}\" y=\"16\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    let (y0, y1, x1) = (py(lo), py(hi), px(n - 1));
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/><line x1=\"{left}\" y1=\"{y0}\" x2=\"{left}\" y2=\"{y1}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{left}\" y=\"{}\">{first_x}</text><text x=\"{x1}\" y=\"{}\" text-anchor=\"end\">{} ({})</text>",
        left - 4.0,
        y0 + 4.0,
        fmt_value(lo),
        left - 4.0,
        y1 + 4.0,
        fmt_value(hi),
        y0 + 16.0,
        y0 + 16.0,
        esc(x_label),
        first_x + n - 1
    );
    let mut lx = left + text_width(title) as f64 + 24.0;
    for (label, color, vals) in series {
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| format!("{:.1},{:.1}", px(i), py(v)))
            .collect();
        let _ =
            write!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>", pts.join(" "));
        if vals.len() <= 60 {
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(s, "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>");
            }
        }
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"6\" width=\"12\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"15\">{}</text>",
            lx + 16.0,
            esc(label)
        );
        lx += 32.0 + text_width(label) as f64;
    }
    s.push_str("</svg>");
    s
}

/// A value for an axis label: four significant digits, or scientific when very small or large.
fn fmt_value(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The whole report page.
pub fn html(r: &BenchResult) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>kerasc bench: {m}</title><style>body{{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f4f4f4}}.graphs{{display:grid;grid-template-columns:1fr 1fr;gap:24px;align-items:start}}.graph{{overflow:auto;max-height:1400px;border:1px solid #ddd;padding:4px}}</style></head><body>",
        m = esc(&r.model)
    );
    let _ = write!(
        s,
        "<h1>kerasc bench: {}</h1><p>device {} · batch {} · optimizer {:.3} s, e-graph stopped: {}</p>",
        esc(&r.model),
        esc(&r.device),
        r.batch,
        r.optimizer.seconds,
        esc(&r.optimizer.egraph.stop_reason)
    );
    let _ = write!(
        s,
        "<table><tr><th></th><th>median ms</th><th>min ms</th><th>kernels</th></tr><tr><th>naive</th><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr><tr><th>optimized</th><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr></table>",
        r.naive.median_ms, r.naive.min_ms, r.naive.kernels, r.optimized.median_ms, r.optimized.min_ms, r.optimized.kernels
    );
    let _ = write!(
        s,
        "<p><b>speedup {:.2}×</b> · memory: naive {}, arena {}, lower bound {} · max |diff| {:.3e}</p>",
        r.speedup(),
        human_bytes(r.naive_bytes),
        human_bytes(r.arena_bytes),
        human_bytes(r.lower_bound_bytes),
        r.max_abs_diff
    );
    s.push_str("<h2>Time per op kind</h2>");
    s.push_str(&bars_svg(&r.naive.profile, &r.optimized.profile));
    let _ = write!(
        s,
        "<h2>Graph</h2><div class=\"graphs\"><div><h3>before ({} nodes)</h3><div class=\"graph\">{}</div></div><div><h3>after ({} nodes)</h3><div class=\"graph\">{}</div></div></div>",
        r.naive_graph.nodes().len(),
        graph_svg(&r.naive_graph, "#fbe3c8"),
        r.optimized_graph.nodes().len(),
        graph_svg(&r.optimized_graph, "#cfe2fb")
    );
    s.push_str("</body></html>\n");
    s
}

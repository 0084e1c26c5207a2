//! The self-contained HTML page of `kerasc fit --report`: the loss and metric curves per epoch
//! (training and validation) and per step, the learning rate over the steps, the time of each
//! epoch and the training step's time by op kind.

use super::html::{esc, kind_bars_svg, line_svg};
use crate::fit::History;
use std::fmt::Write;

/// What the page shows of one run.
pub struct FitReport<'a> {
    /// The model file's name.
    pub model: &'a str,
    /// The device the steps ran on.
    pub device: &'a str,
    /// The run's history (every epoch, and every step's loss, resumed runs included).
    pub history: &'a History,
    /// Each metric on each step's batch, `(name, values)`, for the steps this run made.
    pub step_metrics: &'a [(String, Vec<f64>)],
    /// The steps made before this run (a resumed run's first step is this one's).
    pub first_step: usize,
    /// The learning rate of every step, from the first.
    pub learning_rate: &'a [f64],
    /// Each epoch this run made, `(epoch number from 1, milliseconds)`.
    pub epoch_ms: &'a [(usize, f64)],
    /// The training step's profile, `(node, op kind, seconds)` summed over `profiled_steps`.
    pub profile: &'a [(String, String, f64)],
    pub profiled_steps: usize,
}

const TRAIN: &str = "#2b7bd9";
const VALIDATION: &str = "#d9822b";

/// The whole page.
pub fn fit_html(r: &FitReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>kerasc fit: {m}</title><style>body{{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f4f4f4}}.charts{{display:flex;flex-wrap:wrap;gap:16px}}</style></head><body>",
        m = esc(r.model)
    );
    let h = r.history;
    let epochs = h.get("loss").map(<[f64]>::len).unwrap_or(0);
    let _ = write!(
        s,
        "<h1>kerasc fit: {}</h1><p>device {} · {} epoch(s) · {} step(s) · final loss {}</p>",
        esc(r.model),
        esc(r.device),
        epochs,
        h.step_loss.len(),
        h.get("loss").and_then(|v| v.last()).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
    );
    s.push_str("<h2>Per epoch</h2><div class=\"charts\">");
    for (key, train) in h.series.iter().filter(|(k, _)| !k.starts_with("val_")) {
        let val_key = format!("val_{key}");
        let mut lines = vec![(key.as_str(), TRAIN, train.as_slice())];
        if let Some(v) = h.get(&val_key) {
            lines.push((val_key.as_str(), VALIDATION, v));
        }
        s.push_str(&line_svg(key, "epoch", 1, &lines));
    }
    s.push_str("</div><h2>Per step</h2><div class=\"charts\">");
    s.push_str(&line_svg("loss of each batch (before its update)", "step", 1, &[("loss", TRAIN, &h.step_loss)]));
    for (name, vals) in r.step_metrics {
        s.push_str(&line_svg(&format!("{name} of each batch"), "step", r.first_step + 1, &[(name, TRAIN, vals)]));
    }
    s.push_str(&line_svg("learning rate", "step", 1, &[("learning rate", TRAIN, r.learning_rate)]));
    s.push_str("</div>");
    if !r.epoch_ms.is_empty() {
        s.push_str("<h2>Time per epoch</h2><table><tr><th>epoch</th><th>ms</th></tr>");
        for (e, ms) in r.epoch_ms {
            let _ = write!(s, "<tr><td>{e}</td><td>{ms:.1}</td></tr>");
        }
        s.push_str("</table>");
    }
    let steps = r.profiled_steps.max(1) as f64;
    let per_step = |sec: f64| sec * 1e3 / steps;
    let total: f64 = r.profile.iter().map(|n| n.2).sum();
    let _ = write!(
        s,
        "<h2>The training step's time by op kind</h2><p>{:.3} ms per step over {} node(s), {} step(s) timed</p>",
        per_step(total),
        r.profile.len(),
        r.profiled_steps
    );
    let kinds = super::by_kind(r.profile).into_iter().map(|(k, (t, _))| (k, per_step(t))).collect();
    s.push_str(&kind_bars_svg(&[("ms per step", TRAIN, kinds)]));
    s.push_str(
        "<h3>Most expensive nodes</h3><table><tr><th>node</th><th>op</th><th>ms per step</th><th>share</th></tr>",
    );
    for (name, kind, sec) in super::top_ops(r.profile) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.1}%</td></tr>",
            esc(name),
            esc(kind),
            per_step(*sec),
            100.0 * sec / total.max(1e-12)
        );
    }
    s.push_str("</table></body></html>\n");
    s
}

//! The one ordered list of optimization passes. The graph is validated after each pass, and each
//! pass reports what it changed.

use crate::egraph::{convert, extract, TensorEGraph};
use crate::{fold, fusion, rules, OptError};
use egg::{Runner, SimpleScheduler, StopReason};
use ir::Graph;
use std::time::{Duration, Instant};

/// The passes, in order.
pub const PASSES: [&str; 5] =
    ["lower-layout", "fold-constants", "egraph-rewrite", "fold-constants", "fuse-elementwise"];

/// Limits and switches of the optimizer.
#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    /// Equality saturation stops after this many iterations...
    pub iter_limit: usize,
    /// ...or when the e-graph holds this many nodes...
    pub node_limit: usize,
    /// ...or after this long.
    pub time_limit: Duration,
    /// Only these rewrite rules (all when empty).
    pub rules: Vec<String>,
    /// Skip element-wise chain fusion.
    pub no_elementwise_fusion: bool,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            iter_limit: 30,
            node_limit: 50_000,
            time_limit: Duration::from_millis(800),
            rules: Vec::new(),
            no_elementwise_fusion: false,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq)]
pub struct PassReport {
    pub name: String,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub seconds: f64,
    /// `(what, count)` pairs: rule applications, nodes folded, ops fused.
    pub changes: Vec<(String, usize)>,
}

/// Statistics of the equality-saturation run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EGraphStats {
    pub iterations: usize,
    pub nodes: usize,
    pub classes: usize,
    /// Why saturation stopped: `saturated`, `iteration limit`, `node limit`, `time limit`.
    pub stop_reason: String,
    /// Cost of the input graph and of the extracted one (the cost model's units).
    pub cost_before: f64,
    pub cost_after: f64,
}

/// The optimizer's full report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizeReport {
    pub passes: Vec<PassReport>,
    pub egraph: EGraphStats,
    pub seconds: f64,
}

impl OptimizeReport {
    /// Total count of one kind of change over all passes.
    pub fn count(&self, what: &str) -> usize {
        self.passes.iter().flat_map(|p| &p.changes).filter(|(w, _)| w == what).map(|(_, n)| n).sum()
    }
}

/// An optimized graph and how it got there.
#[derive(Debug, Clone)]
pub struct Optimized {
    pub graph: Graph,
    pub report: OptimizeReport,
}

/// Runs every pass on `g`.
pub fn optimize(g: &Graph, options: &OptimizeOptions) -> Result<Optimized, OptError> {
    let start = Instant::now();
    g.validate()?;
    let mut graph = g.clone();
    let mut report = OptimizeReport::default();
    for name in PASSES {
        if name == "fuse-elementwise" && options.no_elementwise_fusion {
            continue;
        }
        let t0 = Instant::now();
        let before = graph.nodes().len();
        let (next, changes) = match name {
            "lower-layout" => {
                let (g2, n) = crate::layout::lower_channels_first(&graph)?;
                (g2, vec![("channels-first ops".to_string(), n)])
            }
            "fold-constants" => {
                let (g2, n) = fold::fold_constants(&graph)?;
                (g2, vec![("folded".to_string(), n)])
            }
            "egraph-rewrite" => match rewrite(&graph, options) {
                Ok((g2, stats, applied)) => {
                    report.egraph = stats;
                    (g2, applied)
                }
                // Rewriting is an optimization: when it cannot finish, the graph goes on as it was,
                // and the report says why.
                Err(e) => {
                    report.egraph.stop_reason = format!("failed, graph left unrewritten: {e}");
                    (graph.clone(), Vec::new())
                }
            },
            _ => {
                let (g2, s) = fusion::fuse_elementwise(&graph)?;
                (g2, vec![("fused groups".to_string(), s.groups), ("fused ops".to_string(), s.ops)])
            }
        };
        next.validate().map_err(|e| OptError::Pass { pass: name.to_string(), message: e.to_string() })?;
        graph = next;
        report.passes.push(PassReport {
            name: name.to_string(),
            nodes_before: before,
            nodes_after: graph.nodes().len(),
            seconds: t0.elapsed().as_secs_f64(),
            changes,
        });
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(Optimized { graph, report })
}

fn stop_reason(r: &Option<StopReason>) -> String {
    match r {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(s)) => format!("time limit ({s:.2} s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    }
}

type Rewritten = (Graph, EGraphStats, Vec<(String, usize)>);

/// Equality saturation with the rewrite rules, then DAG-aware extraction.
pub fn rewrite(g: &Graph, options: &OptimizeOptions) -> Result<Rewritten, OptError> {
    let loaded = convert::load(g)?;
    let names: Vec<&str> = options.rules.iter().map(String::as_str).collect();
    let rewrites = rules::rewrites(&names);
    let before = extract::extract(&loaded.egraph, &loaded.roots).cost;
    let runner: Runner<_, _, ()> = Runner::new(Default::default())
        .with_egraph(loaded.egraph.clone())
        .with_scheduler(SimpleScheduler)
        .with_iter_limit(options.iter_limit)
        .with_node_limit(options.node_limit)
        .with_time_limit(options.time_limit)
        .run(&rewrites);
    let eg: &TensorEGraph = &runner.egraph;
    // An e-graph far past the node limit (grown within one iteration) would take longer to
    // extract from than it could ever save: keep the graph as it was.
    if eg.total_number_of_nodes() > 2 * options.node_limit {
        return Err(OptError::Graph(format!(
            "the e-graph grew to {} nodes (limit {})",
            eg.total_number_of_nodes(),
            options.node_limit
        )));
    }
    let mut applied: Vec<(String, usize)> = rules::all().iter().map(|r| (r.name.to_string(), 0)).collect();
    for it in &runner.iterations {
        for (rule, n) in &it.applied {
            if let Some(e) = applied.iter_mut().find(|(name, _)| name == rule.as_str()) {
                e.1 += n;
            }
        }
    }
    let ex = extract::extract(eg, &loaded.roots);
    // Extraction is greedy: where what it found costs more than the input, keep the input.
    let graph = if ex.cost <= before { convert::rebuild(g, &loaded, eg, &ex.choice)? } else { g.clone() };
    let cost_after = ex.cost.min(before);
    let stats = EGraphStats {
        iterations: runner.iterations.len(),
        nodes: eg.total_number_of_nodes(),
        classes: eg.number_of_classes(),
        stop_reason: stop_reason(&runner.stop_reason),
        cost_before: before,
        cost_after,
    };
    Ok((graph, stats, applied))
}

//! Model parallelism: a graph's nodes placed on several devices, every value that goes from one
//! device to another moved by an explicit [`Op::Transfer`], the placed graph cut into stages
//! (runs of consecutive nodes on one device) that run in order, micro-batches pipelined through
//! them.

use crate::strategy::{run_each, shares, split_inputs};
use crate::{Device, RuntimeError};
use ir::{Graph, Op, Producer, Tensor, ValueId};
use std::collections::HashMap;

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Plan(m.into())
}

/// The layer a node belongs to: its name up to the first `/`.
pub fn layer_of(node_name: &str) -> &str {
    node_name.split('/').next().unwrap_or(node_name)
}

/// Reads a placement file: one `LAYER DEVICE` per line (`#` starts a comment), or a JSON object
/// `{"LAYER": "DEVICE", ...}`, as `with tf.device(DEVICE):` around each layer.
pub fn parse_layer_map(text: &str) -> Result<Vec<(String, Device)>, RuntimeError> {
    let bad = |m: String| err(format!("placement file: {m}"));
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| bad("expected an object of layer names to devices".into()))?;
        return obj
            .iter()
            .map(|(k, d)| {
                let d = d.as_str().ok_or_else(|| bad(format!("'{k}': the device must be a string")))?;
                Ok((k.clone(), Device::parse(d)?))
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(layer), Some(device), None) => out.push((layer.to_string(), Device::parse(device)?)),
            _ => return Err(bad(format!("line {}: expected 'LAYER DEVICE', got '{line}'", i + 1))),
        }
    }
    Ok(out)
}

/// Checks that every layer `map` names is one of `model`'s (else names those that are not and
/// the model's layers) and every device one of `devices`.
pub fn check_layers(model: &Graph, map: &[(String, Device)], devices: &[Device]) -> Result<(), RuntimeError> {
    if let Some((l, d)) = map.iter().find(|(_, d)| !devices.contains(d)) {
        return Err(err(format!("placement: layer {l} is on {d}, which is not among the devices")));
    }
    let known: std::collections::HashSet<&str> = model.nodes().iter().map(|n| layer_of(&n.name)).collect();
    let missing: Vec<&str> = map.iter().map(|(l, _)| l.as_str()).filter(|l| !known.contains(l)).collect();
    if !missing.is_empty() {
        let mut layers: Vec<&str> = known.into_iter().collect();
        layers.sort_unstable();
        return Err(err(format!(
            "placement: no layer named {} in the model (its layers: {})",
            missing.join(", "),
            layers.join(", ")
        )));
    }
    Ok(())
}

/// Each node's device from a layer map: a node takes its layer's device; a node of a layer the
/// map does not name takes the device of the node that produced its first computed input (the
/// first device for the graph's first nodes). Every layer the map names must be one of `model`'s
/// (the graph before optimization: a layer the optimizer folded away has no node left to place)
/// and every device one of `devices`.
pub fn assign_layers(
    g: &Graph,
    model: &Graph,
    map: &[(String, Device)],
    devices: &[Device],
) -> Result<Vec<usize>, RuntimeError> {
    check_layers(model, map, devices)?;
    let named: HashMap<&str, usize> =
        map.iter().filter_map(|(l, d)| devices.iter().position(|x| x == d).map(|i| (l.as_str(), i))).collect();
    let mut out: Vec<usize> = Vec::with_capacity(g.nodes().len());
    for n in g.nodes() {
        let inherited = n.inputs.iter().find_map(|v| match g.value(*v).producer {
            Producer::Node(p, _) => out.get(p.0).copied(),
            _ => None,
        });
        out.push(named.get(layer_of(&n.name)).copied().or(inherited).unwrap_or(0));
    }
    Ok(out)
}

/// Each node's device, balancing the estimated time ([`optimizer::egraph::cost::op_cost`] at
/// batch 1) over `devices` in node order, in contiguous runs; a run closes early when the next
/// node's weights would take its device over `limits` (bytes; `None`: no limit).
pub fn assign_auto(g: &Graph, devices: &[Device], limits: &[Option<usize>]) -> Result<Vec<usize>, RuntimeError> {
    let cost: Vec<f64> = g
        .nodes()
        .iter()
        .map(|n| {
            let ins: Vec<ir::TensorType> = n.inputs.iter().map(|v| g.value(*v).ty.clone()).collect();
            let outs: Vec<ir::TensorType> = n.outputs.iter().map(|v| g.value(*v).ty.clone()).collect();
            optimizer::egraph::cost::op_cost(&n.op, &ins, &outs)
        })
        .collect();
    let weights: Vec<usize> = g
        .nodes()
        .iter()
        .map(|n| n.inputs.iter().filter_map(|v| g.constant(*v)).map(|t| t.len() * t.dtype().size()).sum())
        .collect();
    let total: f64 = cost.iter().sum();
    let n_dev = devices.len().max(1);
    let (mut dev, mut acc, mut held) = (0usize, 0f64, 0usize);
    let mut out = Vec::with_capacity(cost.len());
    for (i, (&c, &w)) in cost.iter().zip(&weights).enumerate() {
        let target = total * (dev + 1) as f64 / n_dev as f64;
        let over_time = acc + c / 2.0 > target && !out.is_empty();
        let over_memory = limits.get(dev).copied().flatten().is_some_and(|l| held + w > l);
        if (over_time || over_memory) && dev + 1 < n_dev {
            dev += 1;
            held = 0;
        }
        if let Some(l) = limits.get(dev).copied().flatten().filter(|&l| held + w > l) {
            return Err(RuntimeError::Memory {
                needed: crate::memory::human_bytes(held + w),
                available: format!(
                    "{} ({}'s memory limit; node '{}' and the ones before it on that device)",
                    crate::memory::human_bytes(l),
                    devices[dev],
                    g.nodes()[i].name
                ),
            });
        }
        acc += c;
        held += w;
        out.push(dev);
    }
    Ok(out)
}

/// One stage: consecutive nodes of the placed graph on one device, as a graph of its own.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Index into the placement's devices.
    pub device: usize,
    pub graph: Graph,
    /// The placed graph's value each of the stage graph's inputs takes (a graph input or a
    /// value an earlier stage produces).
    pub sources: Vec<ValueId>,
    /// The placed graph's values the stage graph's outputs are, in order: those later stages
    /// or the graph's outputs read.
    pub produces: Vec<ValueId>,
}

/// A graph placed on several devices.
#[derive(Debug, Clone)]
pub struct Placed {
    pub devices: Vec<Device>,
    /// The graph with a [`Op::Transfer`] on every edge between two devices.
    pub graph: Graph,
    /// Each node's device (index into `devices`) in `graph`.
    pub node_device: Vec<usize>,
    pub stages: Vec<Stage>,
}

/// Places `g`'s nodes on `devices` as `assign` says (a device index per node): inserts a
/// transfer before the first use of a value on each other device, then cuts the stages.
pub fn place(g: &Graph, devices: &[Device], assign: &[usize]) -> Result<Placed, RuntimeError> {
    if assign.len() != g.nodes().len() || assign.iter().any(|&d| d >= devices.len()) {
        return Err(err("placement: a device per node is needed"));
    }
    let mut p = Graph::new(g.name.clone());
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in g.inputs() {
        map.insert(v, p.add_input(g.value(v).name.clone(), g.value(v).ty.clone()));
    }
    for (v, t) in g.constants() {
        map.insert(*v, p.add_constant(g.value(*v).name.clone(), t.clone()));
    }
    // Where each placed value lives (None: a graph input or a constant, wherever it is needed).
    let mut home: HashMap<ValueId, usize> = HashMap::new();
    let mut moved: HashMap<(ValueId, usize), ValueId> = HashMap::new();
    let mut node_device = Vec::new();
    for (n, &d) in g.nodes().iter().zip(assign) {
        let mut ins = Vec::with_capacity(n.inputs.len());
        for v in &n.inputs {
            let pv = *map.get(v).ok_or_else(|| err("placement: a value used before it is made"))?;
            let pv = match home.get(&pv) {
                Some(&h) if h != d => match moved.get(&(pv, d)) {
                    Some(&t) => t,
                    None => {
                        let to = devices[d].to_string();
                        let name = format!("{}/to_{}", p.value(pv).name, to.trim_start_matches('/').replace(':', ""));
                        let t = p.add(name, Op::Transfer { to }, &[pv])?;
                        node_device.push(d);
                        home.insert(t, d);
                        moved.insert((pv, d), t);
                        t
                    }
                },
                _ => pv,
            };
            ins.push(pv);
        }
        let outs = p.add_node(n.name.clone(), n.op.clone(), &ins)?;
        node_device.push(d);
        for (o, po) in n.outputs.iter().zip(outs) {
            map.insert(*o, po);
            home.insert(po, d);
        }
    }
    let outputs = g
        .outputs()
        .iter()
        .map(|v| map.get(v).copied().ok_or_else(|| err("placement: an output is not made")))
        .collect::<Result<Vec<_>, _>>()?;
    p.set_outputs(outputs);
    p.validate()?;
    let stages = cut(&p, &node_device)?;
    Ok(Placed { devices: devices.to_vec(), graph: p, node_device, stages })
}

/// The stages of a placed graph: runs of consecutive nodes on one device. A transfer belongs to
/// the stage that receives it and becomes that stage's input.
fn cut(p: &Graph, node_device: &[usize]) -> Result<Vec<Stage>, RuntimeError> {
    let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, &d) in node_device.iter().enumerate() {
        match runs.last_mut() {
            Some((rd, nodes)) if *rd == d => nodes.push(i),
            _ => runs.push((d, vec![i])),
        }
    }
    // The stage that makes each value, to find what later stages and the outputs read.
    let mut made_in: HashMap<ValueId, usize> = HashMap::new();
    for (s, (_, nodes)) in runs.iter().enumerate() {
        for &i in nodes {
            for o in &p.nodes()[i].outputs {
                made_in.insert(*o, s);
            }
        }
    }
    let mut read_later: Vec<Vec<ValueId>> = vec![Vec::new(); runs.len()];
    let mut note = |v: ValueId, by: Option<usize>| {
        if let Some(&s) = made_in.get(&v) {
            if by.is_none_or(|b| b != s) && !read_later[s].contains(&v) {
                read_later[s].push(v);
            }
        }
    };
    for (s, (_, nodes)) in runs.iter().enumerate() {
        for &i in nodes {
            let n = &p.nodes()[i];
            // A transfer's input is read by the stage that receives it.
            for v in &n.inputs {
                note(*v, Some(s));
            }
        }
    }
    for v in p.outputs() {
        note(*v, None);
    }
    let mut stages = Vec::with_capacity(runs.len());
    for (s, (d, nodes)) in runs.into_iter().enumerate() {
        let mut g = Graph::new(format!("{}/stage{s}", p.name));
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        let mut sources = Vec::new();
        for &i in &nodes {
            let n = &p.nodes()[i];
            if let (Op::Transfer { .. }, [src], [out]) = (&n.op, n.inputs.as_slice(), n.outputs.as_slice()) {
                // The moved value enters the stage here.
                let (src, out) = (*src, *out);
                let v = g.add_input(p.value(out).name.clone(), p.value(out).ty.clone());
                sources.push(src);
                map.insert(out, v);
                continue;
            }
            let mut ins = Vec::with_capacity(n.inputs.len());
            for v in &n.inputs {
                let sv = match map.get(v) {
                    Some(&x) => x,
                    None => {
                        let x = match p.constant(*v) {
                            Some(t) => g.add_constant(p.value(*v).name.clone(), t.clone()),
                            None => {
                                sources.push(*v);
                                g.add_input(p.value(*v).name.clone(), p.value(*v).ty.clone())
                            }
                        };
                        map.insert(*v, x);
                        x
                    }
                };
                ins.push(sv);
            }
            for (o, so) in n.outputs.iter().zip(g.add_node(n.name.clone(), n.op.clone(), &ins)?) {
                map.insert(*o, so);
            }
        }
        let produces = read_later[s].clone();
        let outs = produces
            .iter()
            .map(|v| map.get(v).copied().ok_or_else(|| err("placement: a stage's output is not made there")))
            .collect::<Result<Vec<_>, _>>()?;
        g.set_outputs(outs);
        g.validate()?;
        stages.push(Stage { device: d, graph: g, sources, produces });
    }
    Ok(stages)
}

/// How the micro-batches' outputs make the batch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Outputs with a batch axis concatenated in order, the others the first micro-batch's.
    Gather,
    /// Outputs with a batch axis concatenated; the others are means over their micro-batch (a
    /// training step's loss and gradients) and are averaged, each weighted by its rows.
    BatchMean,
}

/// Runs a placed graph: the batch cut into `micro_batches` (as even as [`shares`] makes them),
/// each stage `run(executors[stage], inputs)` (an executor per stage, on its device), the
/// micro-batches pipelined: at each tick every stage that has a micro-batch ready runs it, all
/// at once, each on its executor's pool (`pool`); the outputs joined as `join` says.
#[allow(clippy::too_many_arguments)]
pub fn run_pipelined<E: Sync>(
    placed: &Placed,
    executors: &[E],
    inputs: &[Tensor],
    micro_batches: usize,
    join: Join,
    pool: impl Fn(&E) -> Option<&rayon::ThreadPool>,
    run: impl Fn(&E, &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> + Sync,
) -> Result<Vec<Tensor>, RuntimeError> {
    pipeline(placed, executors.len(), inputs, micro_batches, join, |work| run_each(executors, &work, &pool, &run))
}

/// [`run_pipelined`] with the stages run one after the other on the calling thread (executors
/// that stay on their thread, such as a CUDA session's).
pub fn run_in_turn<E>(
    placed: &Placed,
    executors: &[E],
    inputs: &[Tensor],
    micro_batches: usize,
    join: Join,
    run: impl Fn(&E, &[Tensor]) -> Result<Vec<Tensor>, RuntimeError>,
) -> Result<Vec<Tensor>, RuntimeError> {
    pipeline(placed, executors.len(), inputs, micro_batches, join, |work| {
        Ok(work.into_iter().map(|(s, xs)| run(&executors[s], &xs)).collect())
    })
}

/// The schedule: at tick `t`, stage `s` runs micro-batch `t − s`; `tick` runs one tick's
/// `(stage, inputs)` and returns each one's outputs in order.
#[allow(clippy::type_complexity)]
fn pipeline(
    placed: &Placed,
    n_executors: usize,
    inputs: &[Tensor],
    micro_batches: usize,
    join: Join,
    mut tick: impl FnMut(Vec<(usize, Vec<Tensor>)>) -> Result<Vec<Result<Vec<Tensor>, RuntimeError>>, RuntimeError>,
) -> Result<Vec<Tensor>, RuntimeError> {
    let g = &placed.graph;
    if n_executors != placed.stages.len() {
        return Err(err(format!("{} executors for {} stages", n_executors, placed.stages.len())));
    }
    let batch = crate::check_inputs(g, inputs)?.unwrap_or(1);
    let cut = shares(batch, micro_batches.clamp(1, batch.max(1)));
    let parts = split_inputs(g, inputs, &cut)?;
    let mut values: Vec<HashMap<ValueId, Tensor>> =
        parts.into_iter().map(|xs| g.inputs().iter().copied().zip(xs).collect()).collect();
    let (n_mb, n_st) = (values.len(), placed.stages.len());
    for t in 0..n_mb + n_st - 1 {
        let mut work = Vec::new();
        let mut slots = Vec::new();
        for (s, stage) in placed.stages.iter().enumerate() {
            let Some(m) = t.checked_sub(s).filter(|&m| m < n_mb) else { continue };
            let xs = stage
                .sources
                .iter()
                .map(|v| values[m].get(v).cloned().ok_or_else(|| err("a stage's input was not made")))
                .collect::<Result<Vec<Tensor>, _>>()?;
            work.push((s, xs));
            slots.push((s, m));
        }
        for ((s, m), outs) in slots.into_iter().zip(tick(work)?) {
            values[m].extend(placed.stages[s].produces.iter().copied().zip(outs?));
        }
    }
    let per_mb = values
        .into_iter()
        .map(|mut v| g.outputs().iter().map(|o| v.remove(o).ok_or_else(|| err("an output was not made"))).collect())
        .collect::<Result<Vec<Vec<Tensor>>, RuntimeError>>()?;
    match join {
        Join::Gather => crate::strategy::gather(g, per_mb),
        Join::BatchMean => batch_mean(g, per_mb, &cut),
    }
}

/// [`Join::BatchMean`].
fn batch_mean(
    g: &Graph,
    per_mb: Vec<Vec<Tensor>>,
    cut: &[std::ops::Range<usize>],
) -> Result<Vec<Tensor>, RuntimeError> {
    let n: usize = cut.iter().map(|r| r.len()).sum();
    let gathered = crate::strategy::gather(g, per_mb.clone())?;
    g.outputs()
        .iter()
        .zip(gathered)
        .enumerate()
        .map(|(k, (&v, whole))| {
            if crate::strategy::batched(g, v) || whole.as_f32().is_none() || per_mb.len() == 1 {
                return Ok(whole);
            }
            let mut mean = vec![0f32; whole.len()];
            for (outs, r) in per_mb.iter().zip(cut) {
                let x = outs.get(k).and_then(Tensor::as_f32).ok_or_else(|| err("a micro-batch's output is missing"))?;
                let w = r.len() as f32 / n as f32;
                mean.iter_mut().zip(x).for_each(|(m, &x)| *m += x * w);
            }
            Ok(Tensor::from_f32(whole.shape(), mean)?)
        })
        .collect()
}

/// What `compile --emit placement` prints: each node's device, then each transfer with the
/// bytes it moves at `batch`.
pub fn describe(placed: &Placed, batch: usize) -> String {
    use std::fmt::Write;
    let g = &placed.graph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} stage(s) on {}",
        placed.stages.len(),
        placed.devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
    );
    for (i, st) in placed.stages.iter().enumerate() {
        let _ = writeln!(s, "stage {i} on {}: {} node(s)", placed.devices[st.device], st.graph.nodes().len());
    }
    for (n, &d) in g.nodes().iter().zip(&placed.node_device) {
        let _ = writeln!(s, "  {:<10} {:<18} {}", placed.devices[d].to_string(), n.op.name(), n.name);
    }
    let mut total = 0usize;
    for n in g.nodes() {
        if let (Op::Transfer { to }, [input]) = (&n.op, n.inputs.as_slice()) {
            let v = g.value(*input);
            let from = match v.producer {
                Producer::Node(p, _) => placed.devices[placed.node_device[p.0]].to_string(),
                _ => "host".into(),
            };
            let elems: usize = v.ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(batch)).product();
            let bytes = elems * v.ty.dtype.size();
            total += bytes;
            let _ = writeln!(
                s,
                "transfer {} {from} -> {to}: {} at batch {batch}",
                v.name,
                crate::memory::human_bytes(bytes)
            );
        }
    }
    let _ = writeln!(s, "transfers: {} per run at batch {batch}", crate::memory::human_bytes(total));
    s
}

//! The order Keras 3 runs a functional model's layer calls in (`Function._run_through_graph`):
//! by depth from the outputs, deepest first, and within a depth in the order `map_graph` first
//! met the nodes. Masks live on tensors at run time and MultiHeadAttention clears them, so the
//! order decides which layer still sees a mask; the build lowers the calls in this order.

use super::config::{ModelSpec, TensorRef};
use std::collections::HashMap;

/// A layer call: (index of the layer in the spec, index of its call).
pub(crate) type NodeKey = (usize, usize);

/// Resolves a node reference to a call index of the referenced layer (see FORMATS.md on
/// node indices of nested models).
pub(crate) fn call_index(spec: &ModelSpec, r: &TensorRef, io: bool) -> usize {
    let layer = spec.layers.iter().find(|l| l.name == r.layer);
    let offset = match layer {
        // Keras 2 offsets every nested model's calls; Keras 3 only nested Functionals in io lists.
        Some(l) if l.model.is_some() => spec.keras2 || (io && matches!(l.class.as_str(), "Functional" | "Model")),
        _ => false,
    };
    if offset {
        r.node.saturating_sub(1)
    } else {
        r.node
    }
}

/// Keras 3's run order of the calls of a functional `spec` that lead to its outputs, or `None`
/// where a reference does not resolve (the caller then lowers in config order and reports).
pub(crate) fn run_order(spec: &ModelSpec) -> Option<Vec<NodeKey>> {
    let index: HashMap<&str, usize> = spec.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
    let node_of = |r: &TensorRef, io: bool| -> Option<NodeKey> {
        let li = *index.get(r.layer.as_str())?;
        Some((li, if spec.layers[li].class == "InputLayer" { 0 } else { call_index(spec, r, io) }))
    };
    // A node's parents: the producers of its tensor arguments, positional first, then keyword
    // arguments in key order (how Keras flattens a call's arguments).
    let parents = |n: NodeKey| -> Option<Vec<NodeKey>> {
        let l = &spec.layers[n.0];
        if l.class == "InputLayer" {
            return Some(Vec::new());
        }
        let call = l.calls.get(n.1)?;
        let mut kws: Vec<&(String, TensorRef)> = call.tensor_kwargs.iter().collect();
        kws.sort_by(|a, b| a.0.cmp(&b.0));
        call.args.iter().chain(kws.into_iter().map(|(_, r)| r)).map(|r| node_of(r, false)).collect()
    };
    // `_build_map`: depth-first from each output, a node after its inputs (iteratively: a
    // hostile file may nest deeply).
    let mut post: Vec<NodeKey> = Vec::new();
    let mut finished: std::collections::HashSet<NodeKey> = Default::default();
    let mut parents_of: HashMap<NodeKey, Vec<NodeKey>> = HashMap::new();
    for out in &spec.outputs {
        let root = node_of(out, true)?;
        let mut stack: Vec<(NodeKey, usize)> = vec![(root, 0)];
        let mut in_progress: std::collections::HashSet<NodeKey> = Default::default();
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if *next == 0 {
                if finished.contains(&n) {
                    stack.pop();
                    continue;
                }
                if !in_progress.insert(n) {
                    return None; // a cycle
                }
                let p = parents(n)?;
                parents_of.insert(n, p);
            }
            let ps = &parents_of[&n];
            if let Some(&p) = ps.get(*next) {
                *next += 1;
                if !finished.contains(&p) {
                    if in_progress.contains(&p) {
                        return None;
                    }
                    stack.push((p, 0));
                }
                continue;
            }
            in_progress.remove(&n);
            finished.insert(n);
            post.push(n);
            stack.pop();
        }
    }
    // `map_graph`: depths from the outputs; a shared layer's calls at least its deepest so far.
    let mut depth: HashMap<NodeKey, usize> = HashMap::new();
    let mut seen: Vec<NodeKey> = Vec::new(); // the dict's insertion order
    let mut layer_depth: HashMap<usize, usize> = HashMap::new();
    for &n in post.iter().rev() {
        let mut d = *depth.entry(n).or_insert_with(|| {
            seen.push(n);
            0
        });
        d = d.max(layer_depth.get(&n.0).copied().unwrap_or(0));
        layer_depth.insert(n.0, d);
        depth.insert(n, d);
        for &p in &parents_of[&n] {
            let e = depth.entry(p).or_insert_with(|| {
                seen.push(p);
                0
            });
            *e = (*e).max(d + 1);
        }
    }
    let mut order: Vec<(usize, usize, NodeKey)> =
        seen.iter().enumerate().map(|(i, &n)| (usize::MAX - depth[&n], i, n)).collect();
    order.sort();
    Some(order.into_iter().map(|(_, _, n)| n).filter(|n| spec.layers[n.0].class != "InputLayer").collect())
}

//! Copying a graph node by node into a fresh one, with dead nodes and unused weights dropped.

use crate::OptError;
use ir::{Graph, Producer, Tensor, ValueId};
use std::collections::HashMap;

/// Builds a new graph from an old one; values of the old graph are mapped on demand.
pub(crate) struct Copier<'a> {
    pub src: &'a Graph,
    pub dst: Graph,
    map: HashMap<ValueId, ValueId>,
}

impl<'a> Copier<'a> {
    /// A new graph with the same name and inputs.
    pub fn new(src: &'a Graph) -> Copier<'a> {
        let mut dst = Graph::new(src.name.clone());
        let mut map = HashMap::new();
        for &v in src.inputs() {
            let val = src.value(v);
            map.insert(v, dst.add_input(val.name.clone(), val.ty.clone()));
        }
        Copier { src, dst, map }
    }

    /// The new value of an old one; constants are copied on first use.
    pub fn get(&mut self, v: ValueId) -> Result<ValueId, OptError> {
        if let Some(&n) = self.map.get(&v) {
            return Ok(n);
        }
        match self.src.constant(v) {
            Some(t) => {
                let n = self.dst.add_constant(self.src.value(v).name.clone(), t.clone());
                self.map.insert(v, n);
                Ok(n)
            }
            None => Err(OptError::Graph(format!("value '{}' used before it is defined", self.src.value(v).name))),
        }
    }

    /// Records that old value `v` is now `n`.
    pub fn set(&mut self, v: ValueId, n: ValueId) {
        self.map.insert(v, n);
    }

    /// Makes old value `v` a constant.
    pub fn set_constant(&mut self, v: ValueId, t: Tensor) {
        let n = self.dst.add_constant(self.src.value(v).name.clone(), t);
        self.map.insert(v, n);
    }

    /// The tensor behind a new value if it is constant.
    pub fn constant(&self, n: ValueId) -> Option<&Tensor> {
        self.dst.constant(n)
    }

    /// Sets the outputs (keeping their names) and returns the graph.
    pub fn finish(mut self) -> Result<Graph, OptError> {
        let mut outs = Vec::new();
        for &o in self.src.outputs() {
            let n = self.get(o)?;
            if matches!(self.dst.value(n).producer, Producer::Node(..)) {
                self.dst.rename_value(n, self.src.value(o).name.clone());
            }
            outs.push(n);
        }
        self.dst.set_outputs(outs);
        Ok(self.dst)
    }
}

/// For each node, whether some graph output depends on it.
pub(crate) fn live_nodes(g: &Graph) -> Vec<bool> {
    let mut live_val = vec![false; g.values().len()];
    for &o in g.outputs() {
        live_val[o.0] = true;
    }
    let mut live = vec![false; g.nodes().len()];
    for (i, node) in g.nodes().iter().enumerate().rev() {
        if node.outputs.iter().any(|o| live_val[o.0]) {
            live[i] = true;
            for v in &node.inputs {
                live_val[v.0] = true;
            }
        }
    }
    live
}

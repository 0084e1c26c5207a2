//! The e-class analysis: every class carries its output types and whether it depends only on
//! weights (then it costs nothing at run time: constant folding evaluates it once).

use super::lang::TensorLang;
use egg::{Analysis, DidMerge, EGraph, Id};
use ir::{infer_types, Op, Tensor, TensorType};
use std::collections::HashMap;

/// Per-class facts.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassData {
    /// Output types: one for a tensor, several for a multi-output op; empty if ill-typed.
    pub tys: Vec<TensorType>,
    /// The value is a function of weights only.
    pub weight_only: bool,
}

/// The tables behind interned ops and weights, and the graph's input types.
#[derive(Debug, Default, Clone)]
pub struct TensorAnalysis {
    pub ops: Vec<Op>,
    op_keys: HashMap<String, u32>,
    pub weights: Vec<Tensor>,
    weight_keys: HashMap<String, u32>,
    pub inputs: Vec<TensorType>,
    /// The classes of the input graph's values that are read more than once or are outputs
    /// (possibly non-canonical): fusing an epilogue into one of them would compute it twice.
    pub shared: Vec<egg::Id>,
}

impl TensorAnalysis {
    /// The index of `op`, interning it on first use.
    pub fn intern_op(&mut self, op: &Op) -> u32 {
        let key = format!("{op:?}");
        if let Some(&k) = self.op_keys.get(&key) {
            return k;
        }
        let k = self.ops.len() as u32;
        self.ops.push(op.clone());
        self.op_keys.insert(key, k);
        k
    }

    /// Stores a weight and returns its index; small tensors (the literals rules make) are
    /// shared by value, so re-applying a rule adds nothing new.
    pub fn intern_weight(&mut self, t: Tensor) -> u32 {
        let key = (t.len() <= 16).then(|| format!("{:?}{:?}", t.shape(), t.data()));
        if let Some(k) = key.as_ref().and_then(|k| self.weight_keys.get(k)) {
            return *k;
        }
        self.weights.push(t);
        let k = (self.weights.len() - 1) as u32;
        if let Some(key) = key {
            self.weight_keys.insert(key, k);
        }
        k
    }
}

/// The e-graph kerasc rewrites.
pub type TensorEGraph = EGraph<TensorLang, TensorAnalysis>;

/// The single output type of a class, if it has exactly one.
pub fn class_type(eg: &TensorEGraph, id: Id) -> Option<&TensorType> {
    let d = &eg[id].data;
    if d.tys.len() == 1 {
        d.tys.first()
    } else {
        None
    }
}

impl Analysis<TensorLang> for TensorAnalysis {
    type Data = ClassData;

    fn make(egraph: &mut TensorEGraph, enode: &TensorLang, _id: Id) -> ClassData {
        match enode {
            TensorLang::Input(i) => ClassData {
                tys: egraph.analysis.inputs.get(*i as usize).cloned().into_iter().collect(),
                weight_only: false,
            },
            TensorLang::Weight(i) => ClassData {
                tys: egraph.analysis.weights.get(*i as usize).map(|t| t.tensor_type()).into_iter().collect(),
                weight_only: true,
            },
            TensorLang::Apply(op, children) => {
                let mut tys = Vec::with_capacity(children.len());
                let mut weight_only = !children.is_empty();
                for &c in children {
                    match class_type(egraph, c) {
                        Some(t) => tys.push(t.clone()),
                        None => return ClassData { tys: vec![], weight_only: false },
                    }
                    weight_only &= egraph[c].data.weight_only;
                }
                let out = egraph.analysis.ops.get(*op as usize).and_then(|op| infer_types(op, &tys).ok());
                ClassData { tys: out.unwrap_or_default(), weight_only }
            }
            TensorLang::Project(k, [c]) => {
                let d = &egraph[*c].data;
                ClassData { tys: d.tys.get(*k as usize).cloned().into_iter().collect(), weight_only: d.weight_only }
            }
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let before = a.weight_only;
        a.weight_only |= b.weight_only;
        let mut b_changed = a.weight_only != b.weight_only;
        if a.tys.is_empty() && !b.tys.is_empty() {
            a.tys = b.tys;
            return DidMerge(true, b_changed);
        }
        if a.tys != b.tys {
            b_changed = true;
        }
        DidMerge(a.weight_only != before, b_changed)
    }
}

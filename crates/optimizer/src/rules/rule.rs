//! What a rule is: a named function from an e-class to the terms it can build there ([`Build`]),
//! made an egg searcher and applier by [`FnRule`]; and the e-graph queries rules share.

use crate::egraph::{class_type, TensorAnalysis, TensorEGraph, TensorLang};
use egg::{Applier, Id, PatternAst, SearchMatches, Searcher, Subst, Symbol, Var};
use ir::{infer_types, Op, Tensor, TensorType};

/// A term to add to the e-graph: an existing class, a new op over terms, or a new weight.
#[derive(Debug, Clone)]
pub enum Build {
    Class(Id),
    Op(Op, Vec<Build>),
    Weight(Tensor),
}

/// Most e-nodes a rule application may leave (the runner's own limit applies between
/// iterations; this one stops a single iteration's growth).
pub const MAX_NODES_IN_ITERATION: usize = 200_000;

/// A rule's matcher: every equivalent term it can build for the class.
pub type FindFn = fn(&TensorEGraph, Id) -> Vec<Build>;

/// A named rule backed by a [`FindFn`].
#[derive(Clone, Copy)]
pub struct FnRule {
    pub name: &'static str,
    pub find: FindFn,
}

impl Searcher<TensorLang, TensorAnalysis> for FnRule {
    fn search_eclass_with_limit(
        &self,
        eg: &TensorEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TensorLang>> {
        if limit == 0 || (self.find)(eg, eclass).is_empty() {
            return None;
        }
        Some(SearchMatches { eclass, substs: vec![Subst::default()], ast: None })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl Applier<TensorLang, TensorAnalysis> for FnRule {
    fn apply_one(
        &self,
        eg: &mut TensorEGraph,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<TensorLang>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        // Egg checks the node limit between iterations only: a rule must not blow an e-graph up
        // within one.
        if eg.total_number_of_nodes() > MAX_NODES_IN_ITERATION {
            return Vec::new();
        }
        let want = eg[eclass].data.tys.clone();
        let shared = !single_consumer(eg, eclass);
        let mut changed = Vec::new();
        for b in (self.find)(eg, eclass) {
            if let Some(id) = add_build(eg, &b) {
                if eg[id].data.tys == want && eg.union(eclass, id) {
                    changed.push(id);
                }
                // A shared value rebuilt as a layout change of another (a transpose pushed
                // through it): that other value is read as often.
                if let (true, Build::Op(Op::Transpose { .. } | Op::Reshape { .. }, inner)) = (shared, &b) {
                    if let Some(c) = inner.first().and_then(|c| add_build(eg, c)) {
                        if single_consumer(eg, c) {
                            eg.analysis.shared.push(c);
                        }
                    }
                }
            }
        }
        changed
    }
}

/// Adds a term, or `None` if some op in it does not type-check.
pub fn add_build(eg: &mut TensorEGraph, b: &Build) -> Option<Id> {
    match b {
        Build::Class(id) => Some(eg.find(*id)),
        Build::Weight(t) => {
            let k = eg.analysis.intern_weight(t.clone());
            Some(eg.add(TensorLang::Weight(k)))
        }
        Build::Op(op, children) => {
            let mut ids = Vec::with_capacity(children.len());
            let mut tys = Vec::with_capacity(children.len());
            for c in children {
                let id = add_build(eg, c)?;
                tys.push(class_type(eg, id)?.clone());
                ids.push(id);
            }
            infer_types(op, &tys).ok()?;
            let k = eg.analysis.intern_op(op);
            Some(eg.add(TensorLang::Apply(k, ids)))
        }
    }
}

/// The op nodes of a class with their operands.
pub(crate) fn ops_in(eg: &TensorEGraph, id: Id) -> impl Iterator<Item = (&Op, &[Id])> {
    eg[id].nodes.iter().filter_map(move |n| match n {
        TensorLang::Apply(k, c) => eg.analysis.ops.get(*k as usize).map(|op| (op, c.as_slice())),
        _ => None,
    })
}

/// The weight tensor held directly by a class, if any.
pub(crate) fn weight_in(eg: &TensorEGraph, id: Id) -> Option<&Tensor> {
    eg[id].nodes.iter().find_map(|n| match n {
        TensorLang::Weight(k) => eg.analysis.weights.get(*k as usize),
        _ => None,
    })
}

pub(crate) fn ty(eg: &TensorEGraph, id: Id) -> Option<&TensorType> {
    class_type(eg, id)
}

pub(crate) fn weight_only(eg: &TensorEGraph, id: Id) -> bool {
    eg[id].data.weight_only
}

/// The channel count `F` if `v` is a weight-only per-channel vector for an output of `out`
/// type: shape `[F]` or `[1, ..., 1, F]` with `F` the output's last axis.
pub(crate) fn channel_vector(eg: &TensorEGraph, v: Id, out: &TensorType) -> Option<usize> {
    if !weight_only(eg, v) {
        return None;
    }
    let t = ty(eg, v)?;
    let dims = t.shape.as_fixed()?;
    let f = *dims.last()?;
    let last = out.shape.dims().last()?.fixed()?;
    if f != last || dims.len() > out.shape.rank() || dims[..dims.len() - 1].iter().any(|&d| d != 1) {
        return None;
    }
    Some(f)
}

/// `v` as a 1-D vector of `f` elements.
pub(crate) fn as_vector(eg: &TensorEGraph, v: Id, f: usize) -> Build {
    match ty(eg, v) {
        Some(t) if t.shape.rank() == 1 => Build::Class(v),
        _ => Build::Op(Op::Reshape { shape: vec![f as i64] }, vec![Build::Class(v)]),
    }
}

pub(crate) fn bin(op: ir::BinaryOp, a: Build, b: Build) -> Build {
    Build::Op(Op::Binary(op), vec![a, b])
}

/// Whether the class holds a weight whose every element equals `x`.
pub(crate) fn is_splat(eg: &TensorEGraph, id: Id, x: f32) -> bool {
    weight_in(eg, id).and_then(|t| t.as_f32()).is_some_and(|v| !v.is_empty() && v.iter().all(|&e| e == x))
}

/// Whether the value of class `id` is read by one consumer only: in the input graph it was not
/// read twice nor an output. Fusing it into that consumer then computes it once, not twice.
pub fn single_consumer(eg: &TensorEGraph, id: Id) -> bool {
    let id = eg.find(id);
    !eg.analysis.shared.iter().any(|&s| eg.find(s) == id)
}

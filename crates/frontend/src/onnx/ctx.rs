//! The import state ([`Ctx`]): the graph being built, the ONNX names in scope, what is known
//! about each value; and the attribute accessors every lowering uses.

use super::proto::{AttributeProto, NodeProto};
use super::value::{show, KVal, Val, MAX_KNOWN, S};
use crate::FrontendError;
use ir::{DType, Dim, Graph, Op, Tensor, ValueId};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Most elements any tensor of an imported model may hold per sample (2^31): a larger shape
/// is taken as hostile, refused before anything that size is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;
/// The largest fill kept as a constant of its size (larger ones are tiled at run time).
const MAX_FILL_CONSTANT: usize = 1 << 20;

/// The import state: the graph being built, the values in scope, and what went wrong.
pub struct Ctx<'a> {
    pub g: Graph,
    pub origin: &'a str,
    pub(crate) dir: Option<&'a Path>,
    pub opset: i64,
    /// Name → value, innermost scope last (a loop body sees the outer graph's values).
    pub(crate) scopes: Vec<HashMap<String, Val>>,
    /// IR values holding an ONNX bool as f32 0/1.
    pub(crate) bools: HashSet<ValueId>,
    /// Per IR value, the batch multiple of each `Dim::Batch` axis when not 1 (tf2onnx merges
    /// the batch with other axes around batched matmuls).
    mult: HashMap<ValueId, Vec<f64>>,
    /// Known constants already added to the graph, by value identity.
    materialized: HashMap<String, ValueId>,
    /// A graph input with the batch on an axis: the source of batch-sized shapes.
    pub(crate) batch_source: Option<(ValueId, usize)>,
    counter: usize,
    /// Node names used so far (kept unique).
    names: HashSet<String>,
    /// Nodes walked in loop bodies so far, over all loops and nesting levels (bounded).
    pub(crate) unrolled: usize,
    /// Graph inputs whose values a node needed at load time (decided shapes, attributes or
    /// weights), with why: the model compiles once they are given ([`FrontendError::NeedsInputs`]).
    pub(crate) needs: std::cell::RefCell<Vec<(ValueId, String)>>,
}

/// What a lowering function returns: one value per node output.
pub type Lowered = Result<Vec<Val>, String>;

impl<'a> Ctx<'a> {
    /// An empty import state for a graph named `name` at `opset`; `dir` holds external data.
    pub fn new(name: &str, origin: &'a str, dir: Option<&'a Path>, opset: i64) -> Ctx<'a> {
        Ctx {
            g: Graph::new(name),
            origin,
            dir,
            opset,
            scopes: vec![HashMap::new()],
            bools: HashSet::new(),
            mult: HashMap::new(),
            materialized: HashMap::new(),
            batch_source: None,
            counter: 0,
            names: HashSet::new(),
            unrolled: 0,
            needs: Default::default(),
        }
    }

    /// The value an ONNX name has in the innermost scope defining it.
    pub(crate) fn lookup(&self, name: &str) -> Option<&Val> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    /// Binds an ONNX name in the innermost scope.
    pub(crate) fn define(&mut self, name: &str, v: Val) {
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name.to_string(), v);
        }
    }

    /// A fresh node name derived from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}/{}", self.counter)
    }

    /// Input `i` of `node`, `None` when absent or empty (an omitted optional input).
    pub fn input(&self, node: &NodeProto, i: usize) -> Option<Val> {
        let name = node.input.get(i)?;
        if name.is_empty() {
            return None;
        }
        self.lookup(name).cloned()
    }

    /// Input `i`, required.
    pub fn req(&self, node: &NodeProto, i: usize) -> Result<Val, String> {
        self.input(node, i).ok_or_else(|| format!("input {i} is missing"))
    }

    /// Adds a node, recording batch multiples of its outputs.
    pub fn add(&mut self, name: &str, op: Op, ins: &[ValueId]) -> Result<ValueId, String> {
        Ok(self.add_multi(name, op, ins)?.remove(0))
    }

    /// Adds a node named after `base` (made unique).
    pub fn tmp(&mut self, base: &str, op: Op, ins: &[ValueId]) -> Result<ValueId, String> {
        let name = self.fresh(base);
        self.add(&name, op, ins)
    }

    /// Adds a node with several outputs.
    pub fn add_multi(&mut self, name: &str, op: Op, ins: &[ValueId]) -> Result<Vec<ValueId>, String> {
        let name = if self.names.contains(name) { self.fresh(name) } else { name.to_string() };
        self.names.insert(name.clone());
        let outs = self.g.add_node(name, op.clone(), ins).map_err(|e| e.to_string())?;
        for &o in &outs {
            let m = self.infer_mult(&op, ins, o);
            if m.iter().any(|&k| k != 1.0) {
                self.mult.insert(o, m);
            }
        }
        Ok(outs)
    }

    /// Batch multiples of a new value: transposes permute them; otherwise each batch axis takes
    /// the multiple of the first input with a batch axis at the same place from the right.
    fn infer_mult(&self, op: &Op, ins: &[ValueId], out: ValueId) -> Vec<f64> {
        let dims = self.g.value(out).ty.shape.dims().to_vec();
        if let (Op::Transpose { perm }, Some(&x)) = (op, ins.first()) {
            let m = self.mults(x);
            return perm.iter().map(|&p| m.get(p).copied().unwrap_or(1.0)).collect();
        }
        let r = dims.len();
        (0..r)
            .map(|i| {
                if dims[i] != Dim::Batch {
                    return 0.0;
                }
                for &x in ins {
                    let xd = self.g.value(x).ty.shape.dims();
                    if xd.len() + i >= r {
                        let j = xd.len() + i - r;
                        if xd[j] == Dim::Batch {
                            return self.mults(x)[j];
                        }
                    }
                }
                1.0
            })
            .collect()
    }

    /// The batch multiple of each axis of an IR value (0 for fixed axes).
    fn mults(&self, v: ValueId) -> Vec<f64> {
        match self.mult.get(&v) {
            Some(m) => m.clone(),
            None => self.g.value(v).ty.shape.dims().iter().map(|d| if *d == Dim::Batch { 1.0 } else { 0.0 }).collect(),
        }
    }

    /// Records the symbolic shape of an IR value made by a reshape.
    pub fn set_shape(&mut self, v: ValueId, shape: &[S]) {
        let m: Vec<f64> = shape.iter().map(|s| if let S::B(k) = s { *k } else { 0.0 }).collect();
        self.mult.insert(v, m);
    }

    /// The shape of a value, the batch symbolic.
    pub fn shape_of(&self, v: &Val) -> Vec<S> {
        match v {
            Val::Ir(id) => {
                let m = self.mults(*id);
                self.g
                    .value(*id)
                    .ty
                    .shape
                    .dims()
                    .iter()
                    .zip(m)
                    .map(|(d, k)| match d {
                        Dim::Fixed(n) => S::N(*n as f64),
                        Dim::Batch => S::B(k),
                    })
                    .collect()
            }
            Val::Known(k) => k.shape.iter().map(|&n| S::N(n as f64)).collect(),
            Val::Splat { shape, .. } => shape.clone(),
        }
    }

    /// The rank of a value.
    pub fn rank(&self, v: &Val) -> usize {
        self.shape_of(v).len()
    }

    /// The ONNX-side dtype of a value (bool for IR values that hold one as f32).
    pub fn dtype(&self, v: &Val) -> DType {
        match v {
            Val::Ir(id) if self.bools.contains(id) => DType::Bool,
            Val::Ir(id) => self.g.value(*id).ty.dtype,
            Val::Known(k) => k.dtype,
            Val::Splat { dtype, .. } => *dtype,
        }
    }

    /// Marks an IR value as holding a bool as f32 0/1.
    pub fn mark_bool(&mut self, v: ValueId) -> Val {
        self.bools.insert(v);
        Val::Ir(v)
    }

    /// The value as known data, when it is (a small constant or a shape computation).
    pub fn known(&self, v: &Val) -> Option<KVal> {
        match v {
            Val::Known(k) => Some(k.clone()),
            Val::Ir(id) => {
                let t = self.g.constant(*id)?;
                (t.len() <= MAX_KNOWN).then(|| KVal::from_tensor(t))
            }
            Val::Splat { .. } => None,
        }
    }

    /// The value as a constant tensor of any size, when it is one.
    pub fn constant(&self, v: &Val) -> Option<Tensor> {
        match v {
            Val::Known(k) => k.to_tensor().ok(),
            Val::Ir(id) => self.g.constant(*id).cloned(),
            Val::Splat { .. } => None,
        }
    }

    /// [`Ctx::known`], required: `what` (axes, sizes, bounds) decides shapes or attributes. When
    /// it is computed from graph inputs, they are recorded as needed ([`Ctx::needs`]).
    pub fn need(&self, v: &Val, what: &str) -> Result<KVal, String> {
        self.known(v).ok_or_else(|| self.needed(v, what))
    }

    /// Records the graph inputs `v` is computed from as needed for `what`; the error to return.
    fn needed(&self, v: &Val, what: &str) -> String {
        let mut stack: Vec<ValueId> = if let Val::Ir(id) = v { vec![*id] } else { Vec::new() };
        let mut seen = HashSet::new();
        let mut found = false;
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            match self.g.value(id).producer {
                ir::Producer::Input(_) => {
                    found = true;
                    let mut needs = self.needs.borrow_mut();
                    if !needs.iter().any(|(n, _)| *n == id) {
                        needs.push((id, what.to_string()));
                    }
                }
                ir::Producer::Node(n, _) => stack.extend(self.g.nodes()[n.0].inputs.iter().copied()),
                ir::Producer::Constant => {}
            }
        }
        if found {
            format!("{what} come(s) from the model's inputs: known once they are given")
        } else {
            format!("{what} must be known when the model is loaded")
        }
    }

    /// How many input needs are recorded so far.
    pub(crate) fn needs_len(&self) -> usize {
        self.needs.borrow().len()
    }

    /// Integer values known at import (axes, pads, sizes), none symbolic.
    pub fn ints(&self, v: &Val, what: &str) -> Result<Vec<i64>, String> {
        let k = self.need(v, what)?;
        k.data
            .iter()
            .map(|s| match s {
                S::N(x) => Ok(*x as i64),
                S::B(_) => Err(format!("{what} depends on the batch size")),
            })
            .collect()
    }

    /// The value in the graph: constants are added (once), batch-shaped fills are built from a
    /// batch-carrying input.
    pub fn ir(&mut self, v: &Val) -> Result<ValueId, String> {
        match v {
            Val::Ir(id) => Ok(*id),
            Val::Known(k) => {
                let t = k.to_tensor()?;
                let key = format!("{:?}{:?}", t.shape(), t.data());
                if let Some(&id) = self.materialized.get(&key) {
                    return Ok(id);
                }
                let name = self.fresh("const");
                let dtype = k.dtype;
                let t = if dtype == DType::Bool { t.cast(DType::F32) } else { t };
                let id = self.g.add_constant(name, t);
                if dtype == DType::Bool {
                    self.bools.insert(id);
                }
                self.materialized.insert(key, id);
                Ok(id)
            }
            Val::Splat { value, dtype, shape } => self.splat(*value, *dtype, shape),
        }
    }

    /// `value` broadcast to `shape` (with the batch): the constant with the fixed sizes,
    /// broadcast with a `(1, .., N, .., 1)` slice of a batch-carrying input.
    fn splat(&mut self, value: f64, dtype: DType, shape: &[S]) -> Result<ValueId, String> {
        let fixed: Vec<usize> = shape.iter().map(|s| if let S::N(n) = s { *n as usize } else { 1 }).collect();
        let irt = if dtype == DType::Bool { DType::F32 } else { dtype };
        let n = fixed.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
        let n = n.ok_or_else(|| format!("a fill of shape {} is too large", show(shape)))?;
        // A large fill is one value tiled when the model runs (bounded by the run's memory check),
        // not a constant of its size in the file's graph.
        let tiled = n > MAX_FILL_CONSTANT;
        let one = vec![1; fixed.len()];
        let t = Tensor::from_f32(if tiled { &one } else { &fixed }, vec![value as f32; if tiled { 1 } else { n }])
            .map_err(|e| e.to_string())?
            .cast(irt);
        let name = self.fresh("fill");
        let c = self.g.add_constant(name, t);
        let mut out = if tiled { self.tmp("fill/tile", Op::Tile { repeats: fixed.clone() }, &[c])? } else { c };
        for (pos, s) in shape.iter().enumerate() {
            let S::B(k) = s else { continue };
            if *k != 1.0 {
                return Err("a fill whose size is a multiple of the batch is not supported".into());
            }
            let like = self.batch_like(shape.len(), pos)?;
            out = self.tmp("fill/broadcast", Op::BroadcastTo, &[out, like])?;
        }
        if dtype == DType::Bool {
            self.bools.insert(out);
        }
        Ok(out)
    }

    /// A tensor of rank `r` with the batch at `pos` and 1 elsewhere, sliced from an input.
    fn batch_like(&mut self, r: usize, pos: usize) -> Result<ValueId, String> {
        let (src, axis) = self.batch_source.ok_or("no model input has a batch dimension")?;
        let sr = self.g.value(src).ty.shape.rank();
        let axes: Vec<usize> = (0..sr).filter(|&a| a != axis).collect();
        let n = axes.len();
        let mut v = src;
        if n > 0 {
            let op = Op::Slice { axes, starts: vec![0; n], ends: vec![1; n], steps: vec![1; n] };
            v = self.tmp("batch", op, &[v])?;
        }
        let mut target = vec![1i64; r];
        target[pos] = -1;
        self.tmp("batch", Op::Reshape { shape: target }, &[v])
    }

    /// A reshape of `x` to a symbolic target: the one batch-dependent size becomes -1.
    pub fn reshape_to(&mut self, name: &str, x: ValueId, target: &[S]) -> Result<ValueId, String> {
        if target.iter().any(|s| matches!(s, S::N(n) if *n > MAX_ELEMENTS as f64)) {
            return Err(format!("a reshape to {} is too large", show(target)));
        }
        let sym = target.iter().filter(|s| matches!(s, S::B(_))).count();
        if sym > 1 {
            return Err(format!("a reshape to {} has several batch-dependent sizes", show(target)));
        }
        let t: Vec<i64> = target.iter().map(|s| if let S::N(n) = s { *n as i64 } else { -1 }).collect();
        let out = self.add(name, Op::Reshape { shape: t }, &[x])?;
        self.set_shape(out, target);
        if self.bools.contains(&x) {
            self.bools.insert(out);
        }
        Ok(out)
    }

    /// Normalizes a possibly negative axis for rank `r`.
    pub fn axis(&self, a: i64, r: usize) -> Result<usize, String> {
        let n = if a < 0 { a + r as i64 } else { a };
        if n < 0 || n >= r as i64 {
            return Err(format!("axis {a} is out of range for rank {r}"));
        }
        Ok(n as usize)
    }

    /// Normalizes a list of axes for rank `r`, each in range and none repeated (ONNX's rule for
    /// Squeeze, Unsqueeze, Slice, Pad and Transpose's perm).
    pub fn axes(&self, list: &[i64], r: usize) -> Result<Vec<usize>, String> {
        let ax: Vec<usize> = list.iter().map(|&a| self.axis(a, r)).collect::<Result<_, _>>()?;
        for (i, a) in ax.iter().enumerate() {
            if ax[..i].contains(a) {
                return Err(format!("axes {list:?} name axis {a} twice (rank {r})"));
            }
        }
        Ok(ax)
    }
}

/// Attribute accessors.
pub fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

pub fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

pub fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn attr_s(node: &NodeProto, name: &str, default: &str) -> String {
    attr(node, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).to_string())
        .unwrap_or_else(|| default.to_string())
}

pub(crate) fn ferr(origin: &str, m: impl Into<String>) -> FrontendError {
    FrontendError::Format { file: origin.into(), message: m.into() }
}

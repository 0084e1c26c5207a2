//! ONNX models (`.onnx`) into the IR: the protobuf decoded with prost (types generated from the
//! official `onnx.proto`, see `tools/onnx-proto-gen`), nodes put in dependency order, and each
//! lowered by a registry from op type to function (`ops`), the same shape as the Keras one.
//!
//! Values the model computes from shapes and constants (tf2onnx's `Shape → Gather → Concat →
//! Reshape` chains, loop counters) are evaluated at import ([`eval`]), with the batch kept
//! symbolic; `Loop`s whose trip count is known are unrolled. Channels-first convolution,
//! pooling and resizing keep ONNX's layout as an attribute ([`ir::Op::ChannelsFirst`]).

// Float comparisons read better as guards than as float literal patterns.
#![allow(clippy::redundant_guards)]

mod eval;
mod ops;
#[rustfmt::skip]
pub mod proto;
mod tensor;

pub use eval::{KVal, S};

use crate::keras::{LayerSummary, ModelFormat, ModelInfo};
use crate::{FrontendError, Model};
use ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};
use prost::Message;
use proto::{AttributeProto, GraphProto, NodeProto, ValueInfoProto};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Most elements any tensor of an imported model may hold per sample (2^31): a larger shape
/// is taken as hostile, refused before anything that size is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Oldest and newest default-domain opsets accepted.
pub const OPSETS: (i64, i64) = (11, 21);

/// A value during import.
#[derive(Debug, Clone)]
pub enum Val {
    /// Computed at run time (or a large weight): an IR value.
    Ir(ValueId),
    /// Known at import: a small constant or a shape computation (the batch symbolic).
    Known(KVal),
    /// A constant filling a shape that involves the batch (`Expand`/`ConstantOfShape` of one).
    Splat { value: f64, dtype: DType, shape: Vec<S> },
}

/// The import state: the graph being built, the values in scope, and what went wrong.
pub struct Ctx<'a> {
    pub g: Graph,
    pub origin: &'a str,
    dir: Option<&'a Path>,
    pub opset: i64,
    /// Name → value, innermost scope last (a loop body sees the outer graph's values).
    scopes: Vec<HashMap<String, Val>>,
    /// IR values holding an ONNX bool as f32 0/1.
    bools: HashSet<ValueId>,
    /// Per IR value, the batch multiple of each `Dim::Batch` axis when not 1 (tf2onnx merges
    /// the batch with other axes around batched matmuls).
    mult: HashMap<ValueId, Vec<f64>>,
    /// Known constants already added to the graph, by value identity.
    materialized: HashMap<String, ValueId>,
    /// A graph input with the batch on an axis: the source of batch-sized shapes.
    batch_source: Option<(ValueId, usize)>,
    counter: usize,
    /// Node names used so far (kept unique).
    names: HashSet<String>,
}

/// What a lowering function returns: one value per node output.
pub type Lowered = Result<Vec<Val>, String>;

impl<'a> Ctx<'a> {
    fn lookup(&self, name: &str) -> Option<&Val> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn define(&mut self, name: &str, v: Val) {
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
                (t.len() <= eval::MAX_KNOWN).then(|| KVal::from_tensor(t))
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

    /// Integer values known at import (axes, pads, sizes), none symbolic.
    pub fn ints(&self, v: &Val, what: &str) -> Result<Vec<i64>, String> {
        let k = self.known(v).ok_or_else(|| format!("{what} must be known when the model is loaded"))?;
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
        let n = n.ok_or_else(|| format!("a fill of shape {} is too large", eval::show(shape)))?;
        let t = Tensor::from_f32(&fixed, vec![value as f32; n]).map_err(|e| e.to_string())?.cast(irt);
        let name = self.fresh("fill");
        let c = self.g.add_constant(name, t);
        let mut out = c;
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
            return Err(format!("a reshape to {} is too large", eval::show(target)));
        }
        let sym = target.iter().filter(|s| matches!(s, S::B(_))).count();
        if sym > 1 {
            return Err(format!("a reshape to {} has several batch-dependent sizes", eval::show(target)));
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

fn ferr(origin: &str, m: impl Into<String>) -> FrontendError {
    FrontendError::Format { file: origin.into(), message: m.into() }
}

/// Whether the bytes look like an ONNX model (a `ModelProto` that decodes and has a graph).
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08) && proto::ModelProto::decode(bytes).is_ok_and(|m| m.graph.is_some())
}

/// Reads an ONNX model; `dir` is the model's folder, for external data.
pub fn load_onnx(bytes: &[u8], origin: &str, dir: Option<&Path>) -> Result<Model, FrontendError> {
    load_onnx_with(bytes, origin, dir, None)
}

/// [`load_onnx`] with the shapes of the inputs it will run on: symbolic dimensions other than
/// the batch take their sizes from them.
pub fn load_onnx_with(
    bytes: &[u8],
    origin: &str,
    dir: Option<&Path>,
    input_shapes: Option<&[Vec<usize>]>,
) -> Result<Model, FrontendError> {
    let m = proto::ModelProto::decode(bytes)
        .map_err(|e| ferr(origin, format!("not a valid ONNX model (protobuf: {e}); truncated or corrupt?")))?;
    let graph = m.graph.as_ref().ok_or_else(|| ferr(origin, "the ONNX model has no graph"))?;
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx"))
        .and_then(|o| o.version)
        .ok_or_else(|| ferr(origin, "the model imports no default-domain opset"))?;
    if opset < OPSETS.0 || opset > OPSETS.1 {
        return Err(ferr(
            origin,
            format!("opset {opset} is not supported (kerasc reads opsets {} to {})", OPSETS.0, OPSETS.1),
        ));
    }
    let name = graph.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "onnx_model".into());
    let mut ctx = Ctx {
        g: Graph::new(name.clone()),
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
    };
    // Initializers first: small ones stay known (shape arithmetic folds at import), the rest are
    // weights in the graph.
    let mut weights = HashSet::new();
    let mut total_params = 0usize;
    for t in &graph.initializer {
        let tname = t.name.clone().unwrap_or_default();
        let tensor = tensor::to_tensor(t, dir).map_err(|m| ferr(origin, m))?;
        total_params += if tensor.dtype().is_float() { tensor.len() } else { 0 };
        let v = if tensor.len() <= eval::MAX_KNOWN && !tensor.dtype().is_float() {
            Val::Known(KVal::from_tensor(&tensor))
        } else {
            let id = ctx.g.add_constant(tname.clone(), tensor);
            weights.insert(id);
            Val::Ir(id)
        };
        ctx.define(&tname, v);
    }
    let mut input_names = Vec::new();
    for vi in &graph.input {
        let iname = vi.name.clone().unwrap_or_default();
        if ctx.lookup(&iname).is_some() {
            continue; // an initializer also listed as an input (IR version < 4)
        }
        let given = input_shapes.and_then(|s| s.get(input_names.len()));
        let ty = input_type(vi, given).map_err(|m| ferr(origin, format!("input '{iname}': {m}")))?;
        let batch_axis = ty.shape.dims().iter().position(|d| *d == Dim::Batch);
        let is_bool = ty.dtype == DType::Bool;
        let ty = if is_bool { TensorType::new(DType::F32, ty.shape) } else { ty };
        let id = ctx.g.add_input(iname.clone(), ty);
        if is_bool {
            ctx.bools.insert(id);
        }
        if let (None, Some(a)) = (ctx.batch_source, batch_axis) {
            ctx.batch_source = Some((id, a));
        }
        ctx.define(&iname, Val::Ir(id));
        input_names.push(iname);
    }
    let mut summary = Vec::new();
    run_graph(&mut ctx, graph, &mut summary)?;
    let mut outs = Vec::new();
    let mut output_names = Vec::new();
    for o in &graph.output {
        let oname = o.name.clone().unwrap_or_default();
        let v = ctx
            .lookup(&oname)
            .cloned()
            .ok_or_else(|| ferr(origin, format!("graph output '{oname}' is never computed")))?;
        let id = ctx.ir(&v).map_err(|m| ferr(origin, format!("output '{oname}': {m}")))?;
        // Bools computed as f32 0/1 are returned as such.
        outs.push(id);
        output_names.push(oname);
    }
    if outs.is_empty() {
        return Err(ferr(origin, "the graph has no outputs"));
    }
    ctx.g.set_outputs(outs);
    ctx.g.validate().map_err(|e| ferr(origin, format!("the imported graph is inconsistent: {e}")))?;
    // No tensor may be absurdly large (huge pads, tiles or fills in a hostile file).
    for v in ctx.g.values() {
        let n = v.ty.shape.dims().iter().filter_map(|d| d.fixed()).try_fold(1usize, |a, d| a.checked_mul(d));
        if n.is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(ferr(origin, format!("tensor '{}' of shape {} is too large", v.name, v.ty.shape)));
        }
    }
    let producer = format!(
        "{} {}",
        m.producer_name.clone().unwrap_or_else(|| "unknown producer".into()),
        m.producer_version.clone().unwrap_or_default()
    );
    let info = ModelInfo {
        name,
        model_class: "ONNX graph".into(),
        format: ModelFormat::Onnx,
        keras_version: format!("opset {opset}, {}", producer.trim()),
        backend: None,
        layers: summary,
        total_params,
        trainable_params: total_params,
        training_config: None,
        input_names,
        layer_configs: Default::default(),
        output_names,
    };
    Ok(Model { graph: ctx.g, info, weight_sources: HashMap::new() })
}

/// The IR type of a graph input: its element type and shape, a symbolic first axis as the batch,
/// other symbolic axes sized from `given` (the shape of the input it will run on).
fn input_type(vi: &ValueInfoProto, given: Option<&Vec<usize>>) -> Result<TensorType, String> {
    use proto::type_proto::Value as TV;
    let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TV::TensorType(t)) => t,
        _ => return Err("only tensor inputs are supported".into()),
    };
    let dtype = tensor::dtype_of(tt.elem_type.unwrap_or(0))?;
    let shape = tt.shape.as_ref().ok_or("the input has no shape")?;
    let mut dims = Vec::new();
    for (i, d) in shape.dim.iter().enumerate() {
        use proto::tensor_shape_proto::dimension::Value as DV;
        match d.value.as_ref() {
            Some(DV::DimValue(n)) if *n > 0 && *n <= 1 << 31 => dims.push(Dim::Fixed(*n as usize)),
            Some(DV::DimValue(n)) if *n > 0 => return Err(format!("dimension {n} is too large")),
            _ if i == 0 => dims.push(Dim::Batch),
            _ if given.and_then(|g| g.get(i)).is_some_and(|&n| n > 0) => {
                dims.push(Dim::Fixed(given.and_then(|g| g.get(i)).copied().unwrap_or(1)))
            }
            Some(DV::DimParam(p)) => {
                return Err(format!(
                    "symbolic dimension '{p}' at axis {i}: only the batch may stay symbolic (`kerasc run` sizes the others from its inputs)"
                ))
            }
            _ => return Err(format!("axis {i} has no size: only the first (batch) axis may be symbolic")),
        }
    }
    Ok(TensorType::new(dtype, Shape(dims)))
}

/// Node order: ONNX requires topological order, but the order is checked (and repaired)
/// here; an input that nothing defines or a cycle is an error naming the node.
fn ordered<'g>(ctx: &Ctx, graph: &'g GraphProto) -> Result<Vec<&'g NodeProto>, String> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() && producer.insert(o.as_str(), i).is_some() {
                return Err(format!("value '{o}' is produced twice"));
            }
        }
    }
    let label =
        |n: &NodeProto| format!("'{}' ({})", n.name.clone().unwrap_or_default(), n.op_type.clone().unwrap_or_default());
    // Kahn's algorithm over in-graph edges; inputs from scope must exist.
    let mut indeg = vec![0usize; graph.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        // A subgraph's reads of outer values are inputs of its node too.
        let mut reads: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                captured(sub, &mut reads);
            }
        }
        for inp in &reads {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    indeg[i] += 1;
                    users[p].push(i);
                }
                None if ctx.lookup(inp).is_some() => {}
                None => return Err(format!("node {} reads '{inp}', which nothing defines", label(n))),
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> = (0..graph.node.len()).filter(|&i| indeg[i] == 0).collect();
    let mut out = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_front() {
        out.push(&graph.node[i]);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if out.len() != graph.node.len() {
        let stuck: Vec<String> =
            (0..graph.node.len()).filter(|&i| indeg[i] > 0).take(5).map(|i| label(&graph.node[i])).collect();
        return Err(format!("the graph has a cycle through {}", stuck.join(", ")));
    }
    Ok(out)
}

/// Names a subgraph reads from its enclosing scopes (used but not defined inside it).
fn captured(g: &GraphProto, out: &mut Vec<String>) {
    let mut defined: HashSet<&str> = g.input.iter().filter_map(|i| i.name.as_deref()).collect();
    defined.extend(g.initializer.iter().filter_map(|t| t.name.as_deref()));
    for n in &g.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            if !defined.contains(i.as_str()) && !out.contains(i) {
                out.push(i.clone());
            }
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                let mut inner = Vec::new();
                captured(sub, &mut inner);
                for i in inner {
                    if !defined.contains(i.as_str()) && !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
    }
}

/// Lowers every node of `graph` in the current scope; unsupported ops are all listed at once.
pub(crate) fn run_graph(
    ctx: &mut Ctx,
    graph: &GraphProto,
    summary: &mut Vec<LayerSummary>,
) -> Result<(), FrontendError> {
    let origin = ctx.origin.to_string();
    let nodes = ordered(ctx, graph).map_err(|m| ferr(&origin, m))?;
    let mut unsupported = Vec::new();
    let mut broken: HashSet<String> = HashSet::new();
    for node in nodes {
        let op_type = node.op_type.clone().unwrap_or_default();
        let nname = node
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| node.output.first().cloned().unwrap_or_else(|| op_type.clone()));
        let domain = node.domain.clone().unwrap_or_default();
        let lower = if domain.is_empty() || domain == "ai.onnx" { ops::registry(&op_type) } else { None };
        let Some(lower) = lower else {
            let what = if domain.is_empty() { op_type.clone() } else { format!("{domain}::{op_type}") };
            unsupported.push(format!("{nname} ({what})"));
            broken.extend(node.output.iter().cloned());
            continue;
        };
        if node.input.iter().any(|i| broken.contains(i)) {
            broken.extend(node.output.iter().cloned());
            continue;
        }
        let before = ctx.g.nodes().len();
        let vals = match eval::fold(ctx, node) {
            Some(r) => r,
            None => lower(ctx, node, &nname),
        }
        .map_err(|m| FrontendError::Layer {
            file: origin.clone(),
            layer: nname.clone(),
            class: op_type.clone(),
            message: m,
        })?;
        for (o, v) in node.output.iter().zip(vals) {
            if !o.is_empty() {
                ctx.define(o, v);
            }
        }
        if ctx.g.nodes().len() > before || summary.is_empty() {
            let shapes = node
                .output
                .iter()
                .filter(|o| !o.is_empty())
                .filter_map(|o| ctx.lookup(o).map(|v| eval::show(&ctx.shape_of(v))))
                .collect();
            let params = node
                .input
                .iter()
                .filter_map(|i| ctx.lookup(i))
                .filter_map(|v| if let Val::Ir(id) = v { ctx.g.constant(*id).map(|t| t.len()) } else { None })
                .sum();
            summary.push(LayerSummary {
                name: nname.clone(),
                class: op_type.clone(),
                output_shapes: shapes,
                params,
                trainable_params: params,
                connected_to: Vec::new(),
            });
        }
    }
    if !unsupported.is_empty() {
        return Err(FrontendError::Unsupported { file: origin, layers: unsupported });
    }
    Ok(())
}

/// Runs a subgraph (a loop body) with `bindings` for its inputs, returning its outputs.
pub(crate) fn run_subgraph(ctx: &mut Ctx, body: &GraphProto, bindings: Vec<(String, Val)>) -> Result<Vec<Val>, String> {
    let mut scope = HashMap::new();
    for t in &body.initializer {
        let tensor = tensor::to_tensor(t, ctx.dir)?;
        let name = t.name.clone().unwrap_or_default();
        let v = if tensor.len() <= eval::MAX_KNOWN {
            Val::Known(KVal::from_tensor(&tensor))
        } else {
            let n = ctx.fresh(&name);
            Val::Ir(ctx.g.add_constant(n, tensor))
        };
        scope.insert(name, v);
    }
    for (n, v) in bindings {
        scope.insert(n, v);
    }
    ctx.scopes.push(scope);
    let mut summary = Vec::new();
    let r = run_graph(ctx, body, &mut summary).map_err(|e| e.to_string());
    let outs = r.and_then(|_| {
        body.output
            .iter()
            .map(|o| {
                let n = o.name.clone().unwrap_or_default();
                ctx.lookup(&n).cloned().ok_or_else(|| format!("the body's output '{n}' is never computed"))
            })
            .collect::<Result<Vec<_>, _>>()
    });
    ctx.scopes.pop();
    outs
}

//! What every layer lowering shares: the lowering state ([`Ctx`]: the graph being built, the
//! weights, the summary, the masks), one layer call ([`LayerCall`]), and config helpers.

use crate::keras::config::{Call, LayerSpec};
use crate::keras::weights::PathLink;
use crate::keras::WeightStore;
use crate::model::{keras_shape, LayerSummary};
use crate::FrontendError;
use ir::{BinaryOp, Graph, Op, Tensor, UnaryOp, ValueId};
use serde_json::Value;
use std::collections::HashMap;

/// A layer lowering: from the call's inputs and the layer's weights to its outputs.
pub(crate) type LowerFn = fn(&mut Ctx, &LayerCall) -> Result<Vec<ValueId>, FrontendError>;

/// One call of a layer being lowered.
pub(crate) struct LayerCall<'a> {
    pub class: &'a str,
    pub name: &'a str,
    pub config: &'a Value,
    pub call: Option<&'a Call>,
    pub inputs: Vec<ValueId>,
    pub kw_inputs: Vec<(String, ValueId)>,
    pub weights: Vec<Tensor>,
    /// Where each weight was read from (dataset paths in the weights file).
    pub weight_paths: Vec<String>,
    /// Unique key of the layer (its path), for caching its constants.
    pub key: String,
}

/// Lowering state: the graph under construction, the weights and the summary.
pub(crate) struct Ctx {
    pub g: Graph,
    pub origin: String,
    pub keras2: bool,
    store: WeightStore,
    consts: HashMap<String, ValueId>,
    weights_cache: HashMap<String, Vec<(Tensor, String)>>,
    /// For constants that are a file weight as stored, the dataset it came from.
    pub sources: HashMap<ValueId, String>,
    /// File weights already attributed to a constant.
    used_paths: std::collections::HashSet<String>,
    /// Per top-level layer: (params, trainable params).
    params: HashMap<String, (usize, usize)>,
    pub summaries: Vec<LayerSummary>,
    recorded: std::collections::HashSet<String>,
    /// Keras's implicit masks: for a value that carries one, its `(batch, time)` keep mask as
    /// float 0/1 (from Embedding(mask_zero=True) or Masking, propagated as Keras does; see
    /// `masks.rs`). Read and written through [`Ctx::mask`] and its siblings.
    masks: HashMap<ValueId, ValueId>,
    /// Values that are another value's tensor object in Keras (a layer that returns its input).
    same_tensor: HashMap<ValueId, ValueId>,
    /// The masks of the current call's positional inputs (for layers that read them).
    pub call_masks: Vec<Option<ValueId>>,
    /// Every layer weight read, in order: (top-level layer, dataset path).
    pub weight_reads: Vec<(String, String)>,
    /// The file was written by Keras 2 on Theano, which stores convolution kernels flipped.
    pub theano_kernels: bool,
}

impl Ctx {
    pub fn new(origin: &str, store: WeightStore, keras2: bool, name: &str) -> Ctx {
        Ctx {
            g: Graph::new(name),
            origin: origin.into(),
            keras2,
            store,
            consts: HashMap::new(),
            weights_cache: HashMap::new(),
            sources: HashMap::new(),
            used_paths: Default::default(),
            params: HashMap::new(),
            summaries: Vec::new(),
            recorded: Default::default(),
            masks: HashMap::new(),
            same_tensor: HashMap::new(),
            call_masks: Vec::new(),
            theano_kernels: false,
            weight_reads: Vec::new(),
        }
    }

    /// The tensor object a value is in Keras.
    fn tensor(&self, mut v: ValueId) -> ValueId {
        while let Some(&u) = self.same_tensor.get(&v) {
            v = u;
        }
        v
    }

    /// The mask a value carries now, if any.
    pub fn mask(&self, v: ValueId) -> Option<ValueId> {
        self.masks.get(&self.tensor(v)).copied()
    }

    pub fn set_mask(&mut self, v: ValueId, mask: ValueId) {
        let t = self.tensor(v);
        self.masks.insert(t, mask);
    }

    pub fn clear_mask(&mut self, v: ValueId) {
        let t = self.tensor(v);
        self.masks.remove(&t);
    }

    /// Records that `out` is `input`'s tensor object in Keras (shares its mask from now on).
    pub fn alias(&mut self, out: ValueId, input: ValueId) {
        let (o, i) = (self.tensor(out), self.tensor(input));
        if o == i {
            return;
        }
        if let Some(m) = self.masks.remove(&o) {
            self.masks.entry(i).or_insert(m);
        }
        self.same_tensor.insert(o, i);
    }

    pub fn config_err(&self, message: String) -> FrontendError {
        FrontendError::Config { file: self.origin.clone(), message }
    }

    pub fn err(&self, lc: &LayerCall, message: impl Into<String>) -> FrontendError {
        FrontendError::Layer {
            file: self.origin.clone(),
            layer: lc.name.into(),
            class: lc.class.into(),
            message: message.into(),
        }
    }

    pub fn werr(&self, lc: &LayerCall, message: impl Into<String>) -> FrontendError {
        FrontendError::Weights {
            file: self.origin.clone(),
            layer: lc.name.into(),
            class: lc.class.into(),
            message: message.into(),
        }
    }

    /// A constant of layer `lc`, created once per layer (shared layers reuse it).
    pub fn konst(&mut self, lc: &LayerCall, what: &str, t: Tensor) -> ValueId {
        let key = format!("{}#{}", lc.key, what);
        if let Some(&v) = self.consts.get(&key) {
            return v;
        }
        // A constant that is one of the layer's file weights unchanged can be written back.
        // Equal values are common (a fresh batch norm's gamma and variance are both ones): the
        // weight named `what` wins, else the first equal one not yet taken, in file order.
        let candidates: Vec<&String> = lc
            .weights
            .iter()
            .zip(&lc.weight_paths)
            .filter(|(w, p)| w.shape() == t.shape() && w.data() == t.data() && !self.used_paths.contains(*p))
            .map(|(_, p)| p)
            .collect();
        let named = candidates.iter().find(|p| {
            let last = p.rsplit('/').next().unwrap_or(p);
            last.split(':').next() == Some(what)
        });
        let source = named.or(candidates.first()).map(|p| (*p).clone());
        if let Some(p) = &source {
            self.used_paths.insert(p.clone());
        }
        let v = self.g.add_constant(format!("{}/{}", lc.name, what), t);
        if let Some(p) = source {
            self.sources.insert(v, p);
        }
        self.consts.insert(key, v);
        v
    }

    /// Adds a single-output node, attributing shape errors to the layer.
    pub fn node(&mut self, lc: &LayerCall, part: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId, FrontendError> {
        let name = if part.is_empty() { lc.name.to_string() } else { format!("{}/{}", lc.name, part) };
        self.g.add(name, op, inputs).map_err(|e| self.err(lc, e.to_string()))
    }

    /// Adds a multi-output node.
    pub fn nodes(
        &mut self,
        lc: &LayerCall,
        part: &str,
        op: Op,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, FrontendError> {
        let name = if part.is_empty() { lc.name.to_string() } else { format!("{}/{}", lc.name, part) };
        self.g.add_node(name, op, inputs).map_err(|e| self.err(lc, e.to_string()))
    }

    pub fn unary(&mut self, lc: &LayerCall, part: &str, u: UnaryOp, x: ValueId) -> Result<ValueId, FrontendError> {
        self.node(lc, part, Op::Unary(u), &[x])
    }

    pub fn binary(
        &mut self,
        lc: &LayerCall,
        part: &str,
        b: BinaryOp,
        x: ValueId,
        y: ValueId,
    ) -> Result<ValueId, FrontendError> {
        self.node(lc, part, Op::Binary(b), &[x, y])
    }

    /// Python's modulo `x − y·floor(x / y)` (the sign of `y`); `tag` names the node (its parts
    /// `tag/div`, `tag/floor`, `tag/mul`).
    pub fn floor_mod(&mut self, lc: &LayerCall, tag: &str, x: ValueId, y: ValueId) -> Result<ValueId, FrontendError> {
        let part = |p: &str| if tag.is_empty() { p.to_string() } else { format!("{tag}/{p}") };
        let q = self.binary(lc, &part("div"), BinaryOp::Div, x, y)?;
        let f = self.unary(lc, &part("floor"), UnaryOp::Floor, q)?;
        let p = self.binary(lc, &part("mul"), BinaryOp::Mul, y, f)?;
        self.binary(lc, tag, BinaryOp::Sub, x, p)
    }

    /// Rank of a value.
    pub fn rank(&self, v: ValueId) -> usize {
        self.g.value(v).ty.shape.rank()
    }

    /// Static dims of a value.
    pub fn dims(&self, v: ValueId) -> Vec<ir::Dim> {
        self.g.value(v).ty.shape.0.clone()
    }

    /// The weights of the layer at `path` (cache key `key`), read once per layer; the first read
    /// also adds them to the parameter counts, so shared layers count once.
    pub(super) fn layer_weights(
        &mut self,
        path: &[PathLink],
        key: &str,
        class: &str,
        config: &Value,
    ) -> Result<Vec<(Tensor, String)>, FrontendError> {
        if let Some(w) = self.weights_cache.get(key) {
            return Ok(w.clone());
        }
        let w = self.store.layer_weights(path, class)?;
        let top = path.first().map(|p| p.name.clone()).unwrap_or_default();
        self.weight_reads.extend(w.iter().map(|(_, p)| (top.clone(), p.clone())));
        let tensors: Vec<Tensor> = w.iter().map(|(t, _)| t.clone()).collect();
        self.count_params(path, class, config, &tensors);
        self.weights_cache.insert(key.to_string(), w.clone());
        Ok(w)
    }

    /// Adds a layer's parameter counts to its top-level layer's summary.
    fn count_params(&mut self, path: &[PathLink], class: &str, config: &Value, weights: &[Tensor]) {
        let Some(top) = path.first() else { return };
        let sizes: Vec<usize> = weights.iter().map(|t| t.len()).collect();
        let total: usize = sizes.iter().sum();
        let frozen = config.get("trainable").and_then(Value::as_bool) == Some(false);
        let non_trainable: usize = if frozen {
            total
        } else {
            match class {
                "BatchNormalization" => sizes.iter().rev().take(2).sum(),
                "Normalization" => total,
                _ => 0,
            }
        };
        let e = self.params.entry(top.name.clone()).or_insert((0, 0));
        e.0 += total;
        e.1 += total - non_trainable;
    }

    /// Records the summary row of a top-level layer (its first call).
    pub fn record_summary(&mut self, l: &LayerSpec, outs: &[ValueId], connected_to: Vec<String>) {
        if !self.recorded.insert(l.name.clone()) {
            return;
        }
        let (params, trainable) = self.params.get(&l.name).copied().unwrap_or((0, 0));
        let frozen = l.config.get("trainable").and_then(Value::as_bool) == Some(false);
        self.summaries.push(LayerSummary {
            name: l.name.clone(),
            class: l.class.clone(),
            output_shapes: outs.iter().map(|&v| keras_shape(&self.g.value(v).ty.shape)).collect(),
            params,
            trainable_params: if frozen { 0 } else { trainable },
            connected_to,
        });
    }
}

/// A number attribute as f32 (`default` when absent); anything but a finite number is an error
/// naming the attribute and the value.
pub(crate) fn cfg_f32(c: &Value, k: &str, default: f32) -> Result<f32, String> {
    Ok(cfg_opt_f32(c, k)?.unwrap_or(default))
}

/// An optional number attribute as f32 (`None` when absent or null).
pub(crate) fn cfg_opt_f32(c: &Value, k: &str) -> Result<Option<f32>, String> {
    match c.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64().map(|x| x as f32) {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(format!("'{k}' must be a finite number, got {v}")),
        },
    }
}

/// A config value as bool.
pub(crate) fn cfg_bool(c: &Value, k: &str, default: bool) -> bool {
    c.get(k).and_then(Value::as_bool).unwrap_or(default)
}

/// A config value as string.
pub(crate) fn cfg_str<'a>(c: &'a Value, k: &str, default: &'a str) -> &'a str {
    c.get(k).and_then(Value::as_str).unwrap_or(default)
}

/// The largest size, count or padding a layer attribute may give: a tensor of more than 2^31
/// elements per sample is refused anyway, so larger values come from a broken or hostile file.
pub(crate) const MAX_ATTR: u64 = 1 << 31;

/// One integer attribute value within `min..=MAX_ATTR`.
fn attr_int(k: &str, v: &Value, min: u64) -> Result<usize, String> {
    match v.as_u64() {
        Some(x) if (min..=MAX_ATTR).contains(&x) => Ok(x as usize),
        _ if min == 0 => Err(format!("'{k}' must be an integer from 0 to 2^31, got {v}")),
        _ => Err(format!("'{k}' must be an integer from {min} to 2^31, got {v}")),
    }
}

/// A per-axis integer attribute (`kernel_size`, `strides`, `pool_size`, ...): one int for every
/// one of `n` axes, or one per axis, each at least `min` (`default` when absent). The error
/// names the attribute and the value.
pub(crate) fn cfg_ints(c: &Value, k: &str, n: usize, default: usize, min: u64) -> Result<Vec<usize>, String> {
    let whole = |v: &Value| format!("'{k}' must be integers from {min} to 2^31, got {v}");
    match c.get(k) {
        None | Some(Value::Null) => Ok(vec![default; n]),
        Some(v @ Value::Array(a)) if a.len() == n => {
            a.iter().map(|e| attr_int(k, e, min).map_err(|_| whole(v))).collect()
        }
        Some(v @ Value::Array(a)) if a.len() == 1 => Ok(vec![attr_int(k, &a[0], min).map_err(|_| whole(v))?; n]),
        Some(v @ Value::Array(_)) => Err(format!("'{k}' must have {n} entries, got {v}")),
        Some(v) => Ok(vec![attr_int(k, v, min)?; n]),
    }
}

/// A count attribute (`units`, `filters`, `n`, ...) of at least `min`; `default` when absent
/// (`None`: required).
pub(crate) fn cfg_count(c: &Value, k: &str, default: Option<usize>, min: u64) -> Result<usize, String> {
    match (c.get(k), default) {
        (None | Some(Value::Null), Some(d)) => Ok(d),
        (None | Some(Value::Null), None) => Err(format!("no '{k}'")),
        (Some(v), _) => attr_int(k, v, min),
    }
}

/// Normalizes a possibly negative axis.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis.checked_add(rank as i64)? } else { axis };
    if a < 0 || a as usize >= rank {
        None
    } else {
        Some(a as usize)
    }
}

/// An int or list-of-ints axis config, normalized (sorted, without repeats); an axis outside the
/// rank is an error naming the attribute and the value.
pub(crate) fn cfg_axes(c: &Value, k: &str, default: i64, rank: usize) -> Result<Vec<usize>, String> {
    let bad = |v: &Value| {
        format!("'{k}' must be axes of a rank-{rank} tensor (from -{rank} to {}), got {v}", rank as i64 - 1)
    };
    let one = |x: &Value| x.as_i64().and_then(|a| norm_axis(a, rank));
    match c.get(k) {
        None | Some(Value::Null) => Ok(vec![norm_axis(default, rank).ok_or_else(|| bad(&Value::from(default)))?]),
        Some(v @ Value::Number(_)) => Ok(vec![one(v).ok_or_else(|| bad(v))?]),
        Some(v @ Value::Array(a)) => {
            let mut out: Vec<usize> = a.iter().map(one).collect::<Option<_>>().ok_or_else(|| bad(v))?;
            out.sort_unstable();
            out.dedup();
            Ok(out)
        }
        Some(v) => Err(bad(v)),
    }
}

/// An activation: element-wise, or a softmax over the last axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    Unary(UnaryOp),
    Softmax,
    LogSoftmax,
    Linear,
}

/// Parses a Keras activation (a name, or a serialized function object).
pub(crate) fn parse_activation(v: Option<&Value>, keras2: bool) -> Result<Act, String> {
    let name = match v {
        None | Some(Value::Null) => return Ok(Act::Linear),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => {
            let inner = o
                .get("config")
                .and_then(|c| c.as_str().map(str::to_string).or_else(|| c.get("name")?.as_str().map(str::to_string)));
            match inner.or_else(|| o.get("class_name").and_then(Value::as_str).map(str::to_string)) {
                Some(n) => n,
                None => return Err("unreadable activation".into()),
            }
        }
        Some(other) => return Err(format!("unreadable activation {other}")),
    };
    let u = match name.as_str() {
        "linear" | "identity" => return Ok(Act::Linear),
        "softmax" => return Ok(Act::Softmax),
        "log_softmax" => return Ok(Act::LogSoftmax),
        "relu" => UnaryOp::Relu,
        "relu6" => UnaryOp::Relu6,
        "sigmoid" => UnaryOp::Sigmoid,
        "hard_sigmoid" => {
            if keras2 {
                UnaryOp::HardSigmoidLegacy
            } else {
                UnaryOp::HardSigmoid
            }
        }
        "hard_silu" | "hard_swish" => UnaryOp::HardSilu,
        "tanh" => UnaryOp::Tanh,
        "softplus" => UnaryOp::Softplus,
        "softsign" => UnaryOp::Softsign,
        "elu" => UnaryOp::Elu { alpha: 1.0 },
        "selu" => UnaryOp::Selu,
        "gelu" => UnaryOp::Gelu,
        "silu" | "swish" => UnaryOp::Silu,
        "mish" => UnaryOp::Mish,
        "exponential" => UnaryOp::Exp,
        "leaky_relu" => UnaryOp::LeakyRelu { alpha: 0.2 },
        other => return Err(format!("activation '{other}' is not supported")),
    };
    Ok(Act::Unary(u))
}

/// Applies an activation to `x` (softmax over the last axis).
pub(crate) fn apply_act(
    ctx: &mut Ctx,
    lc: &LayerCall,
    part: &str,
    act: Act,
    x: ValueId,
) -> Result<ValueId, FrontendError> {
    let last = ctx.rank(x).saturating_sub(1);
    match act {
        Act::Linear => Ok(x),
        Act::Unary(u) => ctx.unary(lc, part, u, x),
        Act::Softmax => ctx.node(lc, part, Op::Softmax { axes: vec![last] }, &[x]),
        Act::LogSoftmax => ctx.node(lc, part, Op::LogSoftmax { axis: last }, &[x]),
    }
}

/// The layer's own activation config, applied.
pub(crate) fn layer_activation(ctx: &mut Ctx, lc: &LayerCall, x: ValueId) -> Result<ValueId, FrontendError> {
    let act = parse_activation(lc.config.get("activation"), ctx.keras2).map_err(|m| ctx.err(lc, m))?;
    apply_act(ctx, lc, "activation", act, x)
}

/// Takes the `i`-th weight, checking its shape when `expect` is given.
pub(crate) fn weight(
    ctx: &Ctx,
    lc: &LayerCall,
    i: usize,
    what: &str,
    expect: Option<&[usize]>,
) -> Result<Tensor, FrontendError> {
    let t = lc.weights.get(i).cloned().ok_or_else(|| {
        ctx.werr(lc, format!("{what} is missing (the file holds {} weight(s) for this layer)", lc.weights.len()))
    })?;
    if let Some(e) = expect {
        if t.shape() != e {
            return Err(ctx.werr(lc, format!("{what} has shape {:?} but the config implies {:?}", t.shape(), e)));
        }
    }
    Ok(t.cast(ir::DType::F32))
}

/// Fails when the layer holds a different number of weights than its config implies.
pub(crate) fn expect_weights(ctx: &Ctx, lc: &LayerCall, n: usize) -> Result<(), FrontendError> {
    if lc.weights.len() != n {
        return Err(ctx.werr(lc, format!("expected {n} weight tensor(s), the file holds {}", lc.weights.len())));
    }
    Ok(())
}

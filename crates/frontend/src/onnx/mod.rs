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

mod ctx;
mod eval;
mod graph;
mod ops;
#[rustfmt::skip]
pub mod proto;
mod tensor;
mod value;

pub use ctx::MAX_ELEMENTS;
pub use value::{KVal, S};

use crate::model::{Model, ModelFormat, ModelInfo};
use crate::options::LoadOptions;
use crate::text::HostInput;
use crate::{FrontendError, Need};
use ctx::{ferr, Ctx};
use ir::{DType, Dim, Shape, TensorType};
use prost::Message;
use proto::ValueInfoProto;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use value::{Val, MAX_KNOWN};

/// Oldest and newest default-domain opsets accepted.
pub const OPSETS: (i64, i64) = (1, 21);

/// Whether kerasc lowers the default-domain op `op_type` (control flow included).
pub fn supports_op(op_type: &str) -> bool {
    ops::registry(op_type).is_some() || matches!(op_type, "Loop" | "If")
}

/// A serialized `TensorProto` (a `.pb` of ONNX's test data) as a tensor.
pub fn tensor_from_pb(bytes: &[u8]) -> Result<ir::Tensor, String> {
    let t = proto::TensorProto::decode(bytes).map_err(|e| format!("not a TensorProto: {e}"))?;
    tensor::to_tensor(&t, None)
}

/// Whether the bytes look like an ONNX model (a `ModelProto` that decodes and has a graph).
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08) && proto::ModelProto::decode(bytes).is_ok_and(|m| m.graph.is_some())
}

/// Reads an ONNX model; `dir` is the model's folder, for external data.
pub fn load_onnx(bytes: &[u8], origin: &str, dir: Option<&Path>) -> Result<Model, FrontendError> {
    load_onnx_with(bytes, origin, dir, &LoadOptions::default())
}

/// [`load_onnx`] for the inputs it will run on: symbolic dimensions other than the batch take
/// their sizes from `options.input_shapes`; inputs given in `options.input_values` become
/// constants. Without them, a model that needs them is [`FrontendError::NeedsInputs`].
pub fn load_onnx_with(
    bytes: &[u8],
    origin: &str,
    dir: Option<&Path>,
    options: &LoadOptions,
) -> Result<Model, FrontendError> {
    let input_shapes = options.input_shapes.as_deref();
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
    let mut ctx = Ctx::new(&name, origin, dir, opset);
    // Initializers first: small ones stay known (shape arithmetic folds at import), the rest are
    // weights in the graph.
    let mut weights = HashSet::new();
    let mut total_params = 0usize;
    for t in &graph.initializer {
        let tname = t.name.clone().unwrap_or_default();
        let tensor = tensor::to_tensor(t, dir).map_err(|m| ferr(origin, m))?;
        total_params += if tensor.dtype().is_float() { tensor.len() } else { 0 };
        let v = if tensor.len() <= MAX_KNOWN && !tensor.dtype().is_float() {
            Val::Known(KVal::from_tensor(&tensor))
        } else {
            let id = ctx.g.add_constant(tname.clone(), tensor);
            weights.insert(id);
            Val::Ir(id)
        };
        ctx.define(&tname, v);
    }
    let mut input_names = Vec::new();
    // Per graph input, the model input it takes (inputs bound to values are not graph inputs).
    let mut host_inputs = Vec::new();
    let mut shape_needs = Vec::new();
    for vi in &graph.input {
        let iname = vi.name.clone().unwrap_or_default();
        if ctx.lookup(&iname).is_some() {
            continue; // an initializer also listed as an input (IR version < 4)
        }
        let k = input_names.len();
        if let Some(Some(t)) = options.input_values.get(k) {
            let v = bound(&mut ctx, vi, &iname, t).map_err(|m| ferr(origin, m))?;
            ctx.define(&iname, v);
            input_names.push(iname);
            continue;
        }
        let given = input_shapes.and_then(|s| s.get(k));
        let ty = match input_type(vi, given) {
            Ok(ty) => ty,
            Err(InputType::Symbolic(why)) => {
                shape_needs.push(Need { input: iname.clone(), index: k, values: false, why });
                // Sized 1 for now: the graph is still walked to find the values it needs.
                input_type(vi, Some(&vec![1; 64])).map_err(|_| ferr(origin, format!("input '{iname}': no shape")))?
            }
            Err(InputType::Bad(m)) => return Err(ferr(origin, format!("input '{iname}': {m}"))),
        };
        if ir::elements_per_sample(&ty.shape).is_none() {
            let m = format!("input '{iname}' of shape {} holds more than 2^31 elements per sample", ty.shape);
            return Err(ferr(origin, m));
        }
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
        host_inputs.push(HostInput::Direct(k));
        input_names.push(iname);
    }
    let mut summary = Vec::new();
    let walked = graph::run_graph(&mut ctx, graph, &mut summary);
    if shape_needs.is_empty() {
        walked?;
    }
    let value_needs = ctx
        .needs
        .borrow()
        .iter()
        .filter_map(|(id, why)| {
            let ir::Producer::Input(i) = ctx.g.value(*id).producer else { return None };
            let HostInput::Direct(k) = host_inputs.get(i)? else { return None };
            Some(Need { input: input_names.get(*k)?.clone(), index: *k, values: true, why: why.clone() })
        })
        .filter(|n| !shape_needs.iter().any(|s| s.index == n.index))
        .collect::<Vec<Need>>();
    // Both kinds at once: what the sizes of 1 standing in for unknown ones let the walk find.
    let needs: Vec<Need> = shape_needs.into_iter().chain(value_needs).collect();
    if !needs.is_empty() {
        return Err(FrontendError::NeedsInputs { file: origin.into(), needs });
    }
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
        input_names: input_names.clone(),
        layer_configs: Default::default(),
        output_names,
    };
    Ok(Model {
        graph: ctx.g,
        info,
        weight_sources: HashMap::new(),
        weight_order: Vec::new(),
        // Inputs bound to values leave the graph: the model's inputs map onto the rest.
        model_inputs: if host_inputs.len() < input_names.len() { input_names.clone() } else { Vec::new() },
        host_inputs: if host_inputs.len() < input_names.len() { host_inputs } else { Vec::new() },
    })
}

/// A graph input or output as the file declares it: its name, element type and shape (`None`
/// for a symbolic or missing size; no shape at all when the file gives none).
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub name: String,
    pub dtype: Option<DType>,
    pub shape: Option<Vec<Option<usize>>>,
}

/// The inputs (initializers excluded) and outputs an ONNX file declares, without lowering it:
/// what a model that compiles per input ([`FrontendError::NeedsInputs`]) shows before its first
/// run.
pub fn declared(bytes: &[u8], origin: &str) -> Result<(Vec<Declared>, Vec<Declared>), FrontendError> {
    use proto::tensor_shape_proto::dimension::Value as DV;
    use proto::type_proto::Value as TV;
    let m = proto::ModelProto::decode(bytes)
        .map_err(|e| ferr(origin, format!("not a valid ONNX model (protobuf: {e}); truncated or corrupt?")))?;
    let graph = m.graph.as_ref().ok_or_else(|| ferr(origin, "the ONNX model has no graph"))?;
    let weights: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let one = |vi: &ValueInfoProto| {
        let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(TV::TensorType(t)) => Some(t),
            _ => None,
        };
        Declared {
            name: vi.name.clone().unwrap_or_default(),
            dtype: tt.and_then(|t| tensor::dtype_of(t.elem_type.unwrap_or(0)).ok()),
            shape: tt.and_then(|t| t.shape.as_ref()).map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(DV::DimValue(n)) if n > 0 => usize::try_from(n).ok(),
                        _ => None,
                    })
                    .collect()
            }),
        }
    };
    let inputs = graph.input.iter().filter(|vi| !weights.contains(vi.name.as_deref().unwrap_or(""))).map(one).collect();
    Ok((inputs, graph.output.iter().map(one).collect()))
}

/// Why an input has no IR type.
enum InputType {
    /// A size other than the batch is not known: the model compiles for the inputs given.
    Symbolic(String),
    Bad(String),
}

impl From<String> for InputType {
    fn from(m: String) -> InputType {
        InputType::Bad(m)
    }
}

impl From<&str> for InputType {
    fn from(m: &str) -> InputType {
        InputType::Bad(m.into())
    }
}

/// The value of an input bound to `t` ([`LoadOptions::input_values`]): `t` in the input's
/// element type, known at import when small, else a constant of the graph.
fn bound(ctx: &mut Ctx, vi: &ValueInfoProto, name: &str, t: &ir::Tensor) -> Result<Val, String> {
    use proto::type_proto::Value as TV;
    let Some(TV::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("input '{name}': only tensor inputs are supported"));
    };
    let dtype = tensor::dtype_of(tt.elem_type.unwrap_or(0))?;
    if let Some(shape) = &tt.shape {
        use proto::tensor_shape_proto::dimension::Value as DV;
        let fits = shape.dim.len() == t.shape().len()
            && shape.dim.iter().zip(t.shape()).all(|(d, &n)| match d.value {
                Some(DV::DimValue(m)) => m == n as i64,
                _ => true,
            });
        if !fits {
            return Err(format!("input '{name}': an array of shape {:?} does not fit the input", t.shape()));
        }
    }
    let t = if t.dtype() == dtype { t.clone() } else { t.cast(dtype) };
    if t.len() <= MAX_KNOWN {
        return Ok(Val::Known(KVal::from_tensor(&t)));
    }
    let t = if dtype == DType::Bool { t.cast(DType::F32) } else { t };
    Ok(Val::Ir(ctx.g.add_constant(name.to_string(), t)))
}

/// The IR type of a graph input: its element type and shape, a symbolic first axis as the batch,
/// other symbolic axes sized from `given` (the shape of the input it will run on).
fn input_type(vi: &ValueInfoProto, given: Option<&Vec<usize>>) -> Result<TensorType, InputType> {
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
            Some(DV::DimValue(n)) if *n > 0 => return Err(format!("dimension {n} is too large").into()),
            _ if i == 0 => dims.push(Dim::Batch),
            // Given by the array it runs on, empty axes included.
            _ if given.and_then(|g| g.get(i)).is_some_and(|&n| n <= 1 << 31) => {
                dims.push(Dim::Fixed(given.and_then(|g| g.get(i)).copied().unwrap_or(1)))
            }
            Some(DV::DimParam(p)) => return Err(InputType::Symbolic(format!("symbolic dimension '{p}' at axis {i}"))),
            _ => return Err(InputType::Symbolic(format!("axis {i} has no size"))),
        }
    }
    Ok(TensorType::new(dtype, Shape(dims)))
}

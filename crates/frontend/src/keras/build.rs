//! Builds the IR graph from a parsed model config and its weights.

use super::config::{self, Call, LayerSpec, ModelSpec, TensorRef};
use super::host_inputs;
use super::layers::{self, Ctx};
use super::order::{self, call_index};
use super::weights::PathLink;
use super::WeightStore;
use crate::model::{keras_shape, LayerSummary, Model, ModelFormat, ModelInfo};
use crate::text::HostInput;
use crate::FrontendError;
use ir::{DType, Dim, Shape, TensorType, ValueId};
use serde_json::Value;
use std::collections::HashMap;

/// What a file says beside its model config.
pub(crate) struct FileFacts {
    pub format: ModelFormat,
    pub keras_version: String,
    pub backend: Option<String>,
    pub training_config: Option<Value>,
    /// A `.keras` archive's vocabulary assets, by member name.
    pub assets: HashMap<String, String>,
}

pub(crate) fn build(
    config: &Value,
    store: WeightStore,
    origin: &str,
    facts: FileFacts,
) -> Result<Model, FrontendError> {
    let FileFacts { format, keras_version, backend, training_config, assets } = facts;
    let assets = &assets;
    let keras2 = format == ModelFormat::Keras2H5;
    let spec = config::parse_model(config, keras2, layers::KNOWN_CLASSES)
        .map_err(|m| FrontendError::Config { file: origin.into(), message: m })?;
    let mut unsupported = Vec::new();
    check_supported(&spec, &mut unsupported);
    if !unsupported.is_empty() {
        return Err(FrontendError::Unsupported { file: origin.into(), layers: unsupported });
    }
    let mut ctx = Ctx::new(origin, store, keras2, &spec.name);
    ctx.theano_kernels = backend.as_deref() == Some("theano");
    let host =
        host_inputs::find(&spec, assets).map_err(|m| FrontendError::Config { file: origin.into(), message: m })?;
    let (inputs, host_inputs) = make_inputs(&mut ctx, &spec, &host)?;
    let outputs = run_model(&mut ctx, &spec, &[], &inputs, true)?;
    let output_names: Vec<String> = if spec.is_sequential() {
        spec.layers.last().map(|l| vec![l.name.clone()]).unwrap_or_default()
    } else {
        spec.outputs.iter().map(|r| r.layer.clone()).collect()
    };
    let input_names: Vec<String> = ctx.g.inputs().iter().map(|&v| ctx.g.value(v).name.clone()).collect();
    let model_inputs: Vec<String> =
        if spec.is_sequential() { input_names.clone() } else { spec.inputs.iter().map(|r| r.layer.clone()).collect() };
    ctx.g.set_outputs(outputs);
    ctx.g
        .validate()
        .map_err(|e| FrontendError::Config { file: origin.into(), message: format!("built graph is invalid: {e}") })?;
    let mut layers_summary = std::mem::take(&mut ctx.summaries);
    if !spec.is_sequential() {
        // Functional summaries list InputLayers too, in config order.
        let order: HashMap<&str, usize> = spec.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        for l in spec.layers.iter().filter(|l| l.class == "InputLayer") {
            let Some(k) = spec.inputs.iter().position(|r| r.layer == l.name) else { continue };
            // An input the host turns into ids (strings, crossed features) shows its own shape.
            let graph_shape = ctx
                .g
                .inputs()
                .iter()
                .find(|&&v| ctx.g.value(v).name == l.name)
                .map(|&v| ctx.g.value(v).ty.shape.clone());
            let shape = match (graph_shape, input_type(l)) {
                (Some(s), _) if !host.text.contains_key(&l.name) && !host.hashing.contains_key(&l.name) => s,
                (_, Some(t)) => t.shape,
                (Some(s), None) => s,
                (None, None) => ctx.g.value(inputs[k]).ty.shape.clone(),
            };
            layers_summary.push(LayerSummary {
                name: l.name.clone(),
                class: l.class.clone(),
                output_shapes: vec![keras_shape(&shape)],
                params: 0,
                trainable_params: 0,
                connected_to: Vec::new(),
            });
        }
        layers_summary.sort_by_key(|s| order.get(s.name.as_str()).copied().unwrap_or(usize::MAX));
    }
    let total_params = layers_summary.iter().map(|l| l.params).sum();
    let trainable_params = layers_summary.iter().map(|l| l.trainable_params).sum();
    // Keras's weight order: top-level layers in config order, each layer's weights as read.
    let position: HashMap<&str, usize> = spec.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
    let mut reads: Vec<(usize, usize, String)> = std::mem::take(&mut ctx.weight_reads)
        .into_iter()
        .enumerate()
        .map(|(i, (layer, path))| (position.get(layer.as_str()).copied().unwrap_or(usize::MAX), i, path))
        .collect();
    reads.sort();
    let weight_order = reads.into_iter().map(|(_, _, p)| p).collect();
    let graph = ctx.g;
    let weight_sources = ctx.sources;
    Ok(Model {
        graph,
        weight_sources,
        weight_order,
        host_inputs,
        model_inputs,
        info: ModelInfo {
            name: spec.name.clone(),
            model_class: spec.class.clone(),
            format,
            keras_version,
            backend,
            layers: layers_summary,
            total_params,
            trainable_params,
            training_config,
            input_names,
            output_names,
            layer_configs: spec.layers.iter().map(|l| (l.name.clone(), (l.class.clone(), l.config.clone()))).collect(),
        },
    })
}

fn check_supported(spec: &ModelSpec, out: &mut Vec<String>) {
    for l in &spec.layers {
        if let Some(m) = &l.model {
            check_supported(m, out);
            continue;
        }
        layers::check_layer(&l.class, &l.name, &l.config, l.module.as_deref(), out);
    }
}

fn parse_dtype(v: Option<&Value>) -> Option<DType> {
    match v? {
        Value::String(s) => DType::from_name(s),
        Value::Object(o) => DType::from_name(o.get("config")?.get("name")?.as_str()?),
        _ => None,
    }
}

fn shape_from_json(v: &Value) -> Option<Shape> {
    let a = v.as_array()?;
    Some(Shape(a.iter().map(|d| d.as_u64().map(|n| Dim::Fixed(n as usize)).unwrap_or(Dim::Batch)).collect()))
}

fn input_type(l: &LayerSpec) -> Option<TensorType> {
    let c = &l.config;
    let shape =
        c.get("batch_shape").or_else(|| c.get("batch_input_shape")).and_then(shape_from_json).or_else(|| {
            c.get("input_shape").and_then(shape_from_json).map(|s| Shape([vec![Dim::Batch], s.0].concat()))
        })?;
    let dtype = parse_dtype(c.get("dtype")).unwrap_or(DType::F32);
    Some(TensorType::new(dtype, shape))
}

fn make_inputs(
    ctx: &mut Ctx,
    spec: &ModelSpec,
    host: &host_inputs::HostLayers,
) -> Result<(Vec<ValueId>, Vec<HostInput>), FrontendError> {
    let cfg_err = |m: String| FrontendError::Config { file: ctx.origin.clone(), message: m };
    if spec.is_sequential() {
        let first = spec.layers.first().ok_or_else(|| cfg_err("the Sequential model has no layers".into()))?;
        let ty = input_type(first)
            .or_else(|| {
                let s = shape_from_json(spec.build_input_shape.as_ref()?)?;
                Some(TensorType::new(parse_dtype(first.config.get("dtype")).unwrap_or(DType::F32), s))
            })
            .ok_or_else(|| cfg_err("the Sequential model declares no input shape".into()))?;
        let name = if first.class == "InputLayer" { first.name.clone() } else { "input".to_string() };
        let (ty, h) = match host.text.get(&name) {
            Some(t) => (t.graph_type(&ty), HostInput::Text(0, t.clone())),
            None => (ty, HostInput::Direct(0)),
        };
        bounded_input(&name, &ty).map_err(cfg_err)?;
        return Ok((vec![ctx.g.add_input(name, ty)], vec![h]));
    }
    // One value per model input (the members of a crossing share the crossing's graph input),
    // and how each graph input is made from the model's inputs.
    let mut out: Vec<ValueId> = Vec::new();
    let mut made = Vec::new();
    for (k, r) in spec.inputs.iter().enumerate() {
        let l = spec
            .layers
            .iter()
            .find(|l| l.name == r.layer)
            .ok_or_else(|| cfg_err(format!("input layer '{}' is not among the layers", r.layer)))?;
        if let Some((members, c)) = host.crossings.iter().find(|(m, _)| m.contains(&l.name)) {
            let first = members.first().and_then(|m| spec.inputs.iter().position(|i| &i.layer == m));
            if first != Some(k) {
                let at = first
                    .and_then(|f| out.get(f).copied())
                    .ok_or_else(|| cfg_err(format!("{}: its inputs are out of order", c.layer)))?;
                out.push(at);
                continue;
            }
            let idx: Vec<usize> = members
                .iter()
                .map(|m| spec.inputs.iter().position(|i| &i.layer == m))
                .collect::<Option<_>>()
                .ok_or_else(|| cfg_err(format!("{}: reads a layer that is no model input", c.layer)))?;
            let ty = c.graph_type();
            let v = ctx.g.add_input(c.name.clone(), ty);
            out.push(v);
            made.push(HostInput::Cross(idx, c.clone()));
            continue;
        }
        let mut ty = input_type(l).ok_or_else(|| cfg_err(format!("input layer '{}' has no shape", l.name)))?;
        let h = match (host.text.get(&l.name), host.hashing.get(&l.name)) {
            (Some(t), _) => {
                ty = t.graph_type(&ty);
                HostInput::Text(k, t.clone())
            }
            (None, Some(hs)) => {
                ty = hs.graph_type(&ty);
                HostInput::Hash(k, hs.clone())
            }
            (None, None) => HostInput::Direct(k),
        };
        bounded_input(&l.name, &ty).map_err(cfg_err)?;
        out.push(ctx.g.add_input(l.name.clone(), ty));
        made.push(h);
    }
    if out.is_empty() {
        return Err(cfg_err("the model has no inputs".into()));
    }
    Ok((out, made))
}

pub(crate) fn run_model(
    ctx: &mut Ctx,
    spec: &ModelSpec,
    path: &[PathLink],
    inputs: &[ValueId],
    top: bool,
) -> Result<Vec<ValueId>, FrontendError> {
    if spec.is_sequential() {
        let mut x = inputs.to_vec();
        for l in &spec.layers {
            if l.class == "InputLayer" {
                continue;
            }
            let prev = x.iter().map(|&v| ctx.g.value(v).name.clone()).collect();
            x = apply_layer(ctx, l, path, None, x, Vec::new())?;
            if top {
                ctx.record_summary(l, &x, prev);
            }
        }
        return Ok(x);
    }
    let mut produced: HashMap<(String, usize), Vec<ValueId>> = HashMap::new();
    for (i, r) in spec.inputs.iter().enumerate() {
        let v = *inputs
            .get(i)
            .ok_or_else(|| ctx.config_err(format!("model '{}' called with too few inputs", spec.name)))?;
        produced.insert((r.layer.clone(), 0), vec![v]);
    }
    // Keras 3's run order first (masks depend on it), then any call it leaves out, in config
    // order; a call whose inputs are not there yet waits for the next sweep.
    let mut pending: Vec<(usize, usize)> = if spec.keras2 { None } else { order::run_order(spec) }.unwrap_or_default();
    let ordered: std::collections::HashSet<(usize, usize)> = pending.iter().copied().collect();
    for (li, l) in spec.layers.iter().enumerate() {
        if l.class == "InputLayer" {
            continue;
        }
        for ci in 0..l.calls.len() {
            if !ordered.contains(&(li, ci)) {
                pending.push((li, ci));
            }
        }
    }
    let resolve = |produced: &HashMap<(String, usize), Vec<ValueId>>, r: &TensorRef, io: bool| -> Option<ValueId> {
        produced.get(&(r.layer.clone(), call_index(spec, r, io))).and_then(|v| v.get(r.tensor)).copied()
    };
    while !pending.is_empty() {
        let mut progressed = false;
        let mut i = 0;
        while i < pending.len() {
            let (li, ci) = pending[i];
            let l = &spec.layers[li];
            let call: &Call = &l.calls[ci];
            let args: Option<Vec<ValueId>> = call.args.iter().map(|r| resolve(&produced, r, false)).collect();
            let kws: Option<Vec<(String, ValueId)>> =
                call.tensor_kwargs.iter().map(|(k, r)| resolve(&produced, r, false).map(|v| (k.clone(), v))).collect();
            match (args, kws) {
                (Some(args), Some(kws)) => {
                    let prev = call.args.iter().map(|r| r.layer.clone()).collect();
                    let outs = apply_layer(ctx, l, path, Some(call), args, kws)?;
                    if top && ci == 0 {
                        ctx.record_summary(l, &outs, prev);
                    }
                    produced.insert((l.name.clone(), ci), outs);
                    pending.remove(i);
                    progressed = true;
                }
                _ => i += 1,
            }
        }
        if !progressed {
            let (li, ci) = pending[0];
            let l = &spec.layers[li];
            let missing: Vec<String> = l.calls[ci]
                .args
                .iter()
                .chain(l.calls[ci].tensor_kwargs.iter().map(|(_, r)| r))
                .filter(|r| resolve(&produced, r, false).is_none())
                .map(|r| format!("{}[{}][{}]", r.layer, r.node, r.tensor))
                .collect();
            return Err(ctx.config_err(format!(
                "layer '{}' reads tensors that no layer produces: {}",
                l.name,
                missing.join(", ")
            )));
        }
    }
    spec.outputs
        .iter()
        .map(|r| {
            resolve(&produced, r, true).ok_or_else(|| {
                ctx.config_err(format!("model output {}[{}][{}] is never produced", r.layer, r.node, r.tensor))
            })
        })
        .collect()
}

fn apply_layer(
    ctx: &mut Ctx,
    l: &LayerSpec,
    path: &[PathLink],
    call: Option<&Call>,
    inputs: Vec<ValueId>,
    kw_inputs: Vec<(String, ValueId)>,
) -> Result<Vec<ValueId>, FrontendError> {
    let mut p = path.to_vec();
    p.push(PathLink { name: l.name.clone(), key: l.archive_key.clone() });
    if let Some(m) = &l.model {
        let mut ins = inputs;
        ins.extend(kw_inputs.into_iter().map(|(_, v)| v));
        return run_model(ctx, m, &p, &ins, false);
    }
    layers::lower_layer(ctx, l, &p, call, inputs, kw_inputs)
}

/// An input of at most 2^31 elements per sample, like every value of the graph.
fn bounded_input(name: &str, ty: &TensorType) -> Result<(), String> {
    match ir::elements_per_sample(&ty.shape) {
        Some(_) => Ok(()),
        None => Err(format!("input '{name}' of shape {} holds more than 2^31 elements per sample", ty.shape)),
    }
}

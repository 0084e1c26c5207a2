//! The Keras model config (Sequential / Functional, Keras 2 and Keras 3 schemas) as a layer tree.

use serde_json::Value;

/// A reference to one output tensor of one call of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorRef {
    pub layer: String,
    pub node: usize,
    pub tensor: usize,
}

/// One call of a layer: positional tensor arguments (nested lists flattened), tensor keyword
/// arguments, and the other keyword arguments as JSON.
#[derive(Debug, Clone, Default)]
pub struct Call {
    pub args: Vec<TensorRef>,
    /// The positional arguments as written (tensors and literals), Keras 3 configs only.
    pub raw_args: Vec<Value>,
    pub tensor_kwargs: Vec<(String, TensorRef)>,
    pub kwargs: serde_json::Map<String, Value>,
}

/// One layer of a model config.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub class: String,
    pub name: String,
    pub config: Value,
    pub calls: Vec<Call>,
    /// The group name of this layer in a `.keras` archive's weights file.
    pub archive_key: String,
    /// Set when the layer is itself a model.
    pub model: Option<Box<ModelSpec>>,
    /// The Python module (Keras 3) or registered name the class came from, when recorded.
    pub module: Option<String>,
}

/// A Sequential or Functional model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub class: String,
    pub name: String,
    pub layers: Vec<LayerSpec>,
    pub inputs: Vec<TensorRef>,
    pub outputs: Vec<TensorRef>,
    /// Keras 2 schema (different node references and inbound-node format).
    pub keras2: bool,
    /// A build/input shape found in the config (Sequential without an InputLayer).
    pub build_input_shape: Option<Value>,
}

impl ModelSpec {
    /// True for Sequential models.
    pub fn is_sequential(&self) -> bool {
        self.class == "Sequential"
    }
}

/// Keras's `to_snake_case` (`Conv2D` → `conv2d`, `ReLU` → `re_lu`, `MultiHeadAttention` →
/// `multi_head_attention`).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
    // (.)([A-Z][a-z]+) -> \1_\2
    let mut s1: Vec<char> = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i > 0 && chars[i].is_ascii_uppercase() && i + 1 < chars.len() && chars[i + 1].is_ascii_lowercase() {
            s1.push('_');
        }
        s1.push(chars[i]);
        i += 1;
    }
    // ([a-z])([A-Z]) -> \1_\2
    let mut out = String::with_capacity(s1.len() + 8);
    for (k, &c) in s1.iter().enumerate() {
        if k > 0 && c.is_ascii_uppercase() && s1[k - 1].is_ascii_lowercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn parse_ref(v: &Value) -> Option<TensorRef> {
    let a = v.as_array()?;
    if a.len() < 3 {
        return None;
    }
    Some(TensorRef {
        layer: a[0].as_str()?.to_string(),
        node: a[1].as_u64()? as usize,
        tensor: a[2].as_u64()? as usize,
    })
}

/// `input_layers` / `output_layers`: a flat triple (Keras 3, single) or a list of triples.
fn parse_ref_list(v: Option<&Value>) -> Vec<TensorRef> {
    match v {
        Some(Value::Array(a)) if a.first().is_some_and(|x| x.is_string()) => {
            parse_ref(&Value::Array(a.clone())).into_iter().collect()
        }
        Some(Value::Array(a)) => a.iter().filter_map(parse_ref).collect(),
        _ => Vec::new(),
    }
}

fn keras_tensor(v: &Value) -> Option<TensorRef> {
    let o = v.as_object()?;
    if o.get("class_name")?.as_str()? != "__keras_tensor__" {
        return None;
    }
    parse_ref(o.get("config")?.get("keras_history")?)
}

fn collect_tensors(v: &Value, out: &mut Vec<TensorRef>) {
    if let Some(r) = keras_tensor(v) {
        out.push(r);
    } else if let Value::Array(a) = v {
        for x in a {
            collect_tensors(x, out);
        }
    }
}

fn parse_call_k3(node: &Value) -> Result<Call, String> {
    let mut call = Call::default();
    match node.get("args") {
        Some(args) => {
            collect_tensors(args, &mut call.args);
            if let Value::Array(a) = args {
                call.raw_args = a.clone();
            }
        }
        None => return Err("inbound node without 'args'".into()),
    }
    if let Some(Value::Object(kw)) = node.get("kwargs") {
        for (k, v) in kw {
            let mut ts = Vec::new();
            collect_tensors(v, &mut ts);
            match ts.len() {
                0 => {
                    call.kwargs.insert(k.clone(), v.clone());
                }
                _ => {
                    for t in ts {
                        call.tensor_kwargs.push((k.clone(), t));
                    }
                }
            }
        }
    }
    Ok(call)
}

fn parse_call_k2(node: &Value) -> Result<Call, String> {
    let mut call = Call::default();
    let entries = node.as_array().ok_or("inbound node is not a list")?;
    for e in entries {
        let r = parse_ref(e).ok_or("inbound entry is not [layer, node, tensor, kwargs]")?;
        call.args.push(r);
        if let Some(Value::Object(kw)) = e.as_array().and_then(|a| a.get(3)) {
            for (k, v) in kw {
                match parse_ref(v) {
                    Some(t) if v.as_array().is_some_and(|a| a.first().is_some_and(|x| x.is_string())) => {
                        call.tensor_kwargs.push((k.clone(), t))
                    }
                    _ => {
                        call.kwargs.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(call)
}

/// The class names the lowering registry supports, as `keras.ops` entries and as layers: Keras
/// 3's legacy `.h5` does not say which entries are op calls, so parsing asks.
#[derive(Debug, Clone, Copy)]
pub struct KnownClasses {
    pub is_op: fn(&str) -> bool,
    pub is_layer: fn(&str) -> bool,
}

/// Parses `{"class_name": ..., "config": ...}` of a model.
pub fn parse_model(v: &Value, keras2: bool, known: KnownClasses) -> Result<ModelSpec, String> {
    let class = v.get("class_name").and_then(Value::as_str).ok_or("model config has no class_name")?.to_string();
    let cfg = v.get("config").ok_or("model config has no 'config'")?;
    let name = cfg.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let layers_json: Vec<Value> = match cfg.get("layers") {
        Some(Value::Array(a)) => a.clone(),
        _ => match cfg {
            // Very old Keras 2 Sequential configs are a bare list of layers.
            Value::Array(a) => a.clone(),
            _ => return Err(format!("model '{name}' has no layer list")),
        },
    };
    let mut counters: std::collections::HashMap<String, usize> = Default::default();
    let mut layers = Vec::with_capacity(layers_json.len());
    for l in &layers_json {
        let lclass = l.get("class_name").and_then(Value::as_str).ok_or("layer without class_name")?.to_string();
        let lcfg = l.get("config").cloned().unwrap_or(Value::Null);
        let lname = l
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| lcfg.get("name").and_then(Value::as_str))
            .ok_or_else(|| format!("a {lclass} layer has no name"))?
            .to_string();
        let module = l
            .get("registered_name")
            .and_then(Value::as_str)
            .filter(|r| r.contains('>'))
            .or_else(|| l.get("module").and_then(Value::as_str))
            .map(str::to_string);
        let mut calls = Vec::new();
        let tf_op = lclass == "TFOpLambda" || lclass == "SlicingOpLambda";
        if let Some(Value::Array(nodes)) = l.get("inbound_nodes").filter(|_| !tf_op) {
            for node in nodes {
                let call = if node.is_object() { parse_call_k3(node) } else { parse_call_k2(node) };
                calls.push(call.map_err(|e| format!("layer '{lname}': {e}"))?);
            }
        }
        // Keras 2's TensorFlow function calls, as the `keras.ops` entries Keras 3 would write.
        let (mut lclass, mut lcfg, mut module) = (lclass, lcfg, module);
        if lclass == "TFOpLambda" || lclass == "SlicingOpLambda" {
            calls.clear();
            let function = lcfg.get("function").and_then(Value::as_str).unwrap_or("").to_string();
            let nodes = l.get("inbound_nodes").and_then(Value::as_array).cloned().unwrap_or_default();
            let t: Option<Vec<(String, Value, Value)>> =
                nodes.iter().map(|n| super::tf_op::translate(&function, n)).collect();
            if let Some((class, mut cfg, _)) = t.as_ref().and_then(|t| t.first()).cloned() {
                for (_, _, node) in t.iter().flatten() {
                    calls.push(parse_call_k3(node).map_err(|e| format!("layer '{lname}': {e}"))?);
                }
                cfg["name"] = Value::String(lname.clone());
                cfg["function"] = Value::String(function);
                (lclass, lcfg, module) = (class, cfg, Some("keras.src.ops".into()));
            }
        }
        // Keras 3's legacy .h5 drops the module of `keras.ops` entries.
        let module =
            module.or_else(|| legacy_op_entry(&lclass, &lcfg, calls.first(), known).then(|| "keras.src.ops".into()));
        // `keras.ops` entries are operations, not layers: the weights file does not count them.
        let archive_key = if is_ops_module(module.as_deref()) {
            snake_case(&lclass)
        } else {
            let base = snake_case(&lclass);
            let n = counters.entry(base.clone()).or_insert(0);
            let key = if *n == 0 { base.clone() } else { format!("{base}_{n}") };
            *n += 1;
            key
        };
        let model = if is_model_class(&lclass) { Some(Box::new(parse_model(l, keras2, known)?)) } else { None };
        layers.push(LayerSpec { class: lclass, name: lname, config: lcfg, calls, archive_key, model, module });
    }
    Ok(ModelSpec {
        class,
        name,
        layers,
        inputs: parse_ref_list(cfg.get("input_layers")),
        outputs: parse_ref_list(cfg.get("output_layers")),
        keras2,
        build_input_shape: cfg
            .get("build_input_shape")
            .cloned()
            .or_else(|| v.get("build_config").and_then(|b| b.get("input_shape")).cloned()),
    })
}

/// Whether a layer entry's module is one of Keras 3's op modules (`keras.src.ops.numpy`, ...):
/// a `keras.ops` call recorded in a functional model.
pub fn is_ops_module(module: Option<&str>) -> bool {
    module.is_some_and(|m| m.starts_with("keras.src.ops") || m.starts_with("keras.ops"))
}

/// Whether an entry without a module (Keras 3's legacy .h5) is a `keras.ops` call: its config
/// has no `trainable` (every layer's has), and its class is an op's — for names shared with
/// layers, called the way ops are (`Add` on two arguments rather than a list, `Reshape` to a
/// `newshape`).
fn legacy_op_entry(class: &str, config: &Value, call: Option<&Call>, known: KnownClasses) -> bool {
    if !config.is_object() || config.get("trainable").is_some() || class == "InputLayer" || is_model_class(class) {
        return false;
    }
    if !(known.is_op)(class) {
        return false;
    }
    if !(known.is_layer)(class) {
        return true;
    }
    match class {
        "Reshape" => config.get("newshape").is_some(),
        _ => call.and_then(|c| c.raw_args.first()).is_some_and(|a| !a.is_array()),
    }
}

/// Model classes that nest as layers.
pub fn is_model_class(class: &str) -> bool {
    matches!(class, "Sequential" | "Functional" | "Model")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras() {
        for (a, b) in [
            ("Conv2D", "conv2d"),
            ("ReLU", "re_lu"),
            ("PReLU", "p_re_lu"),
            ("BatchNormalization", "batch_normalization"),
            ("MultiHeadAttention", "multi_head_attention"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("LSTM", "lstm"),
            ("InputLayer", "input_layer"),
            ("UpSampling2D", "up_sampling2d"),
            ("DepthwiseConv2D", "depthwise_conv2d"),
            ("Conv2DTranspose", "conv2d_transpose"),
            ("ZeroPadding2D", "zero_padding2d"),
        ] {
            assert_eq!(snake_case(a), b, "{a}");
        }
    }

    #[test]
    fn parses_both_inbound_formats() {
        let k2 = serde_json::json!([["a", 0, 0, {}], ["b", 1, 0, {"value": ["c", 0, 0]}]]);
        let c = parse_call_k2(&k2).unwrap();
        assert_eq!(c.args.len(), 2);
        assert_eq!(c.args[1].node, 1);
        assert_eq!(c.tensor_kwargs[0].1.layer, "c");
        let kt = |l: &str| serde_json::json!({"class_name": "__keras_tensor__", "config": {"shape": [null, 3], "keras_history": [l, 0, 0]}});
        let k3 = serde_json::json!({"args": [[kt("x"), kt("y")]], "kwargs": {"mask": null, "value": kt("z")}});
        let c = parse_call_k3(&k3).unwrap();
        assert_eq!(c.args.iter().map(|r| r.layer.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(c.tensor_kwargs[0].0, "value");
        assert!(c.kwargs.contains_key("mask"));
    }
}

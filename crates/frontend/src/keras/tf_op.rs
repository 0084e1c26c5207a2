//! Keras 2's `TFOpLambda` and `SlicingOpLambda` entries: TensorFlow functions called on symbolic
//! tensors in a functional model (`x * 2.0`, `tf.reduce_mean(x, axis=1)`, `x[:, 0]`). Each is
//! translated into the `keras.ops` entry Keras 3 would record for the same call, so one lowering
//! serves both. tf-keras writes a call as `[layer, node, tensor, kwargs]` for a tensor first
//! argument, a list of those for a list first argument, or `["_CONSTANT_VALUE", -1, value,
//! kwargs]`; every other argument is a keyword, with tensors as `[layer, node, tensor]`.

use serde_json::{json, Map, Value};

/// The `keras.ops` class, its config and its call (`{"args": [...]}` in Keras 3's form) for one
/// call of a TF function, or `None` when the function is not one kerasc knows.
pub(crate) fn translate(function: &str, node: &Value) -> Option<(String, Value, Value)> {
    let (first, kwargs) = first_arg(node)?;
    let kw = |k: &str| kwargs.get(k).filter(|v| !v.is_null()).map(tensor_refs);
    let f = function.strip_prefix("compat.v1.").unwrap_or(function);
    let mut config = Map::new();
    let mut args = vec![first];
    let class = match f {
        // x op y
        "__operators__.add" | "math.add" | "add" => binary("Add", &kw, &mut args)?,
        "math.subtract" | "subtract" | "__operators__.sub" => binary("Subtract", &kw, &mut args)?,
        "math.multiply" | "multiply" | "__operators__.mul" => binary("Multiply", &kw, &mut args)?,
        "math.truediv" | "math.divide" | "divide" | "truediv" | "__operators__.truediv" => {
            binary("TrueDivide", &kw, &mut args)?
        }
        "math.floordiv" | "floordiv" | "floor_div" | "__operators__.floordiv" => binary("FloorDivide", &kw, &mut args)?,
        "math.floormod" | "math.mod" | "__operators__.mod" => binary("Mod", &kw, &mut args)?,
        "math.pow" | "pow" | "__operators__.pow" => binary("Power", &kw, &mut args)?,
        "math.maximum" | "maximum" => binary("Maximum", &kw, &mut args)?,
        "math.minimum" | "minimum" => binary("Minimum", &kw, &mut args)?,
        "math.greater" | "__operators__.gt" => binary("Greater", &kw, &mut args)?,
        "math.greater_equal" | "__operators__.ge" => binary("GreaterEqual", &kw, &mut args)?,
        "math.less" | "__operators__.lt" => binary("Less", &kw, &mut args)?,
        "math.less_equal" | "__operators__.le" => binary("LessEqual", &kw, &mut args)?,
        "math.equal" | "__operators__.eq" => binary("Equal", &kw, &mut args)?,
        "math.not_equal" | "__operators__.ne" => binary("NotEqual", &kw, &mut args)?,
        "math.logical_and" | "__operators__.and_" => binary("LogicalAnd", &kw, &mut args)?,
        "math.logical_or" | "__operators__.or_" => binary("LogicalOr", &kw, &mut args)?,
        // f(x)
        "math.logical_not" => "LogicalNot",
        "nn.relu" => "Relu",
        "nn.relu6" => "Relu6",
        "math.sigmoid" | "nn.sigmoid" | "sigmoid" => "Sigmoid",
        "math.tanh" | "nn.tanh" | "tanh" => "Tanh",
        "math.exp" | "exp" => "Exp",
        "math.log" => "Log",
        "math.sqrt" | "sqrt" => "Sqrt",
        "math.rsqrt" => "Rsqrt",
        "math.square" | "square" => "Square",
        "math.abs" | "abs" => "Absolute",
        "math.negative" | "__operators__.neg" | "negative" => "Negative",
        "math.reciprocal" | "math.reciprocal_no_nan" => "Reciprocal",
        "math.erf" => "Erf",
        "math.sin" => "Sin",
        "math.cos" => "Cos",
        "math.floor" | "floor" => "Floor",
        "math.ceil" => "Ceil",
        "math.sign" | "sign" => "Sign",
        "math.softplus" | "nn.softplus" => "Softplus",
        "math.softsign" | "nn.softsign" => "Softsign",
        "nn.silu" | "nn.swish" => "Silu",
        "nn.selu" => "Selu",
        "nn.elu" => "Elu",
        "math.log_sigmoid" => "LogSigmoid",
        "math.log1p" => "Log1p",
        "math.expm1" => "Expm1",
        "identity" | "stop_gradient" => "ConvertToTensor",
        "nn.gelu" => {
            // TensorFlow's default is the exact form.
            config.insert("approximate".into(), kw("approximate").unwrap_or(json!(false)));
            "Gelu"
        }
        "nn.leaky_relu" => {
            config.insert("negative_slope".into(), kw("alpha").unwrap_or(json!(0.2)));
            "LeakyRelu"
        }
        // Reductions
        "math.reduce_mean" | "reduce_mean" => reduce("Mean", &kw, &mut config),
        "math.reduce_sum" | "reduce_sum" => reduce("Sum", &kw, &mut config),
        "math.reduce_max" | "reduce_max" => reduce("Max", &kw, &mut config),
        "math.reduce_min" | "reduce_min" => reduce("Min", &kw, &mut config),
        "math.reduce_prod" | "reduce_prod" => reduce("Prod", &kw, &mut config),
        "math.reduce_std" => reduce("Std", &kw, &mut config),
        "math.reduce_variance" => reduce("Var", &kw, &mut config),
        "math.reduce_any" | "reduce_any" => reduce("Any", &kw, &mut config),
        "math.reduce_all" | "reduce_all" => reduce("All", &kw, &mut config),
        "nn.softmax" | "math.softmax" => {
            config.insert("axis".into(), kw("axis").unwrap_or(json!(-1)));
            "Softmax"
        }
        "nn.log_softmax" | "math.log_softmax" => {
            config.insert("axis".into(), kw("axis").unwrap_or(json!(-1)));
            "LogSoftmax"
        }
        // Shapes
        "reshape" => {
            config.insert("newshape".into(), kw("shape")?);
            "Reshape"
        }
        "expand_dims" => {
            config.insert("axis".into(), kw("axis")?);
            "ExpandDims"
        }
        "squeeze" => {
            config.insert("axis".into(), kw("axis").or_else(|| kw("squeeze_dims")).unwrap_or(Value::Null));
            "Squeeze"
        }
        "transpose" => {
            config.insert("axes".into(), kw("perm").unwrap_or(Value::Null));
            "Transpose"
        }
        "concat" => {
            config.insert("axis".into(), kw("axis")?);
            "Concatenate"
        }
        "stack" => {
            config.insert("axis".into(), kw("axis").unwrap_or(json!(0)));
            "Stack"
        }
        "tile" => {
            config.insert("repeats".into(), kw("multiples")?);
            "Tile"
        }
        "cast" | "dtypes.cast" => {
            config.insert("dtype".into(), kw("dtype")?);
            "Cast"
        }
        "clip_by_value" => {
            config.insert("x_min".into(), kw("clip_value_min")?);
            config.insert("x_max".into(), kw("clip_value_max")?);
            "Clip"
        }
        "where" | "where_v2" => {
            args.push(operand(kw("x")?));
            args.push(operand(kw("y")?));
            "Where"
        }
        "linalg.matmul" | "matmul" => {
            args.push(operand(kw("b")?));
            for k in ["transpose_a", "transpose_b", "adjoint_a", "adjoint_b"] {
                if kw(k).and_then(|v| v.as_bool()) == Some(true) {
                    return None;
                }
            }
            "Matmul"
        }
        "gather" => {
            if kw("batch_dims").and_then(|v| v.as_i64()).unwrap_or(0) != 0 {
                return None;
            }
            args.push(operand(kw("indices")?));
            config.insert("axis".into(), kw("axis").unwrap_or(json!(0)));
            "Take"
        }
        "split" => {
            let n = kw("num_or_size_splits")?;
            let sections = match n {
                Value::Array(sizes) => {
                    // Sizes → split points.
                    let mut at = 0i64;
                    let mut points = Vec::new();
                    for s in &sizes[..sizes.len().saturating_sub(1)] {
                        at += s.as_i64()?;
                        points.push(json!(at));
                    }
                    Value::Array(points)
                }
                n => n,
            };
            config.insert("indices_or_sections".into(), sections);
            config.insert("axis".into(), kw("axis").unwrap_or(json!(0)));
            "Split"
        }
        "__operators__.getitem" => {
            args.push(slice_spec(&kw("slice_spec")?)?);
            "GetItem"
        }
        _ => return None,
    };
    Some((class.to_string(), Value::Object(config), json!({ "args": args, "kwargs": {} })))
}

/// The first positional argument (tensors as Keras 3 markers) and the keyword arguments.
fn first_arg(node: &Value) -> Option<(Value, Map<String, Value>)> {
    let a = node.as_array()?;
    if is_entry(node) {
        let kwargs = a.get(3).and_then(Value::as_object).cloned().unwrap_or_default();
        return Some((entry_value(a), kwargs));
    }
    // A list first argument: one entry per element, each carrying the same kwargs.
    let kwargs = a.first()?.as_array()?.get(3).and_then(Value::as_object).cloned().unwrap_or_default();
    let items: Option<Vec<Value>> =
        a.iter().map(|e| if is_entry(e) { e.as_array().map(|x| entry_value(x)) } else { None }).collect();
    Some((Value::Array(items?), kwargs))
}

/// `[layer, node, tensor, ...]` or `["_CONSTANT_VALUE", -1, value, ...]`.
fn is_entry(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.len() >= 3 && a[0].is_string() && a[1].is_i64())
}

fn entry_value(a: &[Value]) -> Value {
    if a[0].as_str() == Some("_CONSTANT_VALUE") {
        return constant(&a[2]);
    }
    marker(a)
}

fn marker(a: &[Value]) -> Value {
    json!({"class_name": "__keras_tensor__", "config": {"keras_history": [a[0], a[1], a[2]]}})
}

/// A constant argument: numbers stay numbers, arrays become constant tensors.
fn constant(v: &Value) -> Value {
    match v {
        Value::Array(_) => json!({"class_name": "__tensor__", "config": {"value": v, "dtype": "float32"}}),
        other => other.clone(),
    }
}

/// A keyword value with tensor references (`[layer, node, tensor]`) made Keras 3 markers.
fn tensor_refs(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.len() == 3 && a[0].is_string() && a[1].is_i64() && a[2].is_i64() => marker(a),
        Value::Array(a) if a.iter().any(|x| x.is_array()) => Value::Array(a.iter().map(tensor_refs).collect()),
        other => other.clone(),
    }
}

/// A keyword operand: a tensor marker as is, anything else as a constant.
fn operand(v: Value) -> Value {
    if v.get("class_name").is_some() {
        v
    } else {
        constant(&v)
    }
}

fn binary(class: &'static str, kw: &dyn Fn(&str) -> Option<Value>, args: &mut Vec<Value>) -> Option<&'static str> {
    args.push(operand(kw("y")?));
    Some(class)
}

fn reduce(class: &'static str, kw: &dyn Fn(&str) -> Option<Value>, config: &mut Map<String, Value>) -> &'static str {
    config.insert("axis".into(), kw("axis").unwrap_or(Value::Null));
    config.insert("keepdims".into(), kw("keepdims").or_else(|| kw("keep_dims")).unwrap_or(json!(false)));
    class
}

/// tf-keras's slice spec (`{"start", "stop", "step"}` dicts, ints, null for a new axis, an
/// ellipsis) in Keras 3's GetItem form.
fn slice_spec(v: &Value) -> Option<Value> {
    let one = |x: &Value| -> Option<Value> {
        Some(match x {
            Value::Object(o) if o.contains_key("start") || o.contains_key("stop") || o.contains_key("step") => {
                let g = |k: &str| o.get(k).cloned().unwrap_or(Value::Null);
                json!({"class_name": "__slice__", "config": {"start": g("start"), "stop": g("stop"), "step": g("step")}})
            }
            Value::Object(o) if o.get("class_name").and_then(Value::as_str) == Some("__ellipsis__") => x.clone(),
            Value::String(s) if s == "..." || s == "Ellipsis" => json!({"class_name": "__ellipsis__", "config": {}}),
            Value::Number(_) | Value::Null => x.clone(),
            _ => return None,
        })
    };
    match v {
        Value::Array(items) => Some(Value::Array(items.iter().map(one).collect::<Option<_>>()?)),
        x => one(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_with_a_number_a_tensor_and_a_constant_first_argument() {
        let (c, _, call) = translate("math.multiply", &json!(["dense", 0, 0, {"y": 2.0, "name": null}])).unwrap();
        assert_eq!(c, "Multiply");
        assert_eq!(call["args"][0]["config"]["keras_history"], json!(["dense", 0, 0]));
        assert_eq!(call["args"][1], json!(2.0));
        let (_, _, call) =
            translate("__operators__.add", &json!(["a", 0, 0, {"y": ["b", 1, 0], "name": null}])).unwrap();
        assert_eq!(call["args"][1]["config"]["keras_history"], json!(["b", 1, 0]));
        let (c, _, call) =
            translate("math.subtract", &json!(["_CONSTANT_VALUE", -1, 1.0, {"y": ["x", 0, 0], "name": null}])).unwrap();
        assert_eq!((c.as_str(), &call["args"][0]), ("Subtract", &json!(1.0)));
    }

    #[test]
    fn list_first_argument_reductions_and_slices() {
        let (c, cfg, call) =
            translate("concat", &json!([["a", 0, 0, {"axis": -1, "name": null}], ["b", 0, 0, {"axis": -1}]])).unwrap();
        assert_eq!((c.as_str(), &cfg["axis"]), ("Concatenate", &json!(-1)));
        assert_eq!(call["args"][0].as_array().map(Vec::len), Some(2));
        let (c, cfg, _) = translate("math.reduce_mean", &json!(["x", 0, 0, {"axis": [1], "keepdims": true}])).unwrap();
        assert_eq!((c.as_str(), &cfg["keepdims"]), ("Mean", &json!(true)));
        let spec = json!([{"start": null, "stop": null, "step": null}, 0]);
        let (c, _, call) = translate("__operators__.getitem", &json!(["x", 0, 0, {"slice_spec": spec}])).unwrap();
        assert_eq!(c, "GetItem");
        assert_eq!(call["args"][1][0]["class_name"], json!("__slice__"));
        assert_eq!(call["args"][1][1], json!(0));
        assert!(translate("math.bessel_i0", &json!(["x", 0, 0, {}])).is_none());
    }
}

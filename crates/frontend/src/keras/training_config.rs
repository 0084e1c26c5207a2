//! Reading Keras's `training_config`, what `model.compile()` recorded in a saved model (the
//! counterpart of `save.rs`, which writes the optimizer's progress back): the losses and metrics
//! per output, the optimizer with its hyper-parameters and learning-rate schedule, and whether
//! the losses are weighted. Keras 2 and Keras 3 `.h5` files keep it as the `training_config`
//! attribute, `.keras` archives as `compile_config`; both have the same keys.

use serde_json::Value;

/// A loss as the file names it.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    /// Keras's name (`sparse_categorical_crossentropy`, `mse`, `huber`, ...).
    pub name: String,
    /// The loss object's `from_logits`.
    pub from_logits: bool,
    /// Huber's `delta`, where the config records one.
    pub delta: Option<f32>,
}

impl LossConfig {
    /// A loss given by name only (on the command line).
    pub fn named(name: &str) -> LossConfig {
        LossConfig { name: name.trim().to_string(), from_logits: false, delta: None }
    }

    /// A loss from a config value: a name, or a serialized loss object.
    fn from_value(v: &Value) -> Result<LossConfig, String> {
        let name = match v {
            Value::String(s) => s.clone(),
            obj => obj
                .get("config")
                .and_then(|c| c.get("name"))
                .or_else(|| obj.get("class_name"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or("the file's training_config has a loss kerasc cannot read; pass --loss")?,
        };
        Ok(LossConfig {
            name,
            from_logits: v.pointer("/config/from_logits").and_then(Value::as_bool).unwrap_or(false),
            delta: v.pointer("/config/delta").and_then(Value::as_f64).map(|d| d as f32),
        })
    }
}

/// A learning rate: a number, or a serialized schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum LearningRate {
    /// A constant or one of Keras's own schedules.
    Schedule(ir::Schedule),
    /// A schedule kerasc does not compute (its class name).
    Unsupported(String),
}

impl LearningRate {
    fn from_value(v: &Value) -> LearningRate {
        if let Some(x) = v.as_f64() {
            return LearningRate::Schedule(ir::Schedule::Constant(x as f32));
        }
        let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
        let c = v.get("config").cloned().unwrap_or_default();
        let f = |k: &str, d: f64| c.get(k).and_then(Value::as_f64).unwrap_or(d) as f32;
        let list = |k: &str| -> Vec<f32> {
            c.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                .unwrap_or_default()
        };
        LearningRate::Schedule(match class {
            "ExponentialDecay" => ir::Schedule::ExponentialDecay {
                initial: f("initial_learning_rate", 0.01),
                decay_steps: f("decay_steps", 1.0),
                decay_rate: f("decay_rate", 1.0),
                staircase: c.get("staircase").and_then(Value::as_bool).unwrap_or(false),
            },
            "CosineDecay" => ir::Schedule::CosineDecay {
                initial: f("initial_learning_rate", 0.01),
                decay_steps: f("decay_steps", 1.0),
                alpha: f("alpha", 0.0),
                warmup: c.get("warmup_target").and_then(Value::as_f64).map(|t| (t as f32, f("warmup_steps", 0.0))),
            },
            "InverseTimeDecay" => ir::Schedule::InverseTimeDecay {
                initial: f("initial_learning_rate", 0.01),
                decay_steps: f("decay_steps", 1.0),
                decay_rate: f("decay_rate", 1.0),
                staircase: c.get("staircase").and_then(Value::as_bool).unwrap_or(false),
            },
            "PolynomialDecay" => ir::Schedule::PolynomialDecay {
                initial: f("initial_learning_rate", 0.01),
                decay_steps: f("decay_steps", 1.0),
                end: f("end_learning_rate", 0.0001),
                power: f("power", 1.0),
                cycle: c.get("cycle").and_then(Value::as_bool).unwrap_or(false),
            },
            "CosineDecayRestarts" => ir::Schedule::CosineDecayRestarts {
                initial: f("initial_learning_rate", 0.01),
                first_decay_steps: f("first_decay_steps", 1.0),
                t_mul: f("t_mul", 2.0),
                m_mul: f("m_mul", 1.0),
                alpha: f("alpha", 0.0),
            },
            "PiecewiseConstantDecay" => {
                ir::Schedule::PiecewiseConstantDecay { boundaries: list("boundaries"), values: list("values") }
            }
            other => return LearningRate::Unsupported(other.to_string()),
        })
    }
}

/// The optimizer as the file records it: its class and the hyper-parameters its config sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizerConfig {
    /// The class name, lowercased (`sgd`, `adam`, `adamw`, ...).
    pub name: String,
    pub learning_rate: Option<LearningRate>,
    pub momentum: Option<f32>,
    pub nesterov: Option<bool>,
    pub beta_1: Option<f32>,
    pub beta_2: Option<f32>,
    pub epsilon: Option<f32>,
    pub amsgrad: Option<bool>,
    pub rho: Option<f32>,
    pub centered: Option<bool>,
    pub initial_accumulator_value: Option<f32>,
    pub weight_decay: Option<f32>,
    pub clipnorm: Option<f32>,
    pub clipvalue: Option<f32>,
    pub global_clipnorm: Option<f32>,
}

impl OptimizerConfig {
    /// A serialized optimizer (`{"class_name": "Adam", "config": {...}}`) or its name alone
    /// (`compile(optimizer="adam")` in a `.keras` archive's compile_config).
    fn from_value(v: &Value) -> Option<OptimizerConfig> {
        let name = v.as_str().or_else(|| v.get("class_name").and_then(Value::as_str))?.to_lowercase();
        let cfg = v.get("config");
        let num = |k: &str| cfg.and_then(|c| c.get(k)).and_then(Value::as_f64).map(|v| v as f32);
        let flag = |k: &str| cfg.and_then(|c| c.get(k)).and_then(Value::as_bool);
        Some(OptimizerConfig {
            name,
            learning_rate: cfg.and_then(|c| c.get("learning_rate")).map(LearningRate::from_value),
            momentum: num("momentum"),
            nesterov: flag("nesterov"),
            beta_1: num("beta_1"),
            beta_2: num("beta_2"),
            epsilon: num("epsilon"),
            amsgrad: flag("amsgrad"),
            rho: num("rho"),
            centered: flag("centered"),
            initial_accumulator_value: num("initial_accumulator_value"),
            weight_decay: num("weight_decay"),
            clipnorm: num("clipnorm"),
            clipvalue: num("clipvalue"),
            global_clipnorm: num("global_clipnorm"),
        })
    }
}

/// What `compile()` recorded; empty for a model saved without it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingConfig {
    loss: Option<Value>,
    metrics: Option<Value>,
    /// The optimizer, where the file records one.
    pub optimizer: Option<OptimizerConfig>,
    loss_weights: Option<Value>,
}

/// One value for every one of `n` outputs, or exactly one per output.
pub fn per_output<T: Clone>(values: Vec<T>, n: usize) -> Result<Vec<T>, String> {
    match values.len() {
        1 => Ok(vec![values[0].clone(); n]),
        k if k == n => Ok(values),
        k => Err(format!("{k} losses for {n} outputs")),
    }
}

impl TrainingConfig {
    /// Reads a `training_config` / `compile_config` value.
    pub fn from_value(v: Option<&Value>) -> TrainingConfig {
        let Some(v) = v else { return TrainingConfig::default() };
        TrainingConfig {
            loss: v.get("loss").cloned(),
            metrics: v.get("metrics").cloned(),
            // `.h5` training_config: optimizer_config; `.keras` compile_config: optimizer.
            optimizer: v.get("optimizer_config").or_else(|| v.get("optimizer")).and_then(OptimizerConfig::from_value),
            loss_weights: v.get("loss_weights").filter(|w| !w.is_null()).cloned(),
        }
    }

    /// The weight of each output's loss in the training loss (`loss_weights`: a list, a dict by
    /// output name — an output left out weighs 1 — or one number; all 1 without it).
    pub fn loss_weights(&self, outputs: &[String]) -> Result<Vec<f32>, String> {
        let n = outputs.len();
        let num = |v: &Value, what: &str| {
            v.as_f64()
                .filter(|w| w.is_finite())
                .map(|w| w as f32)
                .ok_or_else(|| format!("loss_weights: {what} is not a finite number ({v})"))
        };
        match &self.loss_weights {
            None => Ok(vec![1.0; n]),
            Some(Value::Array(a)) => {
                let w =
                    a.iter().enumerate().map(|(i, v)| num(v, &format!("entry {i}"))).collect::<Result<Vec<_>, _>>()?;
                per_output(w, n).map_err(|_| format!("{} loss weights for {n} outputs", a.len()))
            }
            Some(Value::Object(o)) => {
                if let Some(k) = o.keys().find(|k| !outputs.contains(k)) {
                    return Err(format!("loss_weights names '{k}', which is no output"));
                }
                outputs.iter().map(|name| o.get(name).map_or(Ok(1.0), |v| num(v, name))).collect()
            }
            Some(v) => Ok(vec![num(v, "the weight")?; n]),
        }
    }

    /// The loss of each output (named `outputs`, in order): one loss for all, a list, or a dict
    /// by output name.
    pub fn losses(&self, outputs: &[String]) -> Result<Vec<LossConfig>, String> {
        let n = outputs.len();
        match &self.loss {
            None | Some(Value::Null) => Err("no loss: the file was saved without compile(); pass --loss".into()),
            Some(Value::Array(a)) => per_output(a.clone(), n)?.iter().map(LossConfig::from_value).collect(),
            Some(Value::Object(o)) if !o.contains_key("class_name") => outputs
                .iter()
                .map(|name| {
                    o.get(name)
                        .ok_or_else(|| format!("the training_config has no loss for output '{name}'; pass --loss"))
                        .and_then(LossConfig::from_value)
                })
                .collect(),
            Some(v) => per_output(vec![LossConfig::from_value(v)?], n),
        }
    }

    /// The metric names of each output: a list for every output, a list per output, or a dict
    /// by output name.
    pub fn metrics(&self, outputs: &[String]) -> Vec<Vec<String>> {
        let n = outputs.len();
        let names = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                _ => Vec::new(),
            }
        };
        match &self.metrics {
            Some(Value::Object(o)) => outputs.iter().map(|name| o.get(name).map(names).unwrap_or_default()).collect(),
            Some(Value::Array(a)) if n > 1 && a.len() == n && a.iter().all(|x| x.is_array() || x.is_null()) => {
                a.iter().map(names).collect()
            }
            Some(v) => vec![names(v); n],
            None => vec![Vec::new(); n],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn losses_metrics_and_optimizer_of_a_keras_3_config() {
        let v = json!({
            "loss": {"a": "mse", "b": {"module": "keras.losses", "class_name": "Huber", "config": {"name": "huber", "delta": 2.0}}},
            "metrics": {"a": ["mae"], "b": "accuracy"},
            "loss_weights": {"a": 1.0, "b": 0.5},
            "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": {"class_name": "ExponentialDecay",
                "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "staircase": true}},
                "beta_1": 0.8, "amsgrad": true}},
        });
        let tc = TrainingConfig::from_value(Some(&v));
        let outs = ["a".to_string(), "b".to_string()];
        let l = tc.losses(&outs).unwrap();
        assert_eq!(l[0], LossConfig::named("mse"));
        assert_eq!((l[1].name.as_str(), l[1].delta), ("huber", Some(2.0)));
        assert_eq!(tc.metrics(&outs), vec![vec!["mae".to_string()], vec!["accuracy".to_string()]]);
        assert_eq!(tc.loss_weights(&outs).unwrap(), vec![1.0, 0.5]);
        let o = tc.optimizer.unwrap();
        assert_eq!((o.name.as_str(), o.beta_1, o.amsgrad, o.beta_2), ("adam", Some(0.8), Some(true), None));
        assert_eq!(
            o.learning_rate,
            Some(LearningRate::Schedule(ir::Schedule::ExponentialDecay {
                initial: 0.1,
                decay_steps: 10.0,
                decay_rate: 0.5,
                staircase: true
            }))
        );
    }

    #[test]
    fn missing_and_mismatched_entries_say_what_to_pass() {
        let outs = ["y".to_string(), "z".to_string()];
        assert!(TrainingConfig::from_value(None).losses(&outs).unwrap_err().contains("pass --loss"));
        let tc = TrainingConfig::from_value(Some(&json!({"loss": ["mse", "mae", "mse"]})));
        assert_eq!(tc.losses(&outs).unwrap_err(), "3 losses for 2 outputs");
        let tc = TrainingConfig::from_value(Some(&json!({"loss": {"y": "mse"}})));
        assert!(tc.losses(&outs).unwrap_err().contains("no loss for output 'z'"));
        let tc = TrainingConfig::from_value(Some(&json!({"loss": {"class_name": 3}, "loss_weights": [1, 1]})));
        assert!(tc.losses(&outs).unwrap_err().contains("cannot read"));
        assert_eq!(tc.loss_weights(&outs).unwrap(), vec![1.0, 1.0]);
        let tc = TrainingConfig::from_value(Some(&json!({"loss_weights": {"y": 2, "w": 1}})));
        assert!(tc.loss_weights(&outs).unwrap_err().contains("'w'"));
        let tc = TrainingConfig::from_value(Some(&json!({"loss_weights": [0.5, 2, 3]})));
        assert_eq!(tc.loss_weights(&outs).unwrap_err(), "3 loss weights for 2 outputs");
        let lr = LearningRate::from_value(&json!({"class_name": "CosineDecay", "config": {"warmup_target": 0.1}}));
        assert!(
            matches!(lr, LearningRate::Schedule(ir::Schedule::CosineDecay { warmup: Some((t, _)), .. }) if (t - 0.1).abs() < 1e-9)
        );
        let lr = LearningRate::from_value(&json!({"class_name": "CyclicalLearningRate", "config": {}}));
        assert_eq!(lr, LearningRate::Unsupported("CyclicalLearningRate".into()));
    }
}

//! The training step graph: weights become inputs, the loss is appended, and the backward pass.

use crate::{RuntimeError, Session, SessionOptions};
use ir::{DType, Graph, Op, Producer, ReduceKind, Tensor, TensorType, ValueId};
use std::collections::HashMap;

/// A loss, with Keras 3's semantics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Integer class ids against class scores. From a softmax output Keras uses the softmax's
    /// logits (no clipping); with `from_logits` the output is the logits.
    SparseCategoricalCrossentropy { from_logits: bool },
    /// One-hot (or soft) labels against class scores, likewise.
    CategoricalCrossentropy { from_logits: bool },
}

impl Loss {
    /// The loss by its Keras name (`sparse_categorical_crossentropy`, ...).
    pub fn from_name(name: &str, from_logits: bool) -> Option<Loss> {
        match name {
            "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => {
                Some(Loss::SparseCategoricalCrossentropy { from_logits })
            }
            "categorical_crossentropy" | "CategoricalCrossentropy" => {
                Some(Loss::CategoricalCrossentropy { from_logits })
            }
            _ => None,
        }
    }
}

/// A model's training step: inputs are the model inputs, the labels, then the trained weights;
/// outputs are the mean loss, one gradient per trained weight, then the model outputs.
pub struct TrainStep {
    session: Session,
    /// The trained weights: the model's constant each came from, and its name.
    pub weights: Vec<(ValueId, String)>,
    n_inputs: usize,
}

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Plan(m.into())
}

impl TrainStep {
    /// Builds the step for `model` (single output), training the constants `trainable`.
    pub fn new(
        model: &Graph,
        loss: Loss,
        trainable: &[ValueId],
        label_dtype: DType,
    ) -> Result<TrainStep, RuntimeError> {
        if model.outputs().len() != 1 {
            return Err(err("training a model with several outputs is not implemented yet"));
        }
        let mut g = Graph::new(format!("{}_train", model.name));
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for &v in model.inputs() {
            let val = model.value(v);
            map.insert(v, g.add_input(val.name.clone(), val.ty.clone()));
        }
        let out = model.outputs()[0];
        let out_ty = model.value(out).ty.clone();
        let r = out_ty.shape.rank();
        let sparse = matches!(loss, Loss::SparseCategoricalCrossentropy { .. });
        let label_shape =
            if sparse { ir::Shape(out_ty.shape.dims()[..r.saturating_sub(1)].to_vec()) } else { out_ty.shape.clone() };
        let labels = g.add_input("labels", TensorType::new(label_dtype, label_shape));
        let mut weights = Vec::new();
        let mut params = Vec::new();
        for &c in trainable {
            let val = model.value(c);
            if val.producer != Producer::Constant || val.ty.dtype != DType::F32 {
                return Err(err(format!("'{}' is not a float32 weight", val.name)));
            }
            let p = g.add_input(val.name.clone(), val.ty.clone());
            map.insert(c, p);
            weights.push((c, val.name.clone()));
            params.push(p);
        }
        let get = |g: &mut Graph, map: &mut HashMap<ValueId, ValueId>, v: ValueId| -> ValueId {
            if let Some(&m) = map.get(&v) {
                return m;
            }
            let c = model.constant(v).cloned().unwrap_or_else(|| Tensor::zeros(&[]));
            let n = g.add_constant(model.value(v).name.clone(), c);
            map.insert(v, n);
            n
        };
        for node in model.nodes() {
            let ins: Vec<ValueId> = node.inputs.iter().map(|&v| get(&mut g, &mut map, v)).collect();
            let outs = g.add_node(node.name.clone(), node.op.clone(), &ins)?;
            for (&o, n) in node.outputs.iter().zip(outs) {
                map.insert(o, n);
            }
        }
        let pred = get(&mut g, &mut map, out);
        let from_logits = match loss {
            Loss::SparseCategoricalCrossentropy { from_logits } | Loss::CategoricalCrossentropy { from_logits } => {
                from_logits
            }
        };
        // Keras computes cross-entropy from a softmax output's logits.
        let logits = if from_logits {
            pred
        } else {
            let producer = match g.value(pred).producer {
                Producer::Node(n, 0) => Some(g.nodes()[n.0].clone()),
                _ => None,
            };
            match producer {
                Some(n) if matches!(&n.op, Op::Softmax { axes } if axes.as_slice() == [r - 1]) => n.inputs[0],
                _ => {
                    return Err(err(
                        "cross-entropy on an output that is not a softmax needs from_logits=true (probability clipping is not implemented yet)",
                    ))
                }
            }
        };
        let rows = g.add("loss/per_sample", Op::SoftmaxCrossEntropy { sparse }, &[logits, labels])?;
        let rank = g.value(rows).ty.shape.rank();
        let mean = g.add(
            "loss/mean",
            Op::Reduce { kind: ReduceKind::Mean, axes: (0..rank).collect(), keepdims: false },
            &[rows],
        )?;
        let grads = ir::grad::append_backward(&mut g, mean, &params)?;
        let mut outs = vec![mean];
        outs.extend(&grads);
        outs.push(pred);
        g.set_outputs(outs);
        let n_inputs = model.inputs().len();
        Ok(TrainStep { session: Session::new(g, SessionOptions::default())?, weights, n_inputs })
    }

    /// Runs one step: returns the mean loss, the gradients (in [`TrainStep::weights`] order) and
    /// the model's predictions, without changing `weights`.
    pub fn run(
        &self,
        inputs: &[Tensor],
        labels: &Tensor,
        weights: &[Tensor],
    ) -> Result<(f32, Vec<Tensor>, Tensor), RuntimeError> {
        if inputs.len() != self.n_inputs {
            return Err(err(format!("the model takes {} input(s), {} given", self.n_inputs, inputs.len())));
        }
        let mut all = inputs.to_vec();
        all.push(labels.clone());
        all.extend(weights.iter().cloned());
        let mut outs = self.session.run(&all)?;
        let pred = outs.pop().ok_or_else(|| err("no prediction"))?;
        let loss =
            outs.first().and_then(|t| t.as_f32()).and_then(|v| v.first()).copied().ok_or_else(|| err("no loss"))?;
        Ok((loss, outs.split_off(1), pred))
    }
}

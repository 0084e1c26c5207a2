//! The training step graph: weights become inputs, the loss is appended, and the backward pass.

use super::exec::{PlacedStep, StepExec, StepPlacement};
pub use super::noise::{alpha_dropout_affine, Noise};
use crate::{RuntimeError, SessionOptions};
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
    /// 0/1 (or soft) labels against probabilities: from a sigmoid output Keras uses its
    /// logits; otherwise probabilities clipped to [1e-7, 1 − 1e-7].
    BinaryCrossentropy { from_logits: bool },
    /// `mean((y − t)²)` over the last axis, then over the batch.
    MeanSquaredError,
    /// `mean(|y − t|)` over the last axis, then over the batch.
    MeanAbsoluteError,
    /// Huber with threshold `delta`, averaged likewise.
    Huber { delta: f32 },
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
            "binary_crossentropy" | "BinaryCrossentropy" => Some(Loss::BinaryCrossentropy { from_logits }),
            "mean_squared_error" | "mse" | "MeanSquaredError" => Some(Loss::MeanSquaredError),
            "mean_absolute_error" | "mae" | "MeanAbsoluteError" => Some(Loss::MeanAbsoluteError),
            "huber" | "huber_loss" | "Huber" => Some(Loss::Huber { delta: 1.0 }),
            _ => None,
        }
    }
}

impl Loss {
    /// Whether labels are class ids (integers) rather than values shaped like the output.
    pub fn sparse(&self) -> bool {
        matches!(self, Loss::SparseCategoricalCrossentropy { .. })
    }
}

/// The input of the activation that produced `v`, when that activation is `pick`.
fn pre_activation(g: &Graph, v: ValueId, pick: impl Fn(&Op) -> bool) -> Option<ValueId> {
    match g.value(v).producer {
        Producer::Node(n, 0) => {
            let node = &g.nodes()[n.0];
            pick(&node.op).then(|| node.inputs[0])
        }
        _ => None,
    }
}

/// Per-sample losses (the output's shape without its last axis) for `pred` against `labels`.
fn per_sample(g: &mut Graph, loss: Loss, pred: ValueId, labels: ValueId) -> Result<ValueId, RuntimeError> {
    use ir::{BinaryOp, UnaryOp};
    let r = g.value(pred).ty.shape.rank();
    let last = r.saturating_sub(1);
    let mean_last = |g: &mut Graph, v: ValueId, name: &str| -> Result<ValueId, RuntimeError> {
        Ok(g.add(name, Op::Reduce { kind: ReduceKind::Mean, axes: vec![last], keepdims: false }, &[v])?)
    };
    let konst = |g: &mut Graph, name: &str, x: f32| g.add_constant(name, Tensor::scalar(x));
    Ok(match loss {
        Loss::SparseCategoricalCrossentropy { from_logits } | Loss::CategoricalCrossentropy { from_logits } => {
            let sparse = loss.sparse();
            // Keras computes cross-entropy from a softmax output's logits.
            let logits = if from_logits {
                pred
            } else {
                pre_activation(g, pred, |op| matches!(op, Op::Softmax { axes } if axes.as_slice() == [last]))
                    .ok_or_else(|| err("cross-entropy on an output that is not a softmax needs from_logits=true (probability clipping is not implemented yet)"))?
            };
            g.add("loss/per_sample", Op::SoftmaxCrossEntropy { sparse }, &[logits, labels])?
        }
        Loss::BinaryCrossentropy { from_logits } => {
            let logits = if from_logits {
                Some(pred)
            } else {
                pre_activation(g, pred, |op| matches!(op, Op::Unary(UnaryOp::Sigmoid)))
            };
            let elems = match logits {
                // softplus(z) − z·t, the stable form of the sigmoid cross-entropy.
                Some(z) => {
                    let sp = g.add("loss/softplus", Op::Unary(UnaryOp::Softplus), &[z])?;
                    let zt = g.add("loss/zt", Op::Binary(BinaryOp::Mul), &[z, labels])?;
                    g.add("loss/bce", Op::Binary(BinaryOp::Sub), &[sp, zt])?
                }
                // −(t·log p + (1 − t)·log(1 − p)) with p clipped away from 0 and 1.
                None => {
                    let p = g.add("loss/clip", Op::Unary(UnaryOp::Clip { lo: 1e-7, hi: 1.0 - 1e-7 }), &[pred])?;
                    let lp = g.add("loss/log_p", Op::Unary(UnaryOp::Log), &[p])?;
                    let q = g.add("loss/one_minus_p", Op::Unary(UnaryOp::Affine { scale: -1.0, offset: 1.0 }), &[p])?;
                    let lq = g.add("loss/log_q", Op::Unary(UnaryOp::Log), &[q])?;
                    let u =
                        g.add("loss/one_minus_t", Op::Unary(UnaryOp::Affine { scale: -1.0, offset: 1.0 }), &[labels])?;
                    let a = g.add("loss/t_log_p", Op::Binary(BinaryOp::Mul), &[labels, lp])?;
                    let b = g.add("loss/u_log_q", Op::Binary(BinaryOp::Mul), &[u, lq])?;
                    let s = g.add("loss/sum", Op::Binary(BinaryOp::Add), &[a, b])?;
                    g.add("loss/bce", Op::Unary(UnaryOp::Neg), &[s])?
                }
            };
            mean_last(g, elems, "loss/per_sample")?
        }
        Loss::MeanSquaredError | Loss::MeanAbsoluteError | Loss::Huber { .. } => {
            let d = g.add("loss/error", Op::Binary(BinaryOp::Sub), &[pred, labels])?;
            let e = match loss {
                Loss::MeanSquaredError => g.add("loss/square", Op::Unary(UnaryOp::Square), &[d])?,
                Loss::MeanAbsoluteError => g.add("loss/abs", Op::Unary(UnaryOp::Abs), &[d])?,
                Loss::Huber { delta } => {
                    // ½·q² + δ·(|x| − q) with q = min(|x|, δ): ½x² inside δ, δ|x| − ½δ² beyond.
                    let a = g.add("loss/abs", Op::Unary(UnaryOp::Abs), &[d])?;
                    let dc = konst(g, "loss/delta", delta);
                    let q = g.add("loss/q", Op::Binary(BinaryOp::Min), &[a, dc])?;
                    let q2 = g.add("loss/q2", Op::Unary(UnaryOp::Square), &[q])?;
                    let half = g.add("loss/half_q2", Op::Unary(UnaryOp::Affine { scale: 0.5, offset: 0.0 }), &[q2])?;
                    let lin = g.add("loss/beyond", Op::Binary(BinaryOp::Sub), &[a, q])?;
                    let lin =
                        g.add("loss/delta_beyond", Op::Unary(UnaryOp::Affine { scale: delta, offset: 0.0 }), &[lin])?;
                    g.add("loss/huber", Op::Binary(BinaryOp::Add), &[half, lin])?
                }
                _ => d,
            };
            mean_last(g, e, "loss/per_sample")?
        }
    })
}

/// Training-mode behaviour of a step.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Constants passed in each step without being trained (batch-norm moving statistics).
    pub state: Vec<ValueId>,
    /// Batch normalizations (by layer name) that use the batch's statistics and report them.
    pub batch_norm: Vec<String>,
    /// Noise layers (by layer name) that are active; each takes a noise tensor per step.
    pub noise: Vec<(String, Noise)>,
    /// Run the step (forward and backward) on this GPU instead of the CPU.
    pub cuda: Option<crate::cuda::CudaOptions>,
    /// The most bytes a step's tensors may take on the CPU; `None`: what the machine has
    /// available (on a GPU, `cuda`'s own limit applies).
    pub memory_limit: Option<usize>,
    /// On the CPU: the thread pool the step and its update run on (a logical CPU device's);
    /// `None`: the caller's.
    pub pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// Model parallelism: the step's nodes placed on several CPU devices by layer.
    pub placement: Option<StepPlacement>,
    /// Each output's weight in the training loss (Keras's `loss_weights`); empty: all 1.
    pub loss_weights: Vec<f32>,
}

/// What one step computed.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The training loss: the sum of the outputs' losses, each times its weight.
    pub loss: f32,
    /// Each output's loss (one entry for a single output).
    pub losses: Vec<f32>,
    /// One per trained weight, in [`TrainStep::weights`] order.
    pub grads: Vec<Tensor>,
    /// The first output's predictions.
    pub pred: Tensor,
    /// Every output's predictions.
    pub preds: Vec<Tensor>,
    /// `(index into TrainOptions::state, the batch's statistic for it)`.
    pub batch_stats: Vec<(usize, Tensor)>,
}

/// A model's training step: inputs are the model inputs, the labels, the trained weights, the
/// state constants and the noise tensors; outputs are the mean loss, one gradient per trained
/// weight, the model's output, and the batch statistics.
pub struct TrainStep {
    pub(super) session: StepExec,
    /// The trained weights: the model's constant each came from, and its name.
    pub weights: Vec<(ValueId, String)>,
    /// The noise layers, in the order their tensors are passed.
    pub noise: Vec<(String, Noise)>,
    n_inputs: usize,
    n_outputs: usize,
    n_state: usize,
    /// For each batch-statistic output, the state index it updates.
    stat_targets: Vec<usize>,
    /// Each node's time summed over the steps run, when profiling ([`TrainStep::profile`]).
    pub(super) times: Option<std::sync::Mutex<Vec<f64>>>,
    /// On a GPU: the weights and the optimizer's slots live on the device
    /// ([`TrainStep::run_update`]).
    on_device: std::sync::atomic::AtomicBool,
}

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Plan(m.into())
}

impl TrainStep {
    /// The step for `model` (single output) training the constants `trainable`, in inference
    /// mode otherwise.
    pub fn new(
        model: &Graph,
        loss: Loss,
        trainable: &[ValueId],
        label_dtype: DType,
    ) -> Result<TrainStep, RuntimeError> {
        TrainStep::with_options(model, loss, trainable, label_dtype, &TrainOptions::default())
    }

    /// The step with training-mode batch normalization and noise as `opts` says; `loss` for
    /// every output.
    pub fn with_options(
        model: &Graph,
        loss: Loss,
        trainable: &[ValueId],
        label_dtype: DType,
        opts: &TrainOptions,
    ) -> Result<TrainStep, RuntimeError> {
        let n = model.outputs().len();
        TrainStep::with_losses(model, &vec![(loss, label_dtype); n], trainable, opts)
    }

    /// The step for a model with one `(loss, label dtype)` per output: the training loss is
    /// their sum (Keras's total loss with unit loss weights).
    pub fn with_losses(
        model: &Graph,
        losses: &[(Loss, DType)],
        trainable: &[ValueId],
        opts: &TrainOptions,
    ) -> Result<TrainStep, RuntimeError> {
        use ir::{BinaryOp, UnaryOp};
        if losses.len() != model.outputs().len() || losses.is_empty() {
            return Err(err(format!("{} loss(es) for {} output(s)", losses.len(), model.outputs().len())));
        }
        let mut g = Graph::new(format!("{}_train", model.name));
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        for &v in model.inputs() {
            let val = model.value(v);
            map.insert(v, g.add_input(val.name.clone(), val.ty.clone()));
        }
        let n_out = losses.len();
        let mut labels = Vec::with_capacity(n_out);
        for (k, (&out, &(loss, label_dtype))) in model.outputs().iter().zip(losses).enumerate() {
            let out_ty = model.value(out).ty.clone();
            let r = out_ty.shape.rank();
            let label_shape = if loss.sparse() {
                ir::Shape(out_ty.shape.dims()[..r.saturating_sub(1)].to_vec())
            } else {
                out_ty.shape.clone()
            };
            let name = if n_out == 1 { "labels".to_string() } else { format!("labels/{k}") };
            labels.push(g.add_input(name, TensorType::new(label_dtype, label_shape)));
        }
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
        for &c in &opts.state {
            let val = model.value(c);
            if val.producer != Producer::Constant {
                return Err(err(format!("'{}' is not a weight", val.name)));
            }
            map.insert(c, g.add_input(val.name.clone(), val.ty.clone()));
        }
        let state_index: HashMap<ValueId, usize> = opts.state.iter().enumerate().map(|(i, &v)| (v, i)).collect();
        let get = |g: &mut Graph, map: &mut HashMap<ValueId, ValueId>, v: ValueId| -> ValueId {
            if let Some(&m) = map.get(&v) {
                return m;
            }
            let c = model.constant(v).cloned().unwrap_or_else(|| Tensor::zeros(&[]));
            let n = g.add_constant(model.value(v).name.clone(), c);
            map.insert(v, n);
            n
        };
        let mut noise = Vec::new();
        let mut stats: Vec<(usize, ValueId)> = Vec::new();
        // The model's values that depend on a trained weight.
        let mut trained: std::collections::HashSet<ValueId> = trainable.iter().copied().collect();
        for node in model.nodes() {
            if node.inputs.iter().any(|v| trained.contains(v)) {
                trained.extend(node.outputs.iter().copied());
            }
            let ins: Vec<ValueId> = node.inputs.iter().map(|&v| get(&mut g, &mut map, v)).collect();
            let nm = &node.name;
            let replaced = match &node.op {
                // Training mode: the batch's own statistics (one Moments op), normalized by the
                // inference op; the gradient flows through both (ir::grad's batch-norm rules).
                Op::BatchNorm { axis, epsilon } if opts.batch_norm.contains(nm) => {
                    let (x, gamma, beta) = (ins[0], ins[1], ins[2]);
                    let c = g.value(gamma).ty.shape.dims()[0].fixed().ok_or_else(|| err("symbolic channels"))?;
                    let moments = g.add(format!("{nm}/moments"), Op::Moments { axis: *axis }, &[x])?;
                    let stat = |g: &mut Graph, k: i64, what: &str| -> Result<ValueId, RuntimeError> {
                        let row = Op::Slice { axes: vec![0], starts: vec![k], ends: vec![k + 1], steps: vec![1] };
                        let r = g.add(format!("{nm}/{what}_row"), row, &[moments])?;
                        Ok(g.add(format!("{nm}/batch_{what}"), Op::Reshape { shape: vec![c as i64] }, &[r])?)
                    };
                    let mean = stat(&mut g, 0, "mean")?;
                    let var = stat(&mut g, 1, "variance")?;
                    let bn = Op::BatchNorm { axis: *axis, epsilon: *epsilon };
                    let y = g.add(nm.clone(), bn, &[x, gamma, beta, mean, var])?;
                    for (k, stat) in [(3usize, mean), (4usize, var)] {
                        if let Some(&si) = node.inputs.get(k).and_then(|v| state_index.get(v)) {
                            stats.push((si, stat));
                        }
                    }
                    Some(vec![y])
                }
                // A recurrent layer that is differentiated runs unrolled: its backward pass goes
                // through the ops that ran instead of recomputing them.
                Op::Rnn(a) if node.outputs.iter().any(|v| trained.contains(v)) => {
                    Some(ir::grad::unroll_rnn(&mut g, nm, a, &ins, node.outputs.len())?)
                }
                Op::Unary(UnaryOp::Identity) => match opts.noise.iter().find(|(n, _)| n == nm) {
                    Some((_, kind)) => {
                        let ty = g.value(ins[0]).ty.clone();
                        let m = g.add_input(format!("noise/{nm}"), ty);
                        noise.push((nm.clone(), *kind));
                        if let Noise::AlphaDropout { rate } = kind {
                            // a·(x·m + α′·(1 − m)) + b
                            let (a, b, alpha_p) = alpha_dropout_affine(*rate);
                            let kept = g.add(format!("{nm}/kept"), Op::Binary(BinaryOp::Mul), &[ins[0], m])?;
                            let aff = UnaryOp::Affine { scale: -alpha_p, offset: alpha_p };
                            let dropped = g.add(format!("{nm}/dropped"), Op::Unary(aff), &[m])?;
                            let x = g.add(format!("{nm}/mixed"), Op::Binary(BinaryOp::Add), &[kept, dropped])?;
                            Some(vec![g.add(nm.clone(), Op::Unary(UnaryOp::Affine { scale: a, offset: b }), &[x])?])
                        } else {
                            let op =
                                if matches!(kind, Noise::GaussianNoise { .. }) { BinaryOp::Add } else { BinaryOp::Mul };
                            Some(vec![g.add(nm.clone(), Op::Binary(op), &[ins[0], m])?])
                        }
                    }
                    None => None,
                },
                _ => None,
            };
            let outs = match replaced {
                Some(o) => o,
                None => g.add_node(node.name.clone(), node.op.clone(), &ins)?,
            };
            for (&o, n) in node.outputs.iter().zip(outs) {
                map.insert(o, n);
            }
        }
        if let Some(missing) = opts.noise.iter().find(|(n, _)| !noise.iter().any(|(m, _)| m == n)) {
            return Err(err(format!("no noise layer '{}' in the graph", missing.0)));
        }
        let mut preds = Vec::with_capacity(n_out);
        let mut means = Vec::with_capacity(n_out);
        for (k, (&out, &(loss, _))) in model.outputs().iter().zip(losses).enumerate() {
            let pred = get(&mut g, &mut map, out);
            let rows = per_sample(&mut g, loss, pred, labels[k])?;
            let rank = g.value(rows).ty.shape.rank();
            let name = if n_out == 1 { "loss/mean".to_string() } else { format!("loss/mean{k}") };
            let mean = g.add(
                name,
                Op::Reduce { kind: ReduceKind::Mean, axes: (0..rank).collect(), keepdims: false },
                &[rows],
            )?;
            preds.push(pred);
            means.push(mean);
        }
        // The training loss: Σ w_k · loss_k (the per-output losses reported unweighted).
        if !opts.loss_weights.is_empty() && opts.loss_weights.len() != n_out {
            return Err(err(format!("{} loss weights for {n_out} outputs", opts.loss_weights.len())));
        }
        let mut weighted = Vec::with_capacity(n_out);
        for (k, &m) in means.iter().enumerate() {
            weighted.push(match opts.loss_weights.get(k) {
                Some(&w) if w != 1.0 => {
                    g.add(format!("loss/weighted{k}"), Op::Unary(UnaryOp::Affine { scale: w, offset: 0.0 }), &[m])?
                }
                _ => m,
            });
        }
        let mut total = weighted[0];
        for &m in &weighted[1..] {
            total = g.add(format!("loss/total{}", g.nodes().len()), Op::Binary(BinaryOp::Add), &[total, m])?;
        }
        let grads = ir::grad::append_backward(&mut g, total, &params)?;
        let mut outs = vec![total];
        outs.extend(&grads);
        outs.extend(&preds);
        if n_out > 1 {
            outs.extend(&means);
        }
        outs.extend(stats.iter().map(|(_, v)| *v));
        g.set_outputs(outs);
        // On the CPU (and placed) the step goes through the optimizer (element-wise chains of
        // the forward and backward passes fused, epilogues, dead gradients dropped) and runs from
        // planned arenas, as an inference graph does.
        let optimized = |g: &Graph| {
            optimizer::optimize(g, &optimizer::OptimizeOptions::default())
                .map(|o| o.graph)
                .map_err(|e| err(format!("optimizing the training step: {e}")))
        };
        if opts.placement.as_ref().is_some_and(|p| p.micro_batches > 1) && !opts.batch_norm.is_empty() {
            return Err(err(
                "micro-batches would give batch normalization each micro-batch's statistics instead of the batch's; train this model without --micro-batches",
            ));
        }
        let session = match (&opts.placement, &opts.cuda) {
            (Some(p), _) => StepExec::Placed(Box::new(PlacedStep::new(&optimized(&g)?, model, p)?)),
            (None, None) => {
                let o = SessionOptions { device: None, memory_limit: opts.memory_limit, pool: opts.pool.clone() };
                StepExec::Cpu(Box::new(crate::PlannedSession::new(optimized(&g)?, o)?))
            }
            (None, Some(o)) => StepExec::Cuda(Box::new(crate::cuda::CudaSession::new(g, o.clone())?)),
        };
        Ok(TrainStep {
            session,
            weights,
            noise,
            n_inputs: model.inputs().len(),
            n_outputs: n_out,
            n_state: opts.state.len(),
            stat_targets: stats.iter().map(|(i, _)| *i).collect(),
            times: None,
            on_device: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Times every node of every later step ([`TrainStep::profile`]).
    pub fn enable_profile(&mut self) {
        // One entry per node, then the optimizer's update.
        self.times = Some(std::sync::Mutex::new(vec![0.0; self.graph().nodes().len() + 1]));
    }

    /// Each node's time summed over the steps run since [`TrainStep::enable_profile`], in
    /// seconds: `(node name, op kind, seconds)` in graph order, then the optimizer's update
    /// (`OptimizerUpdate`, timed by [`TrainStep::run_update`]); empty when not profiling.
    pub fn profile(&self) -> Vec<(String, String, f64)> {
        let Some(t) = &self.times else { return Vec::new() };
        let t = t.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, String, f64)> =
            self.graph().nodes().iter().zip(t.iter()).map(|(n, &s)| (n.name.clone(), n.op.name(), s)).collect();
        out.push(("optimizer/update".into(), "OptimizerUpdate".into(), t.last().copied().unwrap_or(0.0)));
        out
    }

    /// How many outputs the model has (one loss and one prediction each).
    pub fn outputs(&self) -> usize {
        self.n_outputs
    }

    /// The step's graph (model, loss, backward pass), e.g. to compile it for another device.
    pub fn graph(&self) -> &Graph {
        self.session.graph()
    }

    /// The shape of each noise tensor for model inputs of the given shapes (the shape of the
    /// noise layer's input).
    pub fn noise_shapes(
        &self,
        input_shapes: &[Vec<usize>],
        label_shapes: &[Vec<usize>],
    ) -> Result<Vec<Vec<usize>>, RuntimeError> {
        let g = self.session.graph();
        let mut shapes: Vec<Vec<usize>> = input_shapes.to_vec();
        shapes.extend(label_shapes.iter().cloned());
        let first_weight = self.n_inputs + self.n_outputs;
        for &v in &g.inputs()[first_weight..] {
            let ty = &g.value(v).ty;
            if g.value(v).name.starts_with("noise/") {
                // Filled in below from inference; a placeholder keeps positions.
                shapes.push(ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(1)).collect());
            } else {
                shapes.push(ty.shape.as_fixed().ok_or_else(|| err("a weight with a symbolic shape"))?);
            }
        }
        let all = g.concrete_shapes(&shapes)?;
        let noise_inputs: Vec<ValueId> =
            g.inputs().iter().copied().filter(|v| g.value(*v).name.starts_with("noise/")).collect();
        // The noise tensor has the shape of the value it multiplies or adds to: the output of an
        // element-wise node that reads it with another operand (fused or not).
        let mut out = Vec::new();
        for m in noise_inputs {
            let node = g
                .nodes()
                .iter()
                .find(|n| n.inputs.len() >= 2 && n.inputs.contains(&m) && g.value(n.outputs[0]).ty == g.value(m).ty)
                .ok_or_else(|| err("noise input without its node"))?;
            out.push(all[node.outputs[0].0].clone());
        }
        Ok(out)
    }

    /// The CPU session of a step on the CPU (`None` on a GPU).
    pub(crate) fn cpu_session(&self) -> Option<&crate::PlannedSession> {
        match &self.session {
            StepExec::Cpu(s) => Some(s),
            StepExec::Cuda(_) | StepExec::Placed(_) => None,
        }
    }

    /// Runs one step without state or noise: the mean loss, the gradients (in
    /// [`TrainStep::weights`] order) and the model's predictions; `weights` are unchanged.
    pub fn run(
        &self,
        inputs: &[Tensor],
        labels: &Tensor,
        weights: &[Tensor],
    ) -> Result<(f32, Vec<Tensor>, Tensor), RuntimeError> {
        let o = self.run_full(inputs, std::slice::from_ref(labels), weights, &[], &[])?;
        Ok((o.loss, o.grads, o.pred))
    }

    /// Runs one step with one label tensor per output, the state constants and one noise tensor
    /// per noise layer.
    pub fn run_full(
        &self,
        inputs: &[Tensor],
        labels: &[Tensor],
        weights: &[Tensor],
        state: &[Tensor],
        noise: &[Tensor],
    ) -> Result<StepOutput, RuntimeError> {
        self.check_counts(inputs, labels, state, noise)?;
        // Borrowed, not copied: on the CPU the step reads the batch and the weights where they are.
        let all: Vec<&Tensor> = inputs.iter().chain(labels).chain(weights).chain(state).chain(noise).collect();
        let outs = match &self.times {
            Some(t) => self.session.run(&all, Some(&mut t.lock().unwrap_or_else(|p| p.into_inner())))?,
            None => self.session.run(&all, None)?,
        };
        self.output(outs)
    }

    /// One training step with its update: runs the step on the batch, then `optimizer`'s
    /// update of `weights` as one fused pass that reads the gradients where the step wrote them
    /// (on the CPU, in the step's arena: no gradient is copied out). The returned output has no
    /// gradients. A step whose loss is not finite leaves the weights as they were.
    pub fn run_update(
        &self,
        inputs: &[Tensor],
        labels: &[Tensor],
        weights: &mut [Tensor],
        state: &[Tensor],
        noise: &[Tensor],
        optimizer: &mut super::KerasOptimizer,
    ) -> Result<StepOutput, RuntimeError> {
        self.check_counts(inputs, labels, state, noise)?;
        let session = match &self.session {
            StepExec::Cpu(s) => s,
            StepExec::Cuda(s) => return self.run_update_on_device(s, inputs, labels, weights, state, noise, optimizer),
            StepExec::Placed(_) => {
                // The gradients come back from the stages that made them; the update runs here.
                let out = self.run_full(inputs, labels, weights, state, noise)?;
                if out.loss.is_finite() {
                    super::Optimizer::apply(optimizer, weights, &out.grads)?;
                }
                return Ok(StepOutput { grads: Vec::new(), ..out });
            }
        };
        let (outs, grads) = {
            let all: Vec<&Tensor> = inputs.iter().chain(labels).chain(&*weights).chain(state).chain(noise).collect();
            let mut times = self.times.as_ref().map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
            session.run_split(&all, times.as_deref_mut(), 1..1 + weights.len())?
        };
        let out = self.output(outs)?;
        if out.loss.is_finite() {
            let t0 = std::time::Instant::now();
            crate::executor::on(session.pool(), || optimizer.apply_with(weights, |i| grads.f32(i)))?;
            self.add_time(<[f64]>::last_mut, t0);
        }
        Ok(out)
    }

    /// [`TrainStep::run_update`] on a GPU: the first step puts the weights and the optimizer's
    /// slots on the device; every step runs the step's kernels and the update there, so only
    /// the batch goes up and the loss, predictions and statistics come down. `weights` and the
    /// optimizer's slots on the host are left as they were until [`TrainStep::sync_weights`].
    #[allow(clippy::too_many_arguments)]
    fn run_update_on_device(
        &self,
        s: &crate::cuda::CudaSession,
        inputs: &[Tensor],
        labels: &[Tensor],
        weights: &[Tensor],
        state: &[Tensor],
        noise: &[Tensor],
        optimizer: &mut super::KerasOptimizer,
    ) -> Result<StepOutput, RuntimeError> {
        let first_weight = self.n_inputs + self.n_outputs;
        if !self.on_device.load(std::sync::atomic::Ordering::Acquire) {
            optimizer.ensure_slots(weights.iter().map(Tensor::len));
            let decay = optimizer.weight_decay.is_some();
            s.enable_update(&optimizer.kind, optimizer.clip(), decay, first_weight, 1, weights, optimizer.slots())?;
            self.on_device.store(true, std::sync::atomic::Ordering::Release);
        }
        let (scalars, u_product) = optimizer.next_scalars();
        let all: Vec<&Tensor> = inputs.iter().chain(labels).chain(weights).chain(state).chain(noise).collect();
        let t0 = std::time::Instant::now();
        let outs = s.run_step(&all, &scalars)?;
        // Timed whole, as its first node's (as a GPU step is).
        self.add_time(<[f64]>::first_mut, t0);
        let out = self.output(outs)?;
        // The device skips the update of a step whose loss is not finite.
        if out.loss.is_finite() {
            optimizer.commit(u_product);
        }
        Ok(out)
    }

    /// Brings the weights and the optimizer's slots back from a GPU that trains them
    /// ([`TrainStep::run_update`]); nothing to do on the CPU, where they are updated in place.
    pub fn sync_weights(
        &self,
        weights: &mut [Tensor],
        optimizer: &mut super::KerasOptimizer,
    ) -> Result<(), RuntimeError> {
        let StepExec::Cuda(s) = &self.session else { return Ok(()) };
        let Some((ws, slots)) = s.read_update()? else { return Ok(()) };
        if ws.len() != weights.len() {
            return Err(err(format!("{} weights on the device, {} given", ws.len(), weights.len())));
        }
        for (w, v) in weights.iter_mut().zip(ws) {
            *w = Tensor::from_f32(w.shape(), v)?;
        }
        optimizer.set_slots(slots);
        Ok(())
    }

    /// Adds the time since `t0` to the profile's entry `at` picks (the first node's, or the
    /// update's after the nodes), when profiling.
    fn add_time(&self, at: fn(&mut [f64]) -> Option<&mut f64>, t0: std::time::Instant) {
        if let Some(t) = &self.times {
            if let Some(e) = at(&mut t.lock().unwrap_or_else(|p| p.into_inner())) {
                *e += t0.elapsed().as_secs_f64();
            }
        }
    }

    pub(super) fn check_counts(
        &self,
        inputs: &[Tensor],
        labels: &[Tensor],
        state: &[Tensor],
        noise: &[Tensor],
    ) -> Result<(), RuntimeError> {
        if inputs.len() != self.n_inputs {
            return Err(err(format!("the model takes {} input(s), {} given", self.n_inputs, inputs.len())));
        }
        if labels.len() != self.n_outputs {
            return Err(err(format!(
                "the model has {} output(s), {} label tensor(s) given",
                self.n_outputs,
                labels.len()
            )));
        }
        if state.len() != self.n_state || noise.len() != self.noise.len() {
            return Err(err(format!(
                "the step takes {} state and {} noise tensor(s), {} and {} given",
                self.n_state,
                self.noise.len(),
                state.len(),
                noise.len()
            )));
        }
        Ok(())
    }

    /// The step's outputs in order — the loss, the gradients (none where the update read them
    /// in place), the predictions, each output's loss (several outputs), the batch statistics —
    /// as a [`StepOutput`].
    pub(super) fn output(&self, mut outs: Vec<Tensor>) -> Result<StepOutput, RuntimeError> {
        let scalar = |t: &Tensor| t.as_f32().and_then(|v| v.first()).copied().ok_or_else(|| err("no loss"));
        let tail = |outs: &mut Vec<Tensor>, n: usize| outs.split_off(outs.len().saturating_sub(n));
        let stats: Vec<Tensor> = tail(&mut outs, self.stat_targets.len());
        let means: Vec<Tensor> = if self.n_outputs > 1 { tail(&mut outs, self.n_outputs) } else { Vec::new() };
        let preds: Vec<Tensor> = tail(&mut outs, self.n_outputs);
        let loss = scalar(outs.first().ok_or_else(|| err("no loss"))?)?;
        let losses = if means.is_empty() { vec![loss] } else { means.iter().map(scalar).collect::<Result<_, _>>()? };
        Ok(StepOutput {
            loss,
            losses,
            grads: outs.split_off(1),
            pred: preds.first().cloned().ok_or_else(|| err("no prediction"))?,
            preds,
            batch_stats: self.stat_targets.iter().copied().zip(stats).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{Dim, Shape, UnaryOp};

    /// `y = act(x·W)` for x (2, 3) and W (3, 3); returns the step's loss for `labels`.
    fn loss_of(loss: Loss, act: Option<Op>, labels: Tensor) -> (f32, Vec<f64>) {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(3)])));
        let w =
            g.add_constant("w", Tensor::from_f32(&[3, 3], (0..9).map(|i| (i as f32 * 0.7).sin()).collect()).unwrap());
        let mut y = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w]).unwrap();
        if let Some(a) = act {
            y = g.add("act", a, &[y]).unwrap();
        }
        g.set_outputs(vec![y]);
        let step = TrainStep::new(&g, loss, &[w], labels.dtype()).unwrap();
        let xs = Tensor::from_f32(&[2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75]).unwrap();
        let wt = g.constant(w).unwrap().clone();
        let (l, _, pred) = step.run(&[xs], &labels, &[wt]).unwrap();
        (l, pred.to_f64_vec())
    }

    fn near(a: f32, b: f64) {
        assert!((a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }

    #[test]
    fn regression_losses_follow_keras() {
        let t = vec![0.3, -0.2, 1.0, 2.0, 0.0, -1.0];
        let labels = Tensor::from_f32(&[2, 3], t.iter().map(|&v| v as f32).collect()).unwrap();
        let (l, p) = loss_of(Loss::MeanSquaredError, None, labels.clone());
        near(l, p.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 6.0);
        let (l, p) = loss_of(Loss::MeanAbsoluteError, None, labels.clone());
        near(l, p.iter().zip(&t).map(|(a, b)| (a - b).abs()).sum::<f64>() / 6.0);
        let huber = |e: f64, d: f64| if e.abs() <= d { 0.5 * e * e } else { d * e.abs() - 0.5 * d * d };
        let (l, p) = loss_of(Loss::Huber { delta: 0.5 }, None, labels);
        near(l, p.iter().zip(&t).map(|(a, b)| huber(a - b, 0.5)).sum::<f64>() / 6.0);
    }

    #[test]
    fn binary_crossentropy_from_a_sigmoid_and_from_probabilities() {
        let t = vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let labels = Tensor::from_f32(&[2, 3], t.iter().map(|&v| v as f32).collect()).unwrap();
        let bce = |p: &[f64]| -> f64 {
            p.iter()
                .zip(&t)
                .map(|(&p, &t)| {
                    let p = p.clamp(1e-7, 1.0 - 1e-7);
                    -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
                })
                .sum::<f64>()
                / 6.0
        };
        // From the sigmoid's logits (Keras's TensorFlow path): the same value without clipping.
        let (l, p) =
            loss_of(Loss::BinaryCrossentropy { from_logits: false }, Some(Op::Unary(UnaryOp::Sigmoid)), labels.clone());
        near(l, bce(&p));
        // From probabilities that no sigmoid produced: clipped.
        let (l, p) = loss_of(
            Loss::BinaryCrossentropy { from_logits: false },
            Some(Op::Unary(UnaryOp::HardSigmoid)),
            labels.clone(),
        );
        near(l, bce(&p));
        // From logits.
        let (l, z) = loss_of(Loss::BinaryCrossentropy { from_logits: true }, None, labels);
        let sig: Vec<f64> = z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        near(l, bce(&sig));
    }

    #[test]
    fn cross_entropies_from_softmax_and_logits() {
        let ids = Tensor::new(vec![2], ir::TensorData::I32(vec![2, 0])).unwrap();
        let (l, p) = loss_of(
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            Some(Op::Softmax { axes: vec![1] }),
            ids,
        );
        near(l, -(p[2].ln() + p[3].ln()) / 2.0);
        let onehot = Tensor::from_f32(&[2, 3], vec![0.0, 1.0, 0.0, 0.2, 0.3, 0.5]).unwrap();
        let (l, z) = loss_of(Loss::CategoricalCrossentropy { from_logits: true }, None, onehot);
        let lse = |r: &[f64]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
        let want = ((lse(&z[..3]) - z[1]) + (lse(&z[3..]) - (0.2 * z[3] + 0.3 * z[4] + 0.5 * z[5]))) / 2.0;
        near(l, want);
        // Cross-entropy on an output that is not a softmax, without from_logits: a clear error.
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(3)])));
        let w = g.add_constant("w", Tensor::zeros(&[3, 3]));
        let y = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w]).unwrap();
        g.set_outputs(vec![y]);
        let e = TrainStep::new(&g, Loss::SparseCategoricalCrossentropy { from_logits: false }, &[w], DType::I32);
        assert!(e.err().is_some_and(|e| e.to_string().contains("from_logits")));
    }
}

//! A training step that hands each gradient on as soon as the backward pass has written it: a
//! worker's collective sends the gradients of the last layers while the first layers' are still
//! being computed (Horovod's overlap of the all-reduce with the backward pass).

use super::exec::StepExec;
use super::{StepOutput, TrainStep};
use crate::collective::Sink;
use crate::RuntimeError;
use ir::Tensor;

impl TrainStep {
    /// Runs the step on the CPU, putting gradient `i` into `sink` at `offsets[i]`, times
    /// `scale`, as soon as the run has written it (a gradient not written into the step's arena
    /// once the run ends). The output has no gradients.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_into_sink(
        &self,
        inputs: &[Tensor],
        labels: &[Tensor],
        weights: &[Tensor],
        state: &[Tensor],
        noise: &[Tensor],
        sink: &dyn Sink,
        offsets: &[usize],
        scale: f32,
    ) -> Result<StepOutput, RuntimeError> {
        self.check_counts(inputs, labels, state, noise)?;
        let StepExec::Cpu(session) = &self.session else {
            return Err(RuntimeError::Plan("only a CPU step hands its gradients on as it goes".into()));
        };
        let n = weights.len();
        if offsets.len() != n {
            return Err(RuntimeError::Plan(format!("{} offsets for {n} gradients", offsets.len())));
        }
        let mut put = vec![false; n];
        let all: Vec<&Tensor> = inputs.iter().chain(labels).chain(weights).chain(state).chain(noise).collect();
        let mut times = self.times.as_ref().map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
        let mut ready = |k: usize, values: &[f32]| {
            // Output 0 is the loss; the gradients follow, in weight order.
            if let Some(i) = k.checked_sub(1).filter(|&i| i < n && !put[i] && values.len() == weights[i].len()) {
                sink.put(offsets[i], values, scale);
                put[i] = true;
            }
        };
        let (outs, grads) = session.run_split_watched(&all, times.as_deref_mut(), 1..1 + n, Some(&mut ready))?;
        for (i, w) in weights.iter().enumerate().filter(|(i, _)| !put[*i]) {
            let g = grads.f32(i);
            if g.len() != w.len() {
                return Err(RuntimeError::Plan(format!("gradient {i} is not float32 of its weight's size")));
            }
            sink.put(offsets[i], g, scale);
        }
        drop(grads);
        self.output(outs)
    }
}

//! What runs a training step's graph: a planned CPU session, a CUDA session, or stages placed
//! on several devices.

use crate::placement::{assign_layers, place, run_in_turn, run_pipelined, Join, Placed};
use crate::{PlannedSession, RuntimeError, SessionOptions};
use ir::{Graph, Tensor};

/// Where a placed training step runs: its layers' devices, forward and backward nodes of a layer
/// on the layer's device (other nodes follow their inputs).
#[derive(Debug, Clone)]
pub struct StepPlacement {
    /// The devices, with how a stage runs on each.
    pub devices: Vec<(crate::Device, StageOn)>,
    /// Layer name → device.
    pub layers: Vec<(String, crate::Device)>,
    /// Micro-batches each batch is cut into and pipelined through the stages; their gradients
    /// are averaged, weighted by their rows, before the update.
    pub micro_batches: usize,
}

/// How a stage of a placed step runs on its device.
#[derive(Debug, Clone)]
pub enum StageOn {
    /// From a planned arena on a CPU device (its thread pool).
    Cpu(SessionOptions),
    /// On a GPU.
    Cuda(crate::cuda::CudaOptions),
}

/// A stage's session.
enum StageExec {
    Cpu(Box<PlannedSession>),
    Cuda(Box<crate::cuda::CudaSession>),
}

impl StageExec {
    fn run(&self, x: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        match self {
            StageExec::Cpu(s) => s.run(x),
            StageExec::Cuda(s) => s.run(x),
        }
    }
}

/// A run of a whole step on owned inputs.
type RunWhole<'a> = dyn Fn(&[Tensor]) -> Result<Vec<Tensor>, RuntimeError> + 'a;

/// The executor of a step's graph.
pub(super) enum StepExec {
    /// The optimized graph from a planned arena on the CPU.
    Cpu(Box<PlannedSession>),
    Cuda(Box<crate::cuda::CudaSession>),
    /// The optimized graph placed on several devices (model parallelism).
    Placed(Box<PlacedStep>),
}

/// A training step placed on several devices: each stage from its own arena on its device's
/// pool, or on its GPU.
pub(super) struct PlacedStep {
    placed: Placed,
    stages: Vec<StageExec>,
    micro_batches: usize,
}

impl PlacedStep {
    /// Places the optimized step graph `g` as `p` says (`model`: the graph before optimization,
    /// whose layers the placement may name).
    pub(super) fn new(g: &Graph, model: &Graph, p: &StepPlacement) -> Result<PlacedStep, RuntimeError> {
        let devices: Vec<crate::Device> = p.devices.iter().map(|(d, _)| *d).collect();
        let assign = assign_layers(g, model, &p.layers, &devices)?;
        let placed = place(g, &devices, &assign)?;
        let stages = placed
            .stages
            .iter()
            .map(|st| match &p.devices[st.device].1 {
                StageOn::Cpu(o) => Ok(StageExec::Cpu(Box::new(PlannedSession::new(st.graph.clone(), o.clone())?))),
                StageOn::Cuda(o) => {
                    Ok(StageExec::Cuda(Box::new(crate::cuda::CudaSession::new(st.graph.clone(), o.clone())?)))
                }
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(PlacedStep { placed, stages, micro_batches: p.micro_batches.max(1) })
    }
}

impl StepExec {
    pub(super) fn graph(&self) -> &Graph {
        match self {
            StepExec::Cpu(s) => s.graph(),
            StepExec::Cuda(s) => s.graph(),
            StepExec::Placed(p) => &p.placed.graph,
        }
    }

    /// Runs the step; with `times`, adds each node's wall time in seconds to it (on the CPU;
    /// a GPU or placed step is timed whole, as its first node's).
    pub(super) fn run(&self, inputs: &[&Tensor], times: Option<&mut [f64]>) -> Result<Vec<Tensor>, RuntimeError> {
        let whole = |times: Option<&mut [f64]>, f: &RunWhole| {
            let owned: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
            let t0 = std::time::Instant::now();
            let outs = f(&owned)?;
            if let Some(a) = times.and_then(|acc| acc.first_mut()) {
                *a += t0.elapsed().as_secs_f64();
            }
            Ok(outs)
        };
        match (self, times) {
            (StepExec::Cpu(s), None) => s.run_refs(inputs),
            (StepExec::Cpu(s), Some(acc)) => {
                let (outs, t) = s.run_profiled_refs(inputs)?;
                acc.iter_mut().zip(t).for_each(|(a, t)| *a += t);
                Ok(outs)
            }
            (StepExec::Cuda(s), times) => whole(times, &|x| s.run(x)),
            (StepExec::Placed(p), times) => whole(times, &|x| {
                let cpu: Option<Vec<&PlannedSession>> = p
                    .stages
                    .iter()
                    .map(|s| match s {
                        StageExec::Cpu(c) => Some(&**c),
                        StageExec::Cuda(_) => None,
                    })
                    .collect();
                match cpu {
                    Some(cpu) => run_pipelined(
                        &p.placed,
                        &cpu,
                        x,
                        p.micro_batches,
                        Join::BatchMean,
                        |s| s.pool().as_deref(),
                        |s, x| s.run(x),
                    ),
                    // A stage on a GPU: the stages take their turns on this thread.
                    None => run_in_turn(&p.placed, &p.stages, x, p.micro_batches, Join::BatchMean, |s, x| s.run(x)),
                }
            }),
        }
    }
}

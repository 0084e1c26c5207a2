//! What runs a training step's graph: a planned CPU session, a CUDA session, or stages placed
//! on several CPU devices.

use crate::placement::{assign_layers, place, run_pipelined, Placed};
use crate::{PlannedSession, RuntimeError, SessionOptions};
use ir::{Graph, Tensor};

/// Where a placed training step runs: its layers' devices, forward and backward nodes of a layer
/// on the layer's device (other nodes follow their inputs).
#[derive(Debug, Clone)]
pub struct StepPlacement {
    /// The devices, with the session options of each (its thread pool).
    pub devices: Vec<(crate::Device, SessionOptions)>,
    /// Layer name → device.
    pub layers: Vec<(String, crate::Device)>,
}

/// A run of a whole step on owned inputs.
type RunWhole<'a> = dyn Fn(&[Tensor]) -> Result<Vec<Tensor>, RuntimeError> + 'a;

/// The executor of a step's graph.
pub(super) enum StepExec {
    /// The optimized graph from a planned arena on the CPU.
    Cpu(Box<PlannedSession>),
    Cuda(Box<crate::cuda::CudaSession>),
    /// The optimized graph placed on several CPU devices (model parallelism).
    Placed(Box<PlacedStep>),
}

/// A training step placed on several CPU devices: each stage from its own arena on its
/// device's pool.
pub(super) struct PlacedStep {
    placed: Placed,
    stages: Vec<PlannedSession>,
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
            .map(|st| PlannedSession::new(st.graph.clone(), p.devices[st.device].1.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PlacedStep { placed, stages })
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
            (StepExec::Placed(p), times) => {
                whole(times, &|x| run_pipelined(&p.placed, &p.stages, x, 1, |s| s.pool().as_deref(), |s, x| s.run(x)))
            }
        }
    }
}

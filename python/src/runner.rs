//! What runs a model: a CPU session, or a GPU session on a thread of its own; and the plans of
//! a model, compiled at load or per inputs (an ONNX graph whose sizes or shape-deciding values
//! come from its inputs, [`kerasc::specialize`]).

use kerasc::frontend::onnx::Declared;
use kerasc::ir::{self, Tensor};
use kerasc::specialize::{Compiled, Specializing};
use kerasc::{Executor, ExecutorOptions};
use std::sync::{mpsc, Arc, Mutex};

/// Where a model runs: a CPU session, shared by the calling threads; or a GPU session, which
/// stays on a thread of its own (its CUDA graph may not move between threads), each run sent to
/// it.
pub(crate) enum Runner {
    Planned(kerasc::PlannedSession),
    Naive(kerasc::Session),
    Gpu(Mutex<mpsc::Sender<Job>>),
}

/// A run for the GPU thread: the inputs, and where to send the outputs (and the inputs back).
type Job = (Vec<Tensor>, mpsc::Sender<Ran>);

/// A run's outputs, and the inputs it is done with.
type Ran = (Result<Vec<Tensor>, kerasc::RuntimeError>, Vec<Tensor>);

impl Runner {
    pub(crate) fn new(graph: &ir::Graph, options: ExecutorOptions) -> Result<Runner, kerasc::CompileError> {
        if options.device.device.is_cpu() {
            return match Executor::new(graph, &options)?.0 {
                Executor::Cpu(s) => Ok(Runner::Planned(s)),
                Executor::CpuNaive(s) => Ok(Runner::Naive(s)),
                _ => Err(kerasc::RuntimeError::Plan("a CPU device gave a GPU executor".into()).into()),
            };
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel();
        let graph = graph.clone();
        std::thread::Builder::new()
            .name("kerasc-gpu".into())
            .spawn(move || {
                let exec = match Executor::new(&graph, &options) {
                    Ok((e, _)) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Until the model is dropped (its sender with it).
                while let Ok((inputs, reply)) = inbox.recv() {
                    let _ = reply.send((exec.run(&inputs), inputs));
                }
            })
            .map_err(|e| kerasc::RuntimeError::Plan(format!("cannot start the GPU thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Runner::Gpu(Mutex::new(jobs))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(kerasc::RuntimeError::Plan("the GPU thread ended before the model was ready".into()).into()),
        }
    }

    /// Wakes the CPU pool's workers ahead of a run ([`kerasc::PlannedSession::wake_pool`]).
    pub(crate) fn wake(&self) {
        if let Runner::Planned(s) = self {
            s.wake_pool();
        }
    }

    /// Runs on `inputs`; gives them back with the outputs.
    pub(crate) fn run(&self, inputs: Vec<Tensor>) -> Ran {
        match self {
            Runner::Planned(s) => (s.run(&inputs), inputs),
            Runner::Naive(s) => (s.run(&inputs), inputs),
            Runner::Gpu(jobs) => {
                let (tx, rx) = mpsc::channel();
                let sent = jobs.lock().unwrap_or_else(|p| p.into_inner()).send((inputs, tx));
                let gone = || (Err(kerasc::RuntimeError::Plan("the model's GPU thread has ended".into())), Vec::new());
                if sent.is_err() {
                    return gone();
                }
                rx.recv().unwrap_or_else(|_| gone())
            }
        }
    }
}

/// A model's plans.
pub(crate) enum Plans {
    /// Compiled when loaded.
    Fixed(Box<kerasc::Model>, Runner),
    /// Compiled for the inputs of each call, the last few kept.
    PerInputs {
        plans: Specializing<Runner>,
        options: ExecutorOptions,
        /// The inputs and outputs the file declares.
        declared: (Vec<Declared>, Vec<Declared>),
        /// What compiling needs (the load error's text).
        why: String,
    },
}

/// The plan one call runs on.
pub(crate) enum Plan<'a> {
    Fixed(&'a kerasc::Model, &'a Runner),
    Compiled(Arc<Compiled<Runner>>),
}

impl Plan<'_> {
    pub(crate) fn runner(&self) -> &Runner {
        match self {
            Plan::Fixed(_, r) => r,
            Plan::Compiled(c) => &c.runner,
        }
    }

    pub(crate) fn model(&self) -> &kerasc::Model {
        match self {
            Plan::Fixed(m, _) => m,
            Plan::Compiled(c) => &c.model,
        }
    }
}

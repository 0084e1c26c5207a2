use crate::cpu::{run_op, shape_matches};
use crate::{Device, RuntimeError};
use ir::{Graph, Producer, Tensor, ValueId};

/// Options of a [`Session`].
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Where to run: the CPU executors take `None` or `/CPU:0`.
    pub device: Option<Device>,
}

/// A graph bound to a device, ready to run many times.
pub struct Session {
    graph: Graph,
    device: Device,
    /// For each value, the index of the last node that reads it (graph outputs never die).
    last_use: Vec<usize>,
}

impl Session {
    /// Validates the graph and binds it to a device.
    pub fn new(graph: Graph, options: SessionOptions) -> Result<Session, RuntimeError> {
        graph.validate()?;
        let device = cpu_only(options.device)?;
        let mut last_use = vec![0usize; graph.values().len()];
        for (i, node) in graph.nodes().iter().enumerate() {
            for v in &node.inputs {
                last_use[v.0] = i;
            }
        }
        for v in graph.outputs() {
            last_use[v.0] = usize::MAX;
        }
        Ok(Session { graph, device, last_use })
    }

    /// The device this session runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Checks the inputs against the graph's input types (dtype, rank, fixed sizes and one
    /// consistent batch size).
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), RuntimeError> {
        check_inputs(&self.graph, inputs).map(|_| ())
    }

    /// Runs the graph on `inputs` (in graph input order) and returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.run_timed(inputs, None)
    }

    /// Like [`Session::run`], also recording each node's wall time in seconds.
    pub fn run_profiled(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<f64>), RuntimeError> {
        let mut times = vec![0.0; self.graph.nodes().len()];
        let outs = self.run_timed(inputs, Some(&mut times))?;
        Ok((outs, times))
    }

    fn run_timed(&self, inputs: &[Tensor], mut times: Option<&mut Vec<f64>>) -> Result<Vec<Tensor>, RuntimeError> {
        self.check_inputs(inputs)?;
        let g = &self.graph;
        let mut vals: Vec<Option<Tensor>> = vec![None; g.values().len()];
        for (i, &v) in g.inputs().iter().enumerate() {
            vals[v.0] = Some(inputs[i].clone());
        }
        for (ni, node) in g.nodes().iter().enumerate() {
            let mut args = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                let t = match g.value(v).producer {
                    Producer::Constant => g.constant(v),
                    _ => vals[v.0].as_ref(),
                };
                args.push(t.ok_or_else(|| RuntimeError::Kernel {
                    op: node.op.name(),
                    node: node.name.clone(),
                    message: format!("input value {} is not available", v.0),
                })?);
            }
            let t0 = std::time::Instant::now();
            let outs = run_op(&node.op, &args).map_err(|e| match e {
                RuntimeError::Kernel { op, message, .. } => {
                    RuntimeError::Kernel { op, node: node.name.clone(), message }
                }
                other => other,
            })?;
            if let Some(t) = times.as_deref_mut() {
                t[ni] = t0.elapsed().as_secs_f64();
            }
            for (&o, t) in node.outputs.iter().zip(outs) {
                vals[o.0] = Some(t);
            }
            for &v in &node.inputs {
                if self.last_use[v.0] == ni {
                    vals[v.0] = None;
                }
            }
        }
        g.outputs()
            .iter()
            .map(|&v: &ValueId| {
                match g.value(v).producer {
                    Producer::Constant => g.constant(v).cloned(),
                    _ => vals[v.0].clone(),
                }
                .ok_or_else(|| RuntimeError::Kernel {
                    op: "output".into(),
                    node: g.value(v).name.clone(),
                    message: "not computed".into(),
                })
            })
            .collect()
    }
}

/// The device of a CPU executor: the CPU, whatever the default; asking it for a GPU is an error.
pub(crate) fn cpu_only(requested: Option<Device>) -> Result<Device, RuntimeError> {
    match requested {
        None | Some(Device::Cpu) => Ok(Device::Cpu),
        Some(d) => Err(RuntimeError::Unavailable {
            requested: d.to_string(),
            reason: "this executor runs on the CPU; use the CUDA session for a GPU".into(),
            available: "/CPU:0".into(),
        }),
    }
}

/// Checks `inputs` against the graph's input types (dtype, rank, fixed sizes, one consistent
/// batch size) and returns that batch size, if any input has a batch axis.
pub fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<Option<usize>, RuntimeError> {
    let ins = graph.inputs();
    if inputs.len() != ins.len() {
        return Err(RuntimeError::Input {
            index: inputs.len().min(ins.len()),
            name: String::new(),
            message: format!("the model takes {} input(s), {} given", ins.len(), inputs.len()),
        });
    }
    let mut batch = None;
    for (i, (t, &v)) in inputs.iter().zip(ins).enumerate() {
        let value = graph.value(v);
        let err = |message: String| RuntimeError::Input { index: i, name: value.name.clone(), message };
        if t.dtype() != value.ty.dtype {
            return Err(err(format!("expected {} but got {}", value.ty.dtype, t.dtype())));
        }
        if !shape_matches(&value.ty.shape, t.shape()) {
            return Err(err(format!("expected shape {} but got {:?}", value.ty.shape, t.shape())));
        }
        if let Some(&b) = t.shape().first() {
            if value.ty.shape.dims().first().is_some_and(|d| d.fixed().is_none()) {
                match batch {
                    None => batch = Some(b),
                    Some(prev) if prev != b => {
                        return Err(err(format!("batch size {b} differs from the first input's {prev}")))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(batch)
}

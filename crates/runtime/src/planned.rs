//! The planned executor: runs an optimized graph from one arena laid out by a memory plan.
//! The arena is allocated when a batch size is first seen and reused by every later run; the
//! hot kernels (convolutions, matmuls, fused expressions, reshapes) read and write it in place.

use crate::cpu::{self, fused, run_op};
use crate::executor::check_inputs;
use crate::{Device, RuntimeError, SessionOptions};
use ir::{Graph, MemoryPlan, Node, Op, Placement, Tensor, TensorData};
use std::sync::Mutex;
use std::time::Instant;

/// Lays out the arena for a graph at a batch size (the optimizer's memory planner).
pub type Planner = fn(&Graph, usize) -> Result<MemoryPlan, String>;

struct ArenaState {
    plan: MemoryPlan,
    arena: Vec<f32>,
    /// Concrete shape of every value at the plan's batch size.
    shapes: Vec<Vec<usize>>,
}

/// A graph bound to a device and run from a planned arena.
pub struct PlannedSession {
    graph: Graph,
    device: Device,
    planner: Planner,
    state: Mutex<Option<ArenaState>>,
}

enum Src<'a> {
    Arena(usize, usize),
    Tensor(&'a Tensor),
}

impl PlannedSession {
    /// Validates the graph and binds it to a device.
    pub fn new(graph: Graph, options: SessionOptions, planner: Planner) -> Result<PlannedSession, RuntimeError> {
        graph.validate()?;
        let device = options.device.unwrap_or_else(Device::default_device).ensure_available()?;
        Ok(PlannedSession { graph, device, planner, state: Mutex::new(None) })
    }

    /// The device this session runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The memory plan for a batch size (computing it if it is not the current one).
    pub fn plan_for(&self, batch: usize) -> Result<MemoryPlan, RuntimeError> {
        (self.planner)(&self.graph, batch).map_err(RuntimeError::Plan)
    }

    /// Runs the graph on `inputs` and returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.run_timed(inputs, None)
    }

    /// Like [`PlannedSession::run`], also recording each node's wall time in seconds.
    pub fn run_profiled(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<f64>), RuntimeError> {
        let mut times = vec![0.0; self.graph.nodes().len()];
        let outs = self.run_timed(inputs, Some(&mut times))?;
        Ok((outs, times))
    }

    fn run_timed(&self, inputs: &[Tensor], mut times: Option<&mut Vec<f64>>) -> Result<Vec<Tensor>, RuntimeError> {
        let batch = check_inputs(&self.graph, inputs)?.unwrap_or(1);
        let mut guard = self.state.lock().map_err(|_| RuntimeError::Plan("arena lock poisoned".into()))?;
        if guard.as_ref().is_none_or(|s| s.plan.batch != batch) {
            let plan = self.plan_for(batch)?;
            let shapes = self
                .graph
                .values()
                .iter()
                .map(|v| v.ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(batch)).collect())
                .collect();
            let arena = vec![0f32; plan.arena_bytes.div_ceil(4)];
            *guard = Some(ArenaState { plan, arena, shapes });
        }
        let state = guard.as_mut().ok_or_else(|| RuntimeError::Plan("no arena".into()))?;
        let mut separate: Vec<Option<Tensor>> = vec![None; self.graph.values().len()];
        for step in 0..state.plan.order.len() {
            let nid = state.plan.order[step];
            let node =
                self.graph.nodes().get(nid.0).ok_or_else(|| RuntimeError::Plan("plan names a missing node".into()))?;
            let t0 = Instant::now();
            self.step(node, inputs, state, &mut separate).map_err(|e| match e {
                RuntimeError::Kernel { op, message, .. } => {
                    RuntimeError::Kernel { op, node: node.name.clone(), message }
                }
                other => other,
            })?;
            if let Some(t) = times.as_deref_mut() {
                t[nid.0] = t0.elapsed().as_secs_f64();
            }
        }
        self.graph
            .outputs()
            .iter()
            .map(|&v| {
                let src = self.source(v.0, inputs, state, &separate)?;
                self.materialize(&src, &state.shapes[v.0], &state.arena)
            })
            .collect()
    }

    fn source<'a>(
        &'a self,
        v: usize,
        inputs: &'a [Tensor],
        state: &ArenaState,
        separate: &'a [Option<Tensor>],
    ) -> Result<Src<'a>, RuntimeError> {
        let missing = || RuntimeError::Plan(format!("value '{}' is not available", self.graph.values()[v].name));
        match state.plan.placements.get(v).copied().ok_or_else(missing)? {
            Placement::Arena { offset, bytes } => Ok(Src::Arena(offset / 4, bytes / 4)),
            Placement::Input(i) => inputs.get(i).map(Src::Tensor).ok_or_else(missing),
            Placement::Constant => self.graph.constant(ir::ValueId(v)).map(Src::Tensor).ok_or_else(missing),
            Placement::Separate => separate[v].as_ref().map(Src::Tensor).ok_or_else(missing),
        }
    }

    fn materialize(&self, src: &Src, shape: &[usize], arena: &[f32]) -> Result<Tensor, RuntimeError> {
        match src {
            Src::Tensor(t) => Ok((*t).clone()),
            Src::Arena(o, n) => Ok(Tensor::from_f32(shape, arena[*o..*o + *n].to_vec())?),
        }
    }

    fn step(
        &self,
        node: &Node,
        inputs: &[Tensor],
        state: &mut ArenaState,
        separate: &mut [Option<Tensor>],
    ) -> Result<(), RuntimeError> {
        let srcs =
            node.inputs.iter().map(|v| self.source(v.0, inputs, state, separate)).collect::<Result<Vec<_>, _>>()?;
        let out_place = match node.outputs.as_slice() {
            [o] => match state.plan.placements.get(o.0) {
                Some(Placement::Arena { offset, bytes }) => Some((offset / 4, bytes / 4, o.0)),
                _ => None,
            },
            _ => None,
        };
        let all_f32 = srcs.iter().all(|s| match s {
            Src::Arena(..) => true,
            Src::Tensor(t) => t.as_f32().is_some(),
        });
        if let (Some((off, len, ov)), true) = (out_place, all_f32) {
            if matches!(node.op, Op::Reshape { .. }) {
                if let Src::Arena(o, _) = srcs[0] {
                    if o == off {
                        return Ok(());
                    }
                }
            }
            let fast = matches!(
                node.op,
                Op::Conv(_)
                    | Op::FusedConv { .. }
                    | Op::MatMul { .. }
                    | Op::FusedMatMul { .. }
                    | Op::Fused(_)
                    | Op::Reshape { .. }
            );
            if fast {
                let shapes: Vec<&[usize]> = node
                    .inputs
                    .iter()
                    .zip(&srcs)
                    .map(|(v, s)| match s {
                        Src::Tensor(t) => t.shape(),
                        Src::Arena(..) => state.shapes[v.0].as_slice(),
                    })
                    .collect();
                let (lo, rest) = state.arena.split_at_mut(off);
                let (out, hi) = rest.split_at_mut(len);
                let (lo, hi): (&[f32], &[f32]) = (lo, hi);
                let mut views: Vec<Option<&[f32]>> = Vec::with_capacity(srcs.len());
                for s in &srcs {
                    views.push(match s {
                        Src::Tensor(t) => t.as_f32(),
                        Src::Arena(o, n) if o + n <= off => Some(&lo[*o..*o + *n]),
                        Src::Arena(o, n) if *o >= off + len => Some(&hi[*o - off - len..*o - off - len + *n]),
                        Src::Arena(o, n) if *o == off && *n == len => None,
                        Src::Arena(..) => {
                            return Err(RuntimeError::Plan(format!("'{}' overlaps its output", node.name)))
                        }
                    });
                }
                let out_shape = state.shapes[ov].as_slice();
                return fast_kernel(&node.op, &views, &shapes, out, out_shape);
            }
        }
        // Every other op runs through the allocating kernel and is copied into its place.
        let args: Vec<Tensor> = node
            .inputs
            .iter()
            .zip(&srcs)
            .map(|(v, s)| self.materialize(s, &state.shapes[v.0], &state.arena))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Tensor> = args.iter().collect();
        let outs = run_op(&node.op, &refs)?;
        for (&o, t) in node.outputs.iter().zip(outs) {
            match state.plan.placements.get(o.0) {
                Some(Placement::Arena { offset, bytes }) => {
                    let (o4, n4) = (offset / 4, bytes / 4);
                    match t.data() {
                        TensorData::F32(d) if d.len() == n4 => state.arena[o4..o4 + n4].copy_from_slice(d),
                        _ => return Err(RuntimeError::kernel(&node.op, "output does not fit its planned buffer")),
                    }
                }
                _ => separate[o.0] = Some(t),
            }
        }
        Ok(())
    }
}

/// The in-arena kernels. A `None` view is the output buffer itself (in place).
fn fast_kernel(
    op: &Op,
    views: &[Option<&[f32]>],
    shapes: &[&[usize]],
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), RuntimeError> {
    let need = |i: usize| -> Result<(&[f32], &[usize]), RuntimeError> {
        match (views.get(i).copied().flatten(), shapes.get(i)) {
            (Some(v), Some(s)) => Ok((v, *s)),
            _ => Err(RuntimeError::kernel(op, format!("operand {i} is not readable here"))),
        }
    };
    match op {
        Op::Conv(a) => cpu::conv::conv_into(op, a, need(0)?, need(1)?, out, out_shape, None),
        Op::FusedConv { conv, epilogue: e } => {
            let epi = epilogue_views(op, e, views)?;
            cpu::conv::conv_into(op, conv, need(0)?, need(1)?, out, out_shape, Some(&epi))
        }
        Op::MatMul { transpose_a, transpose_b } => {
            cpu::matmul::matmul_into(need(0)?, need(1)?, *transpose_a, *transpose_b, out, out_shape, None);
            Ok(())
        }
        Op::FusedMatMul { transpose_a, transpose_b, epilogue: e } => {
            let epi = epilogue_views(op, e, views)?;
            cpu::matmul::matmul_into(need(0)?, need(1)?, *transpose_a, *transpose_b, out, out_shape, Some(&epi));
            Ok(())
        }
        Op::Fused(expr) => {
            let operands: Vec<fused::Operand> =
                views.iter().zip(shapes).map(|(v, s)| fused::Operand { data: *v, shape: s }).collect();
            fused::eval(expr, &operands, out, out_shape);
            Ok(())
        }
        Op::Reshape { .. } => {
            out.copy_from_slice(need(0)?.0);
            Ok(())
        }
        _ => Err(RuntimeError::kernel(op, "no in-arena kernel")),
    }
}

/// The bias and residual views of an epilogue (operands 2 and on).
fn epilogue_views<'a>(
    op: &Op,
    e: &'a ir::Epilogue,
    views: &[Option<&'a [f32]>],
) -> Result<fused::EpilogueArgs<'a>, RuntimeError> {
    let mut k = 2;
    let mut next = |on: bool| -> Result<Option<&'a [f32]>, RuntimeError> {
        if !on {
            return Ok(None);
        }
        k += 1;
        views
            .get(k - 1)
            .copied()
            .flatten()
            .map(Some)
            .ok_or_else(|| RuntimeError::kernel(op, "epilogue operand is not readable here"))
    };
    let bias = next(e.bias)?;
    let residual = next(e.residual)?;
    Ok(fused::EpilogueArgs { epilogue: e, bias, residual })
}

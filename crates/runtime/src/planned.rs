//! The planned executor: runs an optimized graph from one arena laid out by a memory plan.
//! The arena and the per-step operand table are built when an input shape is first seen and
//! reused by every later run; convolutions, matmuls, fused expressions and reshapes read and
//! write the arena in place, other ops run through their allocating kernel and are copied in.

use crate::executor::{check_inputs, cpu_only};
use crate::{Device, Layout, RuntimeError, SessionOptions};
use ir::{Graph, MemoryPlan, Op, Placement, Tensor, TensorData, ValueId};
use kernels::arena;
use kernels::run_op;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Loc {
    Arena(usize, usize),
    Input(usize),
    Const(ValueId),
    Separate(ValueId),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A reshape that shares its input's buffer: nothing to do.
    Alias,
    /// An in-arena kernel.
    Fast,
    /// The allocating kernel, copied into place.
    Fallback,
}

#[derive(Debug)]
struct Step {
    node: usize,
    ins: Vec<Loc>,
    out: Option<(usize, usize)>,
    kind: Kind,
    /// The graph outputs this step writes into the arena: (output index, offset, length).
    done: Vec<(usize, usize, usize)>,
}

/// Told of each graph output the run writes into its arena as soon as its step has run: the
/// output's index and its values (final from then on). A training step hands its gradients to
/// the collective this way while the backward pass goes on.
pub type Ready<'a> = dyn FnMut(usize, &[f32]) + Send + 'a;

struct ArenaState {
    input_shapes: Vec<Vec<usize>>,
    plan: MemoryPlan,
    arena: Vec<f32>,
    steps: Vec<Step>,
    /// The run writes enough values that some op splits across threads: run it on the pool
    /// ([`kernels::on_pool`]).
    on_pool: bool,
}

/// Values written by a run (all its ops' outputs) from which it goes onto the thread pool
/// whole. A rule of thumb: a run writing fewer takes tens of microseconds, too short for its ops
/// to gain from splitting what going onto the pool and back costs (~10 µs on this VM).
const ON_POOL_VALUES: usize = 1 << 16;

/// A graph bound to a device and run from a planned arena.
pub struct PlannedSession {
    graph: Graph,
    device: Device,
    memory_limit: Option<usize>,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// The arenas of the last input shapes run, the newest first: at most [`KEPT_PLANS`], so
    /// that an epoch's short last batch does not re-plan the full-size one every epoch.
    state: Mutex<Vec<ArenaState>>,
}

/// A run's arenas (the one it ran in first) and the values it could not place in the arena.
type Executed<'s> = (MutexGuard<'s, Vec<ArenaState>>, Vec<(ValueId, Tensor)>);

/// How many input shapes' plans and arenas a session keeps.
const KEPT_PLANS: usize = 2;

/// `f` on references to `inputs`, held on the stack for a usual count (a run allocates only its
/// outputs).
fn with_refs<R>(inputs: &[Tensor], f: impl FnOnce(&[&Tensor]) -> R) -> R {
    let Some(first) = inputs.first() else { return f(&[]) };
    arena::with_slots(inputs.len(), first, |refs| {
        refs.iter_mut().zip(inputs).for_each(|(r, t)| *r = t);
        f(refs)
    })
}

fn loc(plan: &MemoryPlan, v: ValueId) -> Loc {
    match plan.placements.get(v.0) {
        Some(Placement::Arena { offset, bytes }) => Loc::Arena(offset / 4, bytes / 4),
        Some(Placement::Input(i)) => Loc::Input(*i),
        Some(Placement::Constant) => Loc::Const(v),
        _ => Loc::Separate(v),
    }
}

impl PlannedSession {
    /// Validates the graph and binds it to a device.
    pub fn new(graph: Graph, options: SessionOptions) -> Result<PlannedSession, RuntimeError> {
        graph.validate()?;
        let device = cpu_only(options.device)?;
        Ok(PlannedSession {
            graph,
            device,
            memory_limit: options.memory_limit,
            pool: options.pool,
            state: Mutex::new(Vec::new()),
        })
    }

    /// The device this session runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The thread pool it runs on (`None`: the caller's).
    pub fn pool(&self) -> &Option<std::sync::Arc<rayon::ThreadPool>> {
        &self.pool
    }

    /// The memory plan for inputs of the given shapes.
    pub fn plan_for(&self, input_shapes: &[Vec<usize>]) -> Result<MemoryPlan, RuntimeError> {
        Layout::Planned.plan(&self.graph, input_shapes)
    }

    /// Wakes the thread pool's workers when the last run went onto the pool, so that they are up
    /// by the time the next run starts: a caller does this before work of its own that precedes
    /// a run (converting a Python call's arrays), which then hides the workers' wake-up. A worker
    /// that finds nothing to do goes back to sleep.
    pub fn wake_pool(&self) {
        let on_pool = self.state.try_lock().ok().and_then(|g| g.first().map(|s| s.on_pool)).unwrap_or(false);
        if on_pool && rayon::current_num_threads() > 1 {
            match &self.pool {
                Some(p) => p.spawn(|| {}),
                None => rayon::spawn(|| {}),
            }
        }
    }

    /// Runs the graph on `inputs` and returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        with_refs(inputs, |r| self.run_timed(r, None))
    }

    /// [`PlannedSession::run`] on borrowed inputs (nothing is copied in: a training step reads
    /// the weights where they are).
    pub fn run_refs(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.run_timed(inputs, None)
    }

    /// Like [`PlannedSession::run`], also recording each node's wall time in seconds.
    pub fn run_profiled(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<f64>), RuntimeError> {
        let mut times = vec![0.0; self.graph.nodes().len()];
        let outs = with_refs(inputs, |r| self.run_timed(r, Some(&mut times)))?;
        Ok((outs, times))
    }

    fn prepare(&self, input_shapes: Vec<Vec<usize>>) -> Result<ArenaState, RuntimeError> {
        let plan = self.plan_for(&input_shapes)?;
        let machine = crate::memory::available_memory().map(|m| (m, "available on this machine"));
        crate::memory::check(crate::memory::planned_bytes(&self.graph, &plan), self.memory_limit, machine)?;
        let mut steps = Vec::with_capacity(plan.order.len());
        for nid in &plan.order {
            let node = self
                .graph
                .nodes()
                .get(nid.0)
                .ok_or_else(|| RuntimeError::Plan("the plan names a missing node".into()))?;
            let ins: Vec<Loc> = node.inputs.iter().map(|&v| loc(&plan, v)).collect();
            let out = match node.outputs.as_slice() {
                [o] => match loc(&plan, *o) {
                    Loc::Arena(off, len) => Some((off, len)),
                    _ => None,
                },
                _ => None,
            };
            let f32_in = node.inputs.iter().all(|&v| self.graph.value(v).ty.dtype == ir::DType::F32);
            let in_shapes: Vec<&[usize]> = node.inputs.iter().map(|v| plan.shapes[v.0].as_slice()).collect();
            let kind = match (out, ins.first()) {
                (Some((off, _)), Some(Loc::Arena(i, _))) if matches!(node.op, Op::Reshape { .. }) && *i == off => {
                    Kind::Alias
                }
                (Some(_), _) if f32_in && arena::supports(&node.op, &in_shapes) => Kind::Fast,
                _ => Kind::Fallback,
            };
            let done = node
                .outputs
                .iter()
                .filter_map(|&o| match (self.graph.outputs().iter().position(|&g| g == o), loc(&plan, o)) {
                    (Some(k), Loc::Arena(off, len)) => Some((k, off, len)),
                    _ => None,
                })
                .collect();
            steps.push(Step { node: nid.0, ins, out, kind, done });
        }
        let arena = vec![0f32; plan.arena_bytes.div_ceil(4)];
        let written: usize = steps
            .iter()
            .flat_map(|s| &self.graph.nodes()[s.node].outputs)
            .map(|v| plan.shapes[v.0].iter().product::<usize>())
            .sum();
        Ok(ArenaState { input_shapes, plan, arena, steps, on_pool: written >= ON_POOL_VALUES })
    }

    /// [`PlannedSession::run_profiled`] on borrowed inputs.
    pub fn run_profiled_refs(&self, inputs: &[&Tensor]) -> Result<(Vec<Tensor>, Vec<f64>), RuntimeError> {
        let mut times = vec![0.0; self.graph.nodes().len()];
        let outs = self.run_timed(inputs, Some(&mut times))?;
        Ok((outs, times))
    }

    fn run_timed(&self, inputs: &[&Tensor], times: Option<&mut Vec<f64>>) -> Result<Vec<Tensor>, RuntimeError> {
        let (guard, separate) = self.execute(inputs, times, None)?;
        let state = guard.first().ok_or_else(|| RuntimeError::Plan("no arena".into()))?;
        self.graph
            .outputs()
            .iter()
            .map(|&v| self.materialize(loc(&state.plan, v), &state.plan.shapes[v.0], inputs, &state.arena, &separate))
            .collect()
    }

    /// Runs the graph; the outputs with index in `viewed` stay where the run left them (read
    /// through the returned [`ArenaOutputs`], which holds the session until dropped), the others
    /// are returned in order. A training step's update reads its gradients this way. With
    /// `times`, each node's wall time in seconds is added to `times[node]`.
    pub fn run_split(
        &self,
        inputs: &[&Tensor],
        times: Option<&mut Vec<f64>>,
        viewed: std::ops::Range<usize>,
    ) -> Result<(Vec<Tensor>, ArenaOutputs<'_>), RuntimeError> {
        self.run_split_watched(inputs, times, viewed, None)
    }

    /// [`PlannedSession::run_split`], telling `ready` of each output the run writes into its
    /// arena as soon as it is written (the others: read them from the returned outputs).
    pub fn run_split_watched(
        &self,
        inputs: &[&Tensor],
        times: Option<&mut Vec<f64>>,
        viewed: std::ops::Range<usize>,
        ready: Option<&mut Ready<'_>>,
    ) -> Result<(Vec<Tensor>, ArenaOutputs<'_>), RuntimeError> {
        let outputs = self.graph.outputs();
        if viewed.end > outputs.len() || viewed.start > viewed.end {
            return Err(RuntimeError::Plan(format!("outputs {viewed:?} of {}", outputs.len())));
        }
        let (guard, separate) = self.execute(inputs, times, ready)?;
        let state = guard.first().ok_or_else(|| RuntimeError::Plan("no arena".into()))?;
        let mut rest = Vec::with_capacity(outputs.len() - viewed.len());
        let mut copied = Vec::new();
        for (k, &v) in outputs.iter().enumerate() {
            let l = loc(&state.plan, v);
            if !viewed.contains(&k) {
                rest.push(self.materialize(l, &state.plan.shapes[v.0], inputs, &state.arena, &separate)?);
            } else if let Loc::Input(i) = l {
                let t = inputs.get(i).ok_or_else(|| RuntimeError::Plan("input missing".into()))?;
                copied.push((v, (*t).clone()));
            }
        }
        copied.extend(separate);
        Ok((rest, ArenaOutputs { session: self, guard, first: viewed.start, len: viewed.len(), owned: copied }))
    }

    /// Runs the plan for these inputs (planned and kept on the first run of their shapes); the
    /// arena is the first state of the returned guard, with the values not in the arena.
    fn execute(
        &self,
        inputs: &[&Tensor],
        times: Option<&mut Vec<f64>>,
        ready: Option<&mut Ready<'_>>,
    ) -> Result<Executed<'_>, RuntimeError> {
        check_inputs(&self.graph, inputs)?;
        let mut guard = self.state.lock().map_err(|_| RuntimeError::Plan("arena lock poisoned".into()))?;
        let same = |s: &ArenaState| {
            s.input_shapes.len() == inputs.len() && s.input_shapes.iter().zip(inputs).all(|(a, t)| a == t.shape())
        };
        match guard.iter().position(same) {
            Some(0) => {}
            Some(k) => guard[..=k].rotate_right(1),
            None => {
                let fresh = self.prepare(inputs.iter().map(|t| t.shape().to_vec()).collect())?;
                guard.truncate(KEPT_PLANS - 1);
                guard.insert(0, fresh);
            }
        }
        let state = guard.first_mut().ok_or_else(|| RuntimeError::Plan("no arena".into()))?;
        let separate = crate::executor::on(&self.pool, || {
            if state.on_pool {
                kernels::on_pool(|| self.run_steps(inputs, state, times, ready))
            } else {
                self.run_steps(inputs, state, times, ready)
            }
        })?;
        Ok((guard, separate))
    }

    /// Runs the plan's steps in order into the arena; returns the values it could not place
    /// there.
    fn run_steps(
        &self,
        inputs: &[&Tensor],
        state: &mut ArenaState,
        mut times: Option<&mut Vec<f64>>,
        mut ready: Option<&mut Ready<'_>>,
    ) -> Result<Vec<(ValueId, Tensor)>, RuntimeError> {
        let mut separate: Vec<(ValueId, Tensor)> = Vec::new();
        for step in &state.steps {
            let node = &self.graph.nodes()[step.node];
            let t0 = times.is_some().then(Instant::now);
            let res = match step.kind {
                Kind::Alias => Ok(()),
                Kind::Fast => self.fast(step, inputs, &state.plan, &mut state.arena),
                Kind::Fallback => self.fallback(step, inputs, &state.plan, &mut state.arena, &mut separate),
            };
            res.map_err(|e| match e {
                RuntimeError::Kernel { op, message, .. } => {
                    RuntimeError::Kernel { op, node: node.name.clone(), message }
                }
                other => other,
            })?;
            if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
                t[step.node] += t0.elapsed().as_secs_f64();
            }
            if let Some(r) = ready.as_deref_mut() {
                for &(k, off, len) in &step.done {
                    r(k, &state.arena[off..off + len]);
                }
            }
        }
        Ok(separate)
    }

    fn materialize(
        &self,
        l: Loc,
        shape: &[usize],
        inputs: &[&Tensor],
        arena: &[f32],
        separate: &[(ValueId, Tensor)],
    ) -> Result<Tensor, RuntimeError> {
        let missing = || RuntimeError::Plan("a value is not available".into());
        match l {
            Loc::Arena(o, n) => Ok(Tensor::from_f32(shape, arena[o..o + n].to_vec())?),
            Loc::Input(i) => inputs.get(i).map(|t| (*t).clone()).ok_or_else(missing),
            Loc::Const(v) => self.graph.constant(v).cloned().ok_or_else(missing),
            Loc::Separate(v) => separate.iter().find(|(k, _)| *k == v).map(|(_, t)| t.clone()).ok_or_else(missing),
        }
    }

    fn fast(&self, step: &Step, inputs: &[&Tensor], plan: &MemoryPlan, arena: &mut [f32]) -> Result<(), RuntimeError> {
        let node = &self.graph.nodes()[step.node];
        let (off, len) = step.out.ok_or_else(|| RuntimeError::Plan("fast step without a slot".into()))?;
        let (lo, rest) = arena.split_at_mut(off);
        let (out, hi) = rest.split_at_mut(len);
        let (lo, hi): (&[f32], &[f32]) = (lo, hi);
        let n = step.ins.len();
        arena::with_slots(n, None, |views| {
            arena::with_slots(n, &[][..], |shapes| {
                for (k, (l, v)) in step.ins.iter().zip(&node.inputs).enumerate() {
                    shapes[k] = &plan.shapes[v.0];
                    views[k] = match *l {
                        Loc::Arena(o, n) if o + n <= off => Some(&lo[o..o + n]),
                        Loc::Arena(o, n) if o >= off + len => Some(&hi[o - off - len..o - off - len + n]),
                        Loc::Arena(o, n) if o == off && n == len => None,
                        Loc::Arena(..) => {
                            return Err(RuntimeError::Plan(format!("'{}' overlaps its output", node.name)))
                        }
                        Loc::Input(i) => inputs.get(i).and_then(|t| t.as_f32()),
                        Loc::Const(c) => self.graph.constant(c).and_then(|t| t.as_f32()),
                        Loc::Separate(_) => return Err(RuntimeError::Plan("fast step reads a separate value".into())),
                    };
                }
                Ok(arena::run_into(&node.op, views, shapes, out, &plan.shapes[node.outputs[0].0])?)
            })
        })
    }

    fn fallback(
        &self,
        step: &Step,
        inputs: &[&Tensor],
        plan: &MemoryPlan,
        arena: &mut [f32],
        separate: &mut Vec<(ValueId, Tensor)>,
    ) -> Result<(), RuntimeError> {
        let node = &self.graph.nodes()[step.node];
        let mut owned: Vec<Tensor> = Vec::new();
        let mut which: Vec<Result<usize, &Tensor>> = Vec::with_capacity(step.ins.len());
        for (l, v) in step.ins.iter().zip(&node.inputs) {
            which.push(match *l {
                Loc::Input(i) => Err(*inputs.get(i).ok_or_else(|| RuntimeError::Plan("input missing".into()))?),
                Loc::Const(c) => {
                    Err(self.graph.constant(c).ok_or_else(|| RuntimeError::Plan("weight missing".into()))?)
                }
                _ => {
                    owned.push(self.materialize(*l, &plan.shapes[v.0], inputs, arena, separate)?);
                    Ok(owned.len() - 1)
                }
            });
        }
        let args: Vec<&Tensor> = which
            .iter()
            .map(|w| match w {
                Ok(i) => &owned[*i],
                Err(t) => *t,
            })
            .collect();
        let outs = run_op(&node.op, &args)?;
        for (&o, t) in node.outputs.iter().zip(outs) {
            match loc(plan, o) {
                Loc::Arena(off, n) => match t.data() {
                    TensorData::F32(d) if d.len() == n => arena[off..off + n].copy_from_slice(d),
                    _ => return Err(RuntimeError::kernel(&node.op, "output does not fit its planned buffer")),
                },
                _ => separate.push((o, t)),
            }
        }
        Ok(())
    }
}

/// Outputs of a [`PlannedSession::run_split`] read where the run left them. The session is
/// held (another run waits) until this is dropped.
pub struct ArenaOutputs<'s> {
    session: &'s PlannedSession,
    guard: MutexGuard<'s, Vec<ArenaState>>,
    first: usize,
    len: usize,
    /// Viewed values that are not in the arena.
    owned: Vec<(ValueId, Tensor)>,
}

impl ArenaOutputs<'_> {
    /// How many outputs are viewed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no output is viewed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `k`-th viewed output's float32 values (empty for another dtype or `k` out of range).
    pub fn f32(&self, k: usize) -> &[f32] {
        let graph = &self.session.graph;
        let (Some(&v), Some(state)) = (graph.outputs().get(self.first + k), self.guard.first()) else {
            return &[];
        };
        if k >= self.len {
            return &[];
        }
        match loc(&state.plan, v) {
            Loc::Arena(o, n) => state.arena.get(o..o + n).unwrap_or(&[]),
            Loc::Const(c) => graph.constant(c).and_then(Tensor::as_f32).unwrap_or(&[]),
            Loc::Input(_) | Loc::Separate(_) => {
                self.owned.iter().find(|(x, _)| *x == v).and_then(|(_, t)| t.as_f32()).unwrap_or(&[])
            }
        }
    }
}

//! The CUDA executor: generated kernels compiled with NVRTC for the device's own architecture
//! (cached on disk), one device arena laid out by the memory plan, weights uploaded once, and
//! the whole plan captured as a CUDA graph and replayed on every run.

use super::buffers::{err, tensor_bytes, DevBuf, Launch};
use super::nvrtc::PtxCache;
use super::update::{DeviceUpdate, TrainedState};
use crate::executor::check_inputs;
use crate::RuntimeError;
use codegen::cuda::emit_plan_with;
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaGraph, CudaStream, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use ir::{DType, Graph, MemoryPlan, Placement, Tensor, TensorData, ValueId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How a [`CudaSession`] runs.
#[derive(Debug, Clone)]
pub struct CudaOptions {
    /// The visible device's ordinal.
    pub ordinal: usize,
    /// Where compiled PTX is cached.
    pub cache_dir: PathBuf,
    /// Where to look for NVRTC if it is not on the loader's path.
    pub nvrtc_dirs: Vec<PathBuf>,
    /// Capture the launches as a CUDA graph and replay it (else launch one by one).
    pub cuda_graph: bool,
    /// Arithmetic of matrix products and convolutions (tensor cores for tf32/bf16/fp16).
    pub precision: codegen::cuda::Precision,
    /// The arena's layout: the optimizer's memory plan, or one buffer per tensor.
    pub layout: crate::Layout,
    /// The most bytes the run's tensors may take on the device; `None`: the device's memory.
    pub memory_limit: Option<usize>,
}

impl CudaOptions {
    /// GPU `ordinal` with the defaults: NVRTC found where [`super::default_nvrtc_dirs`] looks,
    /// CUDA-graph replay, float32 arithmetic, the optimizer's memory plan.
    pub fn new(ordinal: usize, cache_dir: PathBuf) -> CudaOptions {
        CudaOptions {
            ordinal,
            cache_dir,
            nvrtc_dirs: super::default_nvrtc_dirs(),
            cuda_graph: true,
            precision: Default::default(),
            layout: Default::default(),
            memory_limit: None,
        }
    }
}

fn tensor_from_bytes(d: DType, shape: &[usize], b: &[u8]) -> Result<Tensor, RuntimeError> {
    let take4 = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    let data = match d {
        DType::F32 => TensorData::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes(take4(c))).collect()),
        DType::I32 => TensorData::I32(b.chunks_exact(4).map(|c| i32::from_le_bytes(take4(c))).collect()),
        DType::I64 => TensorData::I64(
            b.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
        ),
        DType::Bool => TensorData::Bool(b.iter().map(|&x| x != 0).collect()),
        DType::U8 => TensorData::U8(b.to_vec()),
        DType::F16 => TensorData::F16(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()),
        DType::BF16 => TensorData::BF16(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()),
    };
    Ok(Tensor::new(shape.to_vec(), data)?)
}

struct GpuState {
    input_shapes: Vec<Vec<usize>>,
    plan: MemoryPlan,
    arena: DevBuf,
    /// One buffer per input; `None` for a weight kept on the device ([`DeviceUpdate`]).
    inputs: Vec<Option<DevBuf>>,
    /// The parameter table of the device update (its pointers depend on this plan): held for
    /// the update's launches, which point into it.
    _update_params: Option<DevBuf>,
    separate: HashMap<ValueId, DevBuf>,
    launches: Vec<Launch>,
    graph: Option<CudaGraph>,
    /// Page-locked staging buffers: one per input (write-combined) and per device-side output.
    pinned_in: Vec<Option<PinnedHostSlice<u8>>>,
    pinned_out: Vec<Option<PinnedHostSlice<u8>>>,
}

/// A graph bound to one GPU.
pub struct CudaSession {
    graph: Graph,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: &'static str,
    /// The device's memory in bytes.
    device_memory: usize,
    options: CudaOptions,
    weights: HashMap<ValueId, DevBuf>,
    /// Locked before `update` wherever both are.
    state: Mutex<Option<GpuState>>,
    /// The optimizer update run after each training step, once enabled.
    update: Mutex<Option<DeviceUpdate>>,
}

fn arch_of(cc: (i32, i32)) -> Result<&'static str, RuntimeError> {
    Ok(match cc {
        (7, 0) => "sm_70",
        (7, 5) => "sm_75",
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (12, 0) => "sm_120",
        other => return Err(RuntimeError::Cuda(format!("compute capability {other:?} is not supported"))),
    })
}

impl CudaSession {
    /// Opens the device, validates the graph and uploads its weights.
    pub fn new(graph: Graph, options: CudaOptions) -> Result<CudaSession, RuntimeError> {
        graph.validate()?;
        let status = super::probe(&options.nvrtc_dirs);
        if let Some(why) = &status.why_no_gpu {
            return Err(RuntimeError::Cuda(why.clone()));
        }
        let info = status
            .gpus
            .get(options.ordinal)
            .ok_or_else(|| RuntimeError::Cuda(format!("no visible GPU {}", options.ordinal)))?;
        let arch = arch_of(info.compute_capability)?;
        let device_memory = info.memory_bytes;
        let ctx = CudaContext::new(options.ordinal).map_err(|e| err("cannot open the device", e))?;
        // One stream carries all work, so cudarc's cross-stream event tracking is not needed.
        // SAFETY: no buffer of this context is used from another stream.
        unsafe { ctx.disable_event_tracking() };
        // A stream of its own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().map_err(|e| err("cannot create a stream", e))?;
        let mut weights = HashMap::new();
        for (&v, t) in graph.constants() {
            let bytes = tensor_bytes(t);
            let buf = stream.clone_htod(&bytes[..]).map_err(|e| err("cannot upload weights", e))?;
            weights.insert(v, DevBuf { bytes: buf });
        }
        Ok(CudaSession {
            graph,
            ctx,
            stream,
            arch,
            device_memory,
            options,
            weights,
            state: Mutex::new(None),
            update: Mutex::new(None),
        })
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device's name.
    pub fn device_name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "GPU".into())
    }

    fn alloc(&self, bytes: usize) -> Result<DevBuf, RuntimeError> {
        let b = self.stream.alloc_zeros::<u8>(bytes.max(4)).map_err(|e| err("out of device memory", e))?;
        Ok(DevBuf { bytes: b })
    }

    /// Kernel `name` of `source`, compiled for this device (or read from the PTX cache) and
    /// loaded.
    fn load_kernel(&self, name: &str, source: &str) -> Result<CudaFunction, RuntimeError> {
        let cache = PtxCache { dir: self.options.cache_dir.clone() };
        let ptx = cache.get(name, source, self.arch, &self.options.nvrtc_dirs)?;
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| err(&format!("cannot load kernel {name}"), e))?;
        module.load_function(name).map_err(|e| err(&format!("no entry {name}"), e))
    }

    fn prepare(&self, input_shapes: Vec<Vec<usize>>, upd: Option<&DeviceUpdate>) -> Result<GpuState, RuntimeError> {
        let plan = self.options.layout.plan(&self.graph, &input_shapes)?;
        let device = (self.device_memory > 0).then_some((self.device_memory, "the device's memory"));
        // On the device: the weights (uploaded once), the arena and the tensors outside it.
        let needed =
            crate::memory::weight_bytes(&self.graph).saturating_add(crate::memory::planned_bytes(&self.graph, &plan));
        crate::memory::check(needed, self.options.memory_limit, device)?;
        let steps = emit_plan_with(&self.graph, &plan, self.options.precision)
            .map_err(|e| RuntimeError::Cuda(e.to_string()))?;
        let arena = self.alloc(plan.arena_bytes)?;
        let resident = |i: usize| upd.is_some_and(|u| u.is_resident(i));
        let mut inputs = Vec::new();
        for (i, &v) in self.graph.inputs().iter().enumerate() {
            let n: usize = input_shapes[i].iter().product();
            inputs.push(if resident(i) { None } else { Some(self.alloc(n * self.graph.value(v).ty.dtype.size())?) });
        }
        let mut separate = HashMap::new();
        for (i, p) in plan.placements.iter().enumerate() {
            if let (Placement::Separate, ir::Producer::Node(..)) = (p, self.graph.values()[i].producer) {
                let n: usize = plan.shapes[i].iter().product();
                separate.insert(ValueId(i), self.alloc(n * self.graph.values()[i].ty.dtype.size())?);
            }
        }
        let arena_base = arena.ptr(&self.stream);
        // Where value `v` is on the device for these shapes.
        let address = |v: ValueId| -> Result<u64, RuntimeError> {
            Ok(match plan.placements.get(v.0) {
                Some(Placement::Arena { offset, .. }) => arena_base + *offset as u64,
                Some(Placement::Input(i)) => match (&inputs[*i], upd) {
                    (Some(b), _) => b.ptr(&self.stream),
                    (None, Some(u)) => u.weight_ptr(*i, &self.stream)?,
                    (None, None) => return Err(RuntimeError::Cuda("input buffer missing".into())),
                },
                Some(Placement::Constant) => self
                    .weights
                    .get(&v)
                    .ok_or_else(|| RuntimeError::Cuda("weight not uploaded".into()))?
                    .ptr(&self.stream),
                _ => separate.get(&v).ok_or_else(|| RuntimeError::Cuda("buffer missing".into()))?.ptr(&self.stream),
            })
        };
        let mut launches = Vec::new();
        for step in &steps {
            for k in &step.kernels {
                let func = self.load_kernel(&k.name, &k.source)?;
                let args = k.args.iter().map(|a| address(a.value)).collect::<Result<Vec<u64>, _>>()?;
                let l = k.launch;
                let cfg = LaunchConfig {
                    grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
                    block_dim: (l.block[0], l.block[1], l.block[2]),
                    shared_mem_bytes: l.shared_bytes,
                };
                launches.push(Launch { func, cfg, args });
            }
        }
        let update_params = match upd {
            Some(u) => {
                let grads = &self.graph.outputs()[u.grad_outputs()];
                let loss = self.graph.outputs().first().ok_or_else(|| RuntimeError::Cuda("no loss output".into()))?;
                let (table, ls) = u.launches(&self.graph, &self.stream, grads, *loss, &address)?;
                launches.extend(ls);
                Some(table)
            }
            None => None,
        };
        let mut pinned_in = Vec::new();
        for (i, &v) in self.graph.inputs().iter().enumerate() {
            let n = input_shapes[i].iter().product::<usize>() * self.graph.value(v).ty.dtype.size();
            pinned_in.push(if resident(i) {
                None
            } else {
                // SAFETY: the buffer is filled before any copy reads it.
                Some(unsafe { self.ctx.alloc_pinned::<u8>(n.max(4)) }.map_err(|e| err("pinned memory", e))?)
            });
        }
        let mut pinned_out = Vec::new();
        for (k, &o) in self.graph.outputs().iter().enumerate() {
            let gradient = upd.is_some_and(|u| u.grad_outputs().contains(&k));
            let on_device = !gradient
                && matches!(plan.placements.get(o.0), Some(Placement::Arena { .. }) | Some(Placement::Separate));
            pinned_out.push(if on_device {
                let n = plan.shapes[o.0].iter().product::<usize>() * self.graph.value(o).ty.dtype.size();
                // SAFETY: the buffer is written by the download before it is read.
                Some(
                    unsafe { self.ctx.alloc_pinned_with_flags::<u8>(n.max(4), 0) }
                        .map_err(|e| err("pinned memory", e))?,
                )
            } else {
                None
            });
        }
        Ok(GpuState {
            input_shapes,
            plan,
            arena,
            inputs,
            _update_params: update_params,
            separate,
            launches,
            graph: None,
            pinned_in,
            pinned_out,
        })
    }

    fn launch_all(&self, st: &GpuState) -> Result<(), RuntimeError> {
        for l in &st.launches {
            let mut b = self.stream.launch_builder(&l.func);
            for a in &l.args {
                b.arg(a);
            }
            // SAFETY: every pointer argument addresses a live buffer of this context sized by the
            // plan for these input shapes, and the kernel's parameters are exactly these pointers.
            unsafe { b.launch(l.cfg) }.map_err(|e| err("kernel launch failed", e))?;
        }
        Ok(())
    }

    /// Runs the graph and returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.run_timed(inputs).map(|(o, _)| o)
    }

    /// Runs the graph; also returns the milliseconds between CUDA events around the kernels.
    pub fn run_timed(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, f64), RuntimeError> {
        let refs: Vec<&Tensor> = inputs.iter().collect();
        self.execute(&refs, None)
    }

    /// Runs the graph on `inputs`, then (with `scalars`) the device update. With the update the
    /// resident weights' entries of `inputs` are not read and the gradients are not returned.
    fn execute(
        &self,
        inputs: &[&Tensor],
        scalars: Option<&ir::UpdateScalars>,
    ) -> Result<(Vec<Tensor>, f64), RuntimeError> {
        check_inputs(&self.graph, inputs)?;
        let mut guard = self.state.lock().map_err(|_| RuntimeError::Plan("state lock poisoned".into()))?;
        let mut upd_guard = self.update.lock().map_err(|_| RuntimeError::Plan("update lock poisoned".into()))?;
        if let (Some(u), Some(s)) = (upd_guard.as_mut(), scalars) {
            u.upload_scalars(&self.stream, s)?;
        }
        let upd = upd_guard.as_ref();
        match (upd, scalars) {
            (Some(_), None) => {
                return Err(RuntimeError::Plan(
                    "this session trains on the device: run it through its training step".into(),
                ))
            }
            (None, Some(_)) => return Err(RuntimeError::Plan("no device update is enabled".into())),
            _ => {}
        }
        let same = guard.as_ref().is_some_and(|s| s.input_shapes.iter().zip(inputs).all(|(a, t)| a == t.shape()));
        if !same {
            *guard = None;
            *guard = Some(self.prepare(inputs.iter().map(|t| t.shape().to_vec()).collect(), upd)?);
        }
        let st = guard.as_mut().ok_or_else(|| RuntimeError::Plan("no state".into()))?;
        for ((buf, pin), t) in st.inputs.iter_mut().zip(st.pinned_in.iter_mut()).zip(inputs) {
            let (Some(buf), Some(pin)) = (buf, pin) else { continue };
            let bytes = tensor_bytes(t);
            let staged = pin.as_mut_slice().map_err(|e| err("pinned memory", e))?;
            staged[..bytes.len()].copy_from_slice(&bytes);
            self.stream.memcpy_htod(&*pin, &mut buf.bytes).map_err(|e| err("input upload", e))?;
        }
        let start = self.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| err("event", e))?;
        let end = self.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| err("event", e))?;
        start.record(&self.stream).map_err(|e| err("event", e))?;
        if self.options.cuda_graph {
            if st.graph.is_none() {
                self.stream
                    .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(|e| err("graph capture", e))?;
                let launched = self.launch_all(st);
                let g =
                    self.stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(|e| err("graph capture", e))?;
                launched?;
                st.graph = g;
            }
            match &st.graph {
                Some(g) => g.launch().map_err(|e| err("graph launch", e))?,
                None => self.launch_all(st)?,
            }
        } else {
            self.launch_all(st)?;
        }
        end.record(&self.stream).map_err(|e| err("event", e))?;
        self.stream.synchronize().map_err(|e| err("kernel execution failed", e))?;
        let ms = start.elapsed_ms(&end).map_err(|e| err("event", e))? as f64;
        // Copy every device-side output into its pinned buffer, wait, then build the tensors.
        for (k, &o) in self.graph.outputs().iter().enumerate() {
            let Some(Some(pin)) = st.pinned_out.get_mut(k) else { continue };
            let n = st.plan.shapes[o.0].iter().product::<usize>() * self.graph.value(o).ty.dtype.size();
            let view = match st.plan.placements.get(o.0) {
                Some(Placement::Arena { offset, .. }) => st.arena.bytes.slice(*offset..*offset + n),
                _ => st.separate.get(&o).ok_or_else(|| RuntimeError::Plan("output buffer".into()))?.bytes.slice(0..n),
            };
            self.stream.memcpy_dtoh(&view, pin).map_err(|e| err("output download", e))?;
        }
        self.stream.synchronize().map_err(|e| err("download", e))?;
        let mut outs = Vec::with_capacity(self.graph.outputs().len());
        for (k, &o) in self.graph.outputs().iter().enumerate() {
            if upd.is_some_and(|u| u.grad_outputs().contains(&k)) {
                continue;
            }
            let val = self.graph.value(o);
            let shape = &st.plan.shapes[o.0];
            outs.push(match (st.plan.placements.get(o.0), st.pinned_out.get(k)) {
                (_, Some(Some(pin))) => {
                    let n = shape.iter().product::<usize>() * val.ty.dtype.size();
                    let host = pin.as_slice().map_err(|e| err("pinned memory", e))?;
                    tensor_from_bytes(val.ty.dtype, shape, &host[..n])?
                }
                (Some(Placement::Input(i)), _) => (*inputs[*i]).clone(),
                _ => {
                    self.graph.constant(o).cloned().ok_or_else(|| RuntimeError::Plan("output not available".into()))?
                }
            });
        }
        Ok((outs, ms))
    }

    /// From now on, graph inputs `first_input..` (the trained `weights`) live on the device with
    /// their optimizer `slots` (`rule.slots()` blocks of each weight's size), and every
    /// [`CudaSession::run_step`] ends with `rule`'s update from the gradients at outputs
    /// `first_grad..`. `decay`: the optimizer has weight decay.
    #[allow(clippy::too_many_arguments)]
    pub fn enable_update(
        &self,
        rule: &ir::UpdateRule,
        clip: ir::GradClip,
        decay: bool,
        first_input: usize,
        first_grad: usize,
        weights: &[Tensor],
        slots: &[Vec<f32>],
    ) -> Result<(), RuntimeError> {
        if first_input + weights.len() > self.graph.inputs().len()
            || first_grad + weights.len() > self.graph.outputs().len()
        {
            return Err(RuntimeError::Plan("the device update does not fit the graph's inputs and outputs".into()));
        }
        let load = |name: &str, source: &str| self.load_kernel(name, source);
        let fresh =
            DeviceUpdate::new(&self.stream, &load, rule, clip, decay, (first_input, first_grad), weights, slots)?;
        let mut state = self.state.lock().map_err(|_| RuntimeError::Plan("state lock poisoned".into()))?;
        let mut upd = self.update.lock().map_err(|_| RuntimeError::Plan("update lock poisoned".into()))?;
        // Every plan is made again, with the weights' buffers and the update's launches.
        *state = None;
        *upd = Some(fresh);
        Ok(())
    }

    /// One training step: the graph on `inputs` (the resident weights' entries are not read),
    /// then the update with `scalars`. The outputs in order, without the gradients.
    pub fn run_step(&self, inputs: &[&Tensor], scalars: &ir::UpdateScalars) -> Result<Vec<Tensor>, RuntimeError> {
        self.execute(inputs, Some(scalars)).map(|(o, _)| o)
    }

    /// The weights and the optimizer slots as the device has them (`None` before
    /// [`CudaSession::enable_update`]).
    pub fn read_update(&self) -> Result<Option<TrainedState>, RuntimeError> {
        let upd = self.update.lock().map_err(|_| RuntimeError::Plan("update lock poisoned".into()))?;
        upd.as_ref().map(|u| u.read(&self.stream)).transpose()
    }
}

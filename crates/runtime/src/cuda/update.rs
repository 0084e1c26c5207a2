//! The optimizer update on the device: a training step's weights and optimizer slots are
//! uploaded once and stay on the GPU; after the step's kernels, the update kernels
//! (`codegen::cuda::optim`) read the gradients where the step wrote them and update the weights
//! and slots in place, in the same CUDA graph. Per step only the batch goes up (and eight
//! scalars: the learning rate and the rule's constants), and only the loss, the predictions and
//! the batch statistics come down. The weights come back when asked ([`CudaSession::read_update`]).

use super::nvrtc::PtxCache;
use super::session::{err, tensor_bytes, CudaSession, DevBuf, Launch};
use crate::RuntimeError;
use codegen::cuda::optim::{update_chunks, update_kernels, PARAM_WORDS, UPDATE_THREADS};
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig};
use ir::{DType, GradClip, Tensor, UpdateRule, UpdateScalars, ValueId};
use std::sync::Arc;

/// The device side of an optimizer: what stays on the GPU between steps.
pub(super) struct DeviceUpdate {
    /// The graph input of the first trained weight; the others follow it.
    pub(super) first_input: usize,
    /// The graph output of the first gradient (in weight order).
    pub(super) first_grad: usize,
    /// Each weight's element count.
    pub(super) sizes: Vec<usize>,
    n_slots: usize,
    weights: Vec<DevBuf>,
    slots: Vec<DevBuf>,
    scal: DevBuf,
    chunks: DevBuf,
    n_chunks: u32,
    partial: DevBuf,
    sumsq: Option<CudaFunction>,
    update: CudaFunction,
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl DeviceUpdate {
    /// Whether graph input `i` is a weight kept on the device.
    pub(super) fn is_resident(&self, i: usize) -> bool {
        (self.first_input..self.first_input + self.sizes.len()).contains(&i)
    }

    /// The device address of resident input `i`.
    pub(super) fn weight_ptr(&self, i: usize, stream: &Arc<CudaStream>) -> Result<u64, RuntimeError> {
        let k = i.checked_sub(self.first_input).ok_or_else(|| RuntimeError::Cuda("not a resident weight".into()))?;
        Ok(self.weights.get(k).ok_or_else(|| RuntimeError::Cuda("not a resident weight".into()))?.ptr(stream))
    }

    /// The parameter table for gradients at `grads` and the loss at `loss` (addresses given by
    /// `address` for the plan at hand), and the launches of the update.
    pub(super) fn launches(
        &self,
        s: &CudaSession,
        grads: &[ValueId],
        loss: ValueId,
        address: &dyn Fn(ValueId) -> Result<u64, RuntimeError>,
    ) -> Result<(DevBuf, Vec<Launch>), RuntimeError> {
        let g = s.graph();
        if grads.len() != self.sizes.len() {
            return Err(RuntimeError::Cuda(format!("{} weights but {} gradients", self.sizes.len(), grads.len())));
        }
        let (_, spans) = update_chunks(&self.sizes);
        let mut table: Vec<u64> = Vec::with_capacity(PARAM_WORDS * self.sizes.len());
        for (k, (&gv, &n)) in grads.iter().zip(&self.sizes).enumerate() {
            if g.value(gv).ty.dtype != DType::F32 {
                return Err(RuntimeError::Cuda(format!("gradient {k} is not float32")));
            }
            let (first, count) = spans[k];
            table.extend([
                self.weights[k].ptr(&s.stream),
                address(gv)?,
                self.slots[k].ptr(&s.stream),
                n as u64,
                first as u64,
                count as u64,
            ]);
        }
        let bytes: Vec<u8> = table.iter().flat_map(|w| w.to_le_bytes()).collect();
        let params = DevBuf { bytes: s.stream.clone_htod(&bytes[..]).map_err(|e| err("update table", e))? };
        let args = vec![
            params.ptr(&s.stream),
            self.chunks.ptr(&s.stream),
            self.scal.ptr(&s.stream),
            self.partial.ptr(&s.stream),
            address(loss)?,
        ];
        let cfg = LaunchConfig { grid_dim: (self.n_chunks, 1, 1), block_dim: (UPDATE_THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut launches = Vec::new();
        if self.n_chunks > 0 {
            for func in self.sumsq.iter().chain([&self.update]) {
                launches.push(Launch { func: func.clone(), cfg, args: args.clone() });
            }
        }
        Ok((params, launches))
    }

    /// This step's scalars, before the step's kernels run.
    pub(super) fn upload_scalars(&mut self, stream: &Arc<CudaStream>, s: &UpdateScalars) -> Result<(), RuntimeError> {
        let bytes: Vec<u8> = s.to_array().iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut dst = self.scal.bytes.slice_mut(0..bytes.len());
        stream.memcpy_htod(&bytes[..], &mut dst).map_err(|e| err("update scalars", e))
    }
}

impl CudaSession {
    /// From now on, graph inputs `first_input..` (the trained `weights`) live on the device with
    /// their optimizer `slots` (`rule.slots()` blocks of each weight's size), and every
    /// [`CudaSession::run_step`] ends with `rule`'s update from the gradients at outputs
    /// `first_grad..`. `decay`: the optimizer has weight decay.
    #[allow(clippy::too_many_arguments)]
    pub fn enable_update(
        &self,
        rule: &UpdateRule,
        clip: GradClip,
        decay: bool,
        first_input: usize,
        first_grad: usize,
        weights: &[Tensor],
        slots: &[Vec<f32>],
    ) -> Result<(), RuntimeError> {
        let n_in = self.graph().inputs().len();
        let n_out = self.graph().outputs().len();
        if first_input + weights.len() > n_in || first_grad + weights.len() > n_out || slots.len() != weights.len() {
            return Err(RuntimeError::Plan("the device update does not fit the graph's inputs and outputs".into()));
        }
        let sizes: Vec<usize> = weights.iter().map(Tensor::len).collect();
        let n_slots = rule.slots();
        let mut wbufs = Vec::with_capacity(weights.len());
        let mut sbufs = Vec::with_capacity(weights.len());
        for (k, (w, sl)) in weights.iter().zip(slots).enumerate() {
            if w.as_f32().is_none() || sl.len() != n_slots * w.len() {
                return Err(RuntimeError::Plan(format!("weight {k} cannot be trained on the device")));
            }
            let wb = tensor_bytes(w);
            let wb = if wb.is_empty() { vec![0u8; 4] } else { wb };
            wbufs.push(DevBuf { bytes: self.stream.clone_htod(&wb[..]).map_err(|e| err("weights", e))? });
            let sb: Vec<u8> = sl.iter().flat_map(|x| x.to_le_bytes()).collect();
            let sb = if sb.is_empty() { vec![0u8; 4] } else { sb };
            sbufs.push(DevBuf { bytes: self.stream.clone_htod(&sb[..]).map_err(|e| err("optimizer slots", e))? });
        }
        let (chunk_of, _) = update_chunks(&sizes);
        let cb: Vec<u8> = chunk_of.iter().flat_map(|c| c.to_le_bytes()).collect();
        let cb = if cb.is_empty() { vec![0u8; 4] } else { cb };
        let chunks = DevBuf { bytes: self.stream.clone_htod(&cb[..]).map_err(|e| err("update chunks", e))? };
        let n_chunks = u32::try_from(chunk_of.len()).map_err(|_| RuntimeError::Plan("too many weights".into()))?;
        let partial = self.alloc(4 * chunk_of.len())?;
        let scal = self.alloc(4 * ir::UPDATE_SCALARS)?;
        let k = update_kernels(rule, clip, decay);
        let cache = PtxCache { dir: self.options.cache_dir.clone() };
        let load = |name: &str, source: &str| -> Result<CudaFunction, RuntimeError> {
            let ptx = cache.get(name, source, self.arch, &self.options.nvrtc_dirs)?;
            let module = self
                .ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                .map_err(|e| err(&format!("cannot load kernel {name}"), e))?;
            module.load_function(name).map_err(|e| err(&format!("no entry {name}"), e))
        };
        let sumsq = k.sumsq.as_ref().map(|s| load(&s.name, &s.source)).transpose()?;
        let update = load(&k.update.name, &k.update.source)?;
        let mut state = self.state.lock().map_err(|_| RuntimeError::Plan("state lock poisoned".into()))?;
        let mut upd = self.update.lock().map_err(|_| RuntimeError::Plan("update lock poisoned".into()))?;
        // Every plan is made again, with the weights' buffers and the update's launches.
        *state = None;
        *upd = Some(DeviceUpdate {
            first_input,
            first_grad,
            sizes,
            n_slots,
            weights: wbufs,
            slots: sbufs,
            scal,
            chunks,
            n_chunks,
            partial,
            sumsq,
            update,
        });
        Ok(())
    }

    /// One training step: the graph on `inputs` (the resident weights' entries are not read),
    /// then the update with `scalars`. The outputs in order, without the gradients.
    pub fn run_step(&self, inputs: &[&Tensor], scalars: &UpdateScalars) -> Result<Vec<Tensor>, RuntimeError> {
        self.execute(inputs, Some(scalars)).map(|(o, _)| o)
    }

    /// The weights and the optimizer slots as the device has them (`None` before
    /// [`CudaSession::enable_update`]).
    pub fn read_update(&self) -> Result<Option<(Vec<Vec<f32>>, Vec<Vec<f32>>)>, RuntimeError> {
        let upd = self.update.lock().map_err(|_| RuntimeError::Plan("update lock poisoned".into()))?;
        let Some(u) = upd.as_ref() else { return Ok(None) };
        let mut weights = Vec::with_capacity(u.sizes.len());
        let mut slots = Vec::with_capacity(u.sizes.len());
        for ((w, s), &n) in u.weights.iter().zip(&u.slots).zip(&u.sizes) {
            let wb = self.stream.clone_dtoh(&w.bytes).map_err(|e| err("weights download", e))?;
            let sb = self.stream.clone_dtoh(&s.bytes).map_err(|e| err("slots download", e))?;
            let mut wv = floats(&wb);
            wv.truncate(n);
            let mut sv = floats(&sb);
            sv.truncate(n * u.n_slots);
            weights.push(wv);
            slots.push(sv);
        }
        self.stream.synchronize().map_err(|e| err("download", e))?;
        Ok(Some((weights, slots)))
    }
}

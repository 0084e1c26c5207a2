//! The optimizer update on the device: a training step's weights and optimizer slots are
//! uploaded once and stay on the GPU; after the step's kernels, the update kernels
//! (`codegen::cuda::optim`) read the gradients where the step wrote them and update the weights
//! and slots in place, in the same CUDA graph. Per step only the batch goes up (and eight
//! scalars: the learning rate and the rule's constants), and only the loss, the predictions and
//! the batch statistics come down. The weights come back when asked ([`CudaSession::read_update`]).

use super::buffers::{err, tensor_bytes, DevBuf, Launch};
use crate::RuntimeError;
use codegen::cuda::optim::{update_chunks, update_kernels, PARAM_WORDS, UPDATE_THREADS};
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig};
use ir::{DType, GradClip, Graph, Tensor, UpdateRule, UpdateScalars, ValueId};
use std::sync::Arc;

/// Each trained weight's values and its optimizer slots (`rule.slots()` blocks of its size), as
/// a device that trains them has them.
pub type TrainedState = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// The device side of an optimizer: what stays on the GPU between steps.
pub(super) struct DeviceUpdate {
    /// The graph input of the first trained weight; the others follow it.
    first_input: usize,
    /// The graph output of the first gradient (in weight order).
    first_grad: usize,
    /// Each weight's element count.
    sizes: Vec<usize>,
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
        g: &Graph,
        stream: &Arc<CudaStream>,
        grads: &[ValueId],
        loss: ValueId,
        address: &dyn Fn(ValueId) -> Result<u64, RuntimeError>,
    ) -> Result<(DevBuf, Vec<Launch>), RuntimeError> {
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
                self.weights[k].ptr(stream),
                address(gv)?,
                self.slots[k].ptr(stream),
                n as u64,
                first as u64,
                count as u64,
            ]);
        }
        let bytes: Vec<u8> = table.iter().flat_map(|w| w.to_le_bytes()).collect();
        let params = DevBuf { bytes: stream.clone_htod(&bytes[..]).map_err(|e| err("update table", e))? };
        let args = vec![
            params.ptr(stream),
            self.chunks.ptr(stream),
            self.scal.ptr(stream),
            self.partial.ptr(stream),
            address(loss)?,
        ];
        let cfg =
            LaunchConfig { grid_dim: (self.n_chunks, 1, 1), block_dim: (UPDATE_THREADS, 1, 1), shared_mem_bytes: 0 };
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

/// Uploads a buffer (at least 4 bytes: the driver allocates nothing for none).
fn upload(stream: &Arc<CudaStream>, bytes: Vec<u8>, what: &str) -> Result<DevBuf, RuntimeError> {
    let bytes = if bytes.is_empty() { vec![0u8; 4] } else { bytes };
    Ok(DevBuf { bytes: stream.clone_htod(&bytes[..]).map_err(|e| err(what, e))? })
}

impl DeviceUpdate {
    /// Uploads the trained `weights` (graph inputs `first_input..`) and their optimizer `slots`
    /// (`rule.slots()` blocks of each weight's size) and loads `rule`'s kernels with `load`
    /// (entry point, source); the gradients are graph outputs `first_grad..`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        stream: &Arc<CudaStream>,
        load: &dyn Fn(&str, &str) -> Result<CudaFunction, RuntimeError>,
        rule: &UpdateRule,
        clip: GradClip,
        decay: bool,
        (first_input, first_grad): (usize, usize),
        weights: &[Tensor],
        slots: &[Vec<f32>],
    ) -> Result<DeviceUpdate, RuntimeError> {
        if slots.len() != weights.len() {
            return Err(RuntimeError::Plan(format!("{} weights but {} slot sets", weights.len(), slots.len())));
        }
        let sizes: Vec<usize> = weights.iter().map(Tensor::len).collect();
        let n_slots = rule.slots();
        let mut wbufs = Vec::with_capacity(weights.len());
        let mut sbufs = Vec::with_capacity(weights.len());
        for (k, (w, sl)) in weights.iter().zip(slots).enumerate() {
            if w.as_f32().is_none() || sl.len() != n_slots * w.len() {
                return Err(RuntimeError::Plan(format!("weight {k} cannot be trained on the device")));
            }
            wbufs.push(upload(stream, tensor_bytes(w), "weights")?);
            sbufs.push(upload(stream, sl.iter().flat_map(|x| x.to_le_bytes()).collect(), "optimizer slots")?);
        }
        let (chunk_of, _) = update_chunks(&sizes);
        let chunks = upload(stream, chunk_of.iter().flat_map(|c| c.to_le_bytes()).collect(), "update chunks")?;
        let n_chunks = u32::try_from(chunk_of.len()).map_err(|_| RuntimeError::Plan("too many weights".into()))?;
        let partial = upload(stream, vec![0u8; 4 * chunk_of.len()], "update sums")?;
        let scal = upload(stream, vec![0u8; 4 * ir::UPDATE_SCALARS], "update scalars")?;
        let k = update_kernels(rule, clip, decay);
        let sumsq = k.sumsq.as_ref().map(|s| load(&s.name, &s.source)).transpose()?;
        let update = load(&k.update.name, &k.update.source)?;
        Ok(DeviceUpdate {
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
        })
    }

    /// The graph outputs that are the gradients.
    pub(super) fn grad_outputs(&self) -> std::ops::Range<usize> {
        self.first_grad..self.first_grad + self.sizes.len()
    }

    /// The weights and the slots as the device has them.
    pub(super) fn read(&self, stream: &Arc<CudaStream>) -> Result<TrainedState, RuntimeError> {
        let mut weights = Vec::with_capacity(self.sizes.len());
        let mut slots = Vec::with_capacity(self.sizes.len());
        for ((w, s), &n) in self.weights.iter().zip(&self.slots).zip(&self.sizes) {
            let wb = stream.clone_dtoh(&w.bytes).map_err(|e| err("weights download", e))?;
            let sb = stream.clone_dtoh(&s.bytes).map_err(|e| err("slots download", e))?;
            let mut wv = floats(&wb);
            wv.truncate(n);
            let mut sv = floats(&sb);
            sv.truncate(n * self.n_slots);
            weights.push(wv);
            slots.push(sv);
        }
        stream.synchronize().map_err(|e| err("download", e))?;
        Ok((weights, slots))
    }
}

//! How a model file is loaded.

/// Options of [`load`](crate::load).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The shapes of the inputs the model will run on (model input order): an ONNX model's
    /// symbolic dimensions other than the batch (a sequence length) take their sizes from
    /// them.
    pub input_shapes: Option<Vec<Vec<usize>>>,
    /// Inputs bound to values (model input order; `None`: a graph input as usual): an ONNX
    /// input whose values decide shapes or attributes (a [`Need`](crate::Need) with `values`) becomes a
    /// constant of the graph, which no longer takes it as an input.
    pub input_values: Vec<Option<ir::Tensor>>,
}

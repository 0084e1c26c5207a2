//! What a frontend produces: the model's graph and what `inspect` shows about it.

use ir::Shape;
use serde_json::Value;

/// A loaded model: its graph and what `inspect` shows.
#[derive(Debug, Clone)]
pub struct Model {
    pub graph: ir::Graph,
    pub info: ModelInfo,
    /// For each weight constant stored unchanged in the file: the HDF5 dataset it came from
    /// (in the `.h5` file, or in a `.keras` archive's `model.weights.h5`).
    pub weight_sources: std::collections::HashMap<ir::ValueId, String>,
    /// The file's weight datasets in Keras's `model.weights` order (layers in config order, each
    /// layer's weights in its own order): the order of Keras's `trainable_variables`, which the
    /// optimizer's slot variables follow. Empty for ONNX.
    pub weight_order: Vec<String>,
    /// Per graph input, how it is made from the model's inputs (the arrays a user passes):
    /// one as it is, or through a layer that runs on the host (`crate::text`). Empty: each
    /// graph input is the model input of its index.
    pub host_inputs: Vec<crate::text::HostInput>,
    /// The model's inputs as Keras lists them (`model.inputs`); empty: the graph's.
    pub model_inputs: Vec<String>,
}

/// The file format a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// Keras 3 `model.save("x.h5")`.
    Keras3H5,
    /// Keras 2 / tf.keras `model.save("x.h5")`.
    Keras2H5,
    /// Keras 3 `model.save("x.keras")`.
    KerasArchive,
    /// An ONNX model.
    Onnx,
}

impl ModelFormat {
    /// A human-readable description.
    pub fn describe(self) -> &'static str {
        match self {
            ModelFormat::Keras3H5 => "Keras 3 legacy HDF5 (.h5)",
            ModelFormat::Keras2H5 => "Keras 2 legacy HDF5 (.h5)",
            ModelFormat::KerasArchive => "Keras 3 archive (.keras)",
            ModelFormat::Onnx => "ONNX (.onnx)",
        }
    }
}

/// One row of the layer summary, as Keras's `model.summary()` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSummary {
    pub name: String,
    pub class: String,
    /// Output shapes of the layer's first call, Keras-formatted (`(None, 16, 16, 8)`).
    pub output_shapes: Vec<String>,
    pub params: usize,
    pub trainable_params: usize,
    /// Layers whose outputs this layer reads (first call).
    pub connected_to: Vec<String>,
}

/// What `inspect` shows about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub model_class: String,
    pub format: ModelFormat,
    pub keras_version: String,
    pub backend: Option<String>,
    pub layers: Vec<LayerSummary>,
    pub total_params: usize,
    pub trainable_params: usize,
    pub training_config: Option<Value>,
    pub input_names: Vec<String>,
    /// Each top-level layer's config, by layer name (what training needs: rates, momentum).
    pub layer_configs: std::collections::BTreeMap<String, (String, Value)>,
    pub output_names: Vec<String>,
}

impl ModelInfo {
    /// Parameters that training does not update.
    pub fn non_trainable_params(&self) -> usize {
        self.total_params - self.trainable_params
    }
}

/// Keras's shape string: `(None, 16, 16, 8)`.
pub(crate) fn keras_shape(s: &Shape) -> String {
    s.to_string()
}

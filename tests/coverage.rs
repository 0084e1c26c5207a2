//! How much of `keras.layers` kerasc loads: every public layer class of Keras 3.15's
//! `keras.layers`, against kerasc's layer table. The README's list ("Keras layers" section,
//! between the `keras-layers` markers) must say exactly this, so it cannot drift.

use kerasc::frontend::keras::layers::is_layer_class;

/// The public `keras.layers` classes of Keras 3.15 (`dir(keras.layers)`, Layer subclasses).
const KERAS_LAYERS: &str = "Activation ActivityRegularization AdaptiveAveragePooling1D AdaptiveAveragePooling2D \
AdaptiveAveragePooling3D AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D Add AdditiveAttention \
AlphaDropout Attention AugMix AutoContrast Average AveragePooling1D AveragePooling2D AveragePooling3D AvgPool1D \
AvgPool2D AvgPool3D BatchNormalization Bidirectional CategoryEncoding CenterCrop Concatenate \
ContrastLimitedAdaptiveHistogramEqualization Conv1D Conv1DTranspose Conv2D Conv2DTranspose Conv3D Conv3DTranspose \
ConvLSTM1D ConvLSTM2D ConvLSTM3D Convolution1D Convolution1DTranspose Convolution2D Convolution2DTranspose \
Convolution3D Convolution3DTranspose Cropping1D Cropping2D Cropping3D CutMix Dense DepthwiseConv1D DepthwiseConv2D \
Discretization Dot Dropout ELU EinsumDense Embedding Equalization Flatten FlaxLayer GRU GRUCell GaussianDropout \
GaussianNoise GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D GlobalAvgPool1D GlobalAvgPool2D \
GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D GlobalMaxPooling1D GlobalMaxPooling2D \
GlobalMaxPooling3D GroupNormalization GroupQueryAttention HashedCrossing Hashing Identity InputLayer IntegerLookup \
JaxLayer LSTM LSTMCell Lambda Layer LayerNormalization LeakyReLU Masking MaxNumBoundingBoxes MaxPool1D MaxPool2D \
MaxPool3D MaxPooling1D MaxPooling2D MaxPooling3D Maximum MelSpectrogram Minimum MixUp MultiHeadAttention Multiply \
Normalization PReLU Permute Pipeline RMSNormalization RNN RandAugment RandomBrightness RandomColorDegeneration \
RandomColorJitter RandomContrast RandomCrop RandomElasticTransform RandomErasing RandomFlip RandomGaussianBlur \
RandomGrayscale RandomHue RandomInvert RandomPerspective RandomPosterization RandomRotation RandomSaturation \
RandomSharpness RandomShear RandomTranslation RandomZoom ReLU RepeatVector Rescaling Reshape Resizing \
ReversibleEmbedding STFTSpectrogram SeparableConv1D SeparableConv2D SeparableConvolution1D SeparableConvolution2D \
SimpleRNN SimpleRNNCell Softmax Solarization SpatialDropout1D SpatialDropout2D SpatialDropout3D SpectralNormalization \
StackedRNNCells StringLookup Subtract TFSMLayer TextVectorization TimeDistributed TorchModuleWrapper UnitNormalization \
UpSampling1D UpSampling2D UpSampling3D Wrapper ZeroPadding1D ZeroPadding2D ZeroPadding3D";

/// Classes that are no layer of a saved model on their own: the model's input, base classes,
/// and cells (saved inside an RNN, which kerasc loads).
const NOT_A_SAVED_LAYER: &[&str] =
    &["InputLayer", "Layer", "Wrapper", "LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells"];

fn readme_list(which: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- keras-layers -->").expect("README: no <!-- keras-layers --> marker");
    let end = readme.find("<!-- /keras-layers -->").expect("README: no <!-- /keras-layers --> marker");
    let section = &readme[start..end];
    let line = section
        .lines()
        .find(|l| l.starts_with(&format!("**{which}")))
        .unwrap_or_else(|| panic!("README keras-layers section: no line starting with **{which}"));
    let list = line.split_once(":**").map(|(_, r)| r).unwrap_or("");
    list.split(',')
        .map(|s| s.split_whitespace().next().unwrap_or("").trim_matches('`').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn the_readme_lists_which_keras_layers_load() {
    let all: Vec<&str> = KERAS_LAYERS.split_whitespace().collect();
    assert_eq!(all.len(), 163);
    let considered: Vec<&str> = all.iter().copied().filter(|c| !NOT_A_SAVED_LAYER.contains(c)).collect();
    let loads: Vec<String> = considered.iter().filter(|c| is_layer_class(c)).map(|c| c.to_string()).collect();
    let refused: Vec<String> = considered.iter().filter(|c| !is_layer_class(c)).map(|c| c.to_string()).collect();
    let (readme_loads, readme_refused) = (readme_list("Loads"), readme_list("Not yet"));
    let pct = 100.0 * loads.len() as f64 / considered.len() as f64;
    assert!(
        readme_loads == loads && readme_refused == refused,
        "README's keras-layers lists are out of date; they should read:\n**Loads ({} of {}, {pct:.0} %):** {}\n**Not yet ({}):** {}",
        loads.len(),
        considered.len(),
        loads.join(", "),
        refused.len(),
        refused.join(", ")
    );
}

//! Text at the model's door: a Keras TextVectorization or StringLookup layer that reads a string
//! input directly runs on the host, before the graph, turning the strings into the integer ids
//! its output holds (the graph has no strings). Keras's own steps: standardize (lowercase, strip
//! ASCII punctuation), split (on whitespace or into characters), look each token up in the
//! vocabulary (index 0 the mask token, then the OOV index, then the vocabulary), pad or truncate
//! to `output_sequence_length`.

use crate::farmhash::{fingerprint64, fingerprint_cat64};
use ir::{DType, Dim, Shape, Tensor, TensorData, TensorType};
use serde_json::Value;
use std::collections::HashMap;

/// Keras's default `standardize`: strip these (after lowercasing).
const PUNCTUATION: &str = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'";

/// The most distinct vocabulary entries kept.
const MAX_VOCABULARY: usize = 1 << 22;

#[derive(Debug, Clone, PartialEq)]
enum Standardize {
    None,
    Lower,
    StripPunctuation,
    LowerAndStripPunctuation,
}

#[derive(Debug, Clone, PartialEq)]
enum Split {
    None,
    Whitespace,
    Character,
}

/// One string input's host preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct TextInput {
    /// The Keras layer it runs (`TextVectorization 'tv'`), for messages.
    pub layer: String,
    standardize: Standardize,
    split: Split,
    /// Token → index.
    index: HashMap<String, i64>,
    /// The index of a token outside the vocabulary.
    oov: i64,
    /// TextVectorization: tokens per row (padded with 0, truncated); StringLookup: `None`.
    pub sequence_length: Option<usize>,
}

impl TextInput {
    /// Reads a TextVectorization or StringLookup config; `assets` is the vocabulary a `.keras`
    /// archive keeps beside the config (one token per line) when the config has none.
    pub fn from_layer(class: &str, name: &str, c: &Value, assets: Option<&str>) -> Result<TextInput, String> {
        let layer = format!("{class} '{name}'");
        let err = |m: &str| format!("{layer}: {m}");
        let mode = c.get("output_mode").and_then(Value::as_str).unwrap_or("int");
        if mode != "int" {
            return Err(err(&format!("output_mode '{mode}' is not supported (int is)")));
        }
        if c.get("invert").and_then(Value::as_bool) == Some(true)
            || c.get("ragged").and_then(Value::as_bool) == Some(true)
        {
            return Err(err("inverted or ragged outputs are not supported"));
        }
        let tv = class == "TextVectorization";
        let vocab: Vec<String> = match c.get("vocabulary") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<_>>().ok_or_else(|| err("the vocabulary is not a list of strings"))?,
            _ => match assets {
                Some(text) => text.split('\n').map(str::to_string).collect(),
                None => return Err(err("no vocabulary: neither in the config nor in the archive's assets (a legacy .h5 does not keep an adapted one)")),
            },
        };
        let (mask, oov_token, n_oov) = if tv {
            (Some(String::new()), "[UNK]".to_string(), 1)
        } else {
            (
                c.get("mask_token").and_then(Value::as_str).map(str::to_string),
                c.get("oov_token").and_then(Value::as_str).unwrap_or("[UNK]").to_string(),
                c.get("num_oov_indices").and_then(Value::as_u64).unwrap_or(1),
            )
        };
        if n_oov != 1 {
            return Err(err(&format!("{n_oov} OOV indices (hashing tokens into buckets) are not supported")));
        }
        // A vocabulary as Keras lists it starts with the mask and OOV tokens; they are not tokens.
        let mut tokens: &[String] = &vocab;
        if let Some(m) = &mask {
            if tokens.first() == Some(m) {
                tokens = &tokens[1..];
            }
        }
        if tokens.first() == Some(&oov_token) {
            tokens = &tokens[1..];
        }
        if tokens.len() > MAX_VOCABULARY {
            return Err(err(&format!("a vocabulary of {} tokens (at most {MAX_VOCABULARY})", tokens.len())));
        }
        let first = i64::from(mask.is_some()) + 1;
        let mut index: HashMap<String, i64> = HashMap::with_capacity(tokens.len() + 1);
        for (k, t) in tokens.iter().enumerate() {
            index.entry(t.clone()).or_insert(first + k as i64);
        }
        if let Some(m) = mask {
            index.insert(m, 0);
        }
        let pick = |key: &str, default: &str| c.get(key).and_then(Value::as_str).unwrap_or(default).to_string();
        let standardize = match (tv, pick("standardize", "lower_and_strip_punctuation").as_str()) {
            (false, _) => Standardize::None,
            (true, "lower_and_strip_punctuation") => Standardize::LowerAndStripPunctuation,
            (true, "lower") => Standardize::Lower,
            (true, "strip_punctuation") => Standardize::StripPunctuation,
            (true, _) if c.get("standardize").is_some_and(Value::is_null) => Standardize::None,
            (true, other) => return Err(err(&format!("standardize '{other}' is not supported"))),
        };
        let split = match (tv, pick("split", "whitespace").as_str()) {
            (false, _) => Split::None,
            (true, "whitespace") => Split::Whitespace,
            (true, "character") => Split::Character,
            (true, _) if c.get("split").is_some_and(Value::is_null) => Split::None,
            (true, other) => return Err(err(&format!("split '{other}' is not supported"))),
        };
        if tv && c.get("ngrams").is_some_and(|v| !v.is_null()) {
            return Err(err("ngrams are not supported"));
        }
        let sequence_length = if tv {
            let n = c.get("output_sequence_length").and_then(Value::as_u64).filter(|&n| n > 0 && n <= 1 << 20);
            Some(n.ok_or_else(|| {
                err("needs output_sequence_length (1 to 2^20): without it the length depends on the batch")
            })? as usize)
        } else {
            None
        };
        Ok(TextInput { layer, standardize, split, index, oov: first - 1, sequence_length })
    }

    /// The graph input it makes of a string input of type `strings`: int64 ids,
    /// `(batch, output_sequence_length)` for TextVectorization, the strings' shape for
    /// StringLookup.
    pub fn graph_type(&self, strings: &TensorType) -> TensorType {
        let shape = match self.sequence_length {
            Some(l) => Shape(vec![Dim::Batch, Dim::Fixed(l)]),
            None => strings.shape.clone(),
        };
        TensorType::new(DType::I64, shape)
    }

    fn standardized(&self, s: &str) -> String {
        // TensorFlow's `strings.lower`, as Keras calls it, lowercases ASCII letters only.
        let lower = || s.to_ascii_lowercase();
        match self.standardize {
            Standardize::None => s.to_string(),
            Standardize::Lower => lower(),
            Standardize::StripPunctuation => s.chars().filter(|c| !PUNCTUATION.contains(*c)).collect(),
            Standardize::LowerAndStripPunctuation => lower().chars().filter(|c| !PUNCTUATION.contains(*c)).collect(),
        }
    }

    fn lookup(&self, token: &str) -> i64 {
        self.index.get(token).copied().unwrap_or(self.oov)
    }

    /// The int64 ids of a string array of `shape` (row-major `strings`).
    pub fn apply(&self, shape: &[usize], strings: &[String]) -> Result<Tensor, String> {
        let bad = |m: String| format!("{}: {m}", self.layer);
        match self.sequence_length {
            None => {
                let ids = strings.iter().map(|s| self.lookup(s)).collect();
                Tensor::new(shape.to_vec(), TensorData::I64(ids)).map_err(|e| bad(e.to_string()))
            }
            Some(l) => {
                let rows = shape.first().copied().unwrap_or(1);
                if shape.len() > 2 || shape.get(1).is_some_and(|&d| d != 1) || strings.len() != rows {
                    return Err(bad(format!(
                        "expects one string per row, (batch,) or (batch, 1); got shape {shape:?}"
                    )));
                }
                let mut ids = vec![0i64; rows * l];
                for (r, s) in strings.iter().enumerate() {
                    let text = self.standardized(s);
                    let tokens: Vec<String> = match self.split {
                        Split::None => vec![text],
                        Split::Whitespace => text
                            .split(|c: char| c.is_ascii_whitespace())
                            .filter(|t| !t.is_empty())
                            .map(str::to_string)
                            .collect(),
                        Split::Character => text.chars().map(|c| c.to_string()).collect(),
                    };
                    for (k, t) in tokens.iter().take(l).enumerate() {
                        ids[r * l + k] = self.lookup(t);
                    }
                }
                Tensor::new(vec![rows, l], TensorData::I64(ids)).map_err(|e| bad(e.to_string()))
            }
        }
    }
}

/// One feature column for a hashing layer: integers, or strings (row-major).
#[derive(Debug, Clone, Copy)]
pub enum Feature<'a> {
    Ints(&'a Tensor),
    Strings(&'a [usize], &'a [String]),
}

impl Feature<'_> {
    fn shape(&self) -> Vec<usize> {
        match self {
            Feature::Ints(t) => t.shape().to_vec(),
            Feature::Strings(s, _) => s.to_vec(),
        }
    }

    /// Each value as TensorFlow's crossing hashes it: an integer as itself, a string by its
    /// fingerprint.
    fn cross_hashes(&self) -> Result<Vec<u64>, String> {
        match self {
            Feature::Ints(t) if !t.dtype().is_float() => Ok(t.to_i64_vec().into_iter().map(|v| v as u64).collect()),
            Feature::Ints(t) => Err(format!("takes integer or string features, not {}", t.dtype())),
            Feature::Strings(_, v) => Ok(v.iter().map(|s| fingerprint64(s.as_bytes())).collect()),
        }
    }

    /// Each value as a string (TensorFlow's `as_string` of an integer).
    fn strings(&self) -> Result<Vec<String>, String> {
        match self {
            Feature::Ints(t) if !t.dtype().is_float() => Ok(t.to_i64_vec().iter().map(i64::to_string).collect()),
            Feature::Ints(t) => Err(format!("takes integer or string features, not {}", t.dtype())),
            Feature::Strings(_, v) => Ok(v.to_vec()),
        }
    }
}

/// HashedCrossing over model inputs it reads directly, on the host (its 64-bit hashes have no
/// float form): TensorFlow's `sparse.cross_hashed` — from the key 0xDECAFCAFFE, each feature
/// (an integer as itself, a string by its FarmHash fingerprint) folded in by
/// `FingerprintCat64`, the result modulo `num_bins`.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// The Keras layer's name.
    pub name: String,
    /// The layer as messages name it (`HashedCrossing 'cross'`).
    pub layer: String,
    bins: Bins,
}

impl Crossing {
    pub fn from_layer(name: &str, c: &Value) -> Result<Crossing, String> {
        let layer = format!("HashedCrossing '{name}'");
        let bins = Bins::from_config(&layer, c)?;
        Ok(Crossing { name: name.to_string(), layer, bins })
    }

    /// The graph input it makes: `(batch, 1)` int64 bins, or `(batch, num_bins)` one-hot.
    pub fn graph_type(&self) -> TensorType {
        self.bins.graph_type(Shape(vec![Dim::Batch, Dim::Fixed(1)]))
    }

    /// The bins of each row's crossed features (one value per row each).
    pub fn apply(&self, features: &[Feature]) -> Result<Tensor, String> {
        let bad = |m: String| format!("{}: {m}", self.layer);
        let rows = features.first().map_or(0, |f| f.shape().first().copied().unwrap_or(1));
        let mut values = Vec::with_capacity(features.len());
        for f in features {
            let shape = f.shape();
            let h = f.cross_hashes().map_err(bad)?;
            if h.len() != rows || shape.iter().skip(1).any(|&d| d != 1) {
                return Err(bad(format!("crosses features of one value per row; got shape {shape:?}")));
            }
            values.push(h);
        }
        let bins: Vec<i64> = (0..rows)
            .map(|r| {
                let h = values.iter().fold(0x00DE_CAFC_AFFE_u64, |h, v| fingerprint_cat64(h, v[r]));
                (h % self.bins.count) as i64
            })
            .collect();
        self.bins.tensor(&self.layer, bins, vec![rows, 1])
    }
}

/// What a hashing layer outputs: `count` bins (1 to 2^24), as int64 indices or one-hot rows.
#[derive(Debug, Clone, PartialEq)]
struct Bins {
    count: u64,
    one_hot: bool,
}

impl Bins {
    /// A layer's `num_bins` and `output_mode` (int or one_hot; not sparse).
    fn from_config(layer: &str, c: &Value) -> Result<Bins, String> {
        let count = c.get("num_bins").and_then(Value::as_u64).filter(|&n| n > 0 && n <= 1 << 24);
        let count = count.ok_or_else(|| format!("{layer}: num_bins must be 1 to 2^24"))?;
        let one_hot = match c.get("output_mode").and_then(Value::as_str).unwrap_or("int") {
            "int" => false,
            "one_hot" => true,
            other => return Err(format!("{layer}: output_mode '{other}' is not supported")),
        };
        if c.get("sparse").and_then(Value::as_bool) == Some(true) {
            return Err(format!("{layer}: sparse outputs are not supported"));
        }
        Ok(Bins { count, one_hot })
    }

    /// The graph input of int bins of `int_shape`, or `(batch, count)` one-hot rows.
    fn graph_type(&self, int_shape: Shape) -> TensorType {
        if self.one_hot {
            return TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(self.count as usize)]));
        }
        TensorType::new(DType::I64, int_shape)
    }

    /// `bins` (each below `count`) as int64 of `shape`, or as one-hot rows.
    fn tensor(&self, layer: &str, bins: Vec<i64>, shape: Vec<usize>) -> Result<Tensor, String> {
        let bad = |m: String| format!("{layer}: {m}");
        if self.one_hot {
            let n = self.count as usize;
            let mut hot = vec![0f32; bins.len() * n];
            for (r, &b) in bins.iter().enumerate() {
                hot[r * n + b as usize] = 1.0;
            }
            return Tensor::new(vec![bins.len(), n], TensorData::F32(hot)).map_err(|e| bad(e.to_string()));
        }
        Tensor::new(shape, TensorData::I64(bins)).map_err(|e| bad(e.to_string()))
    }
}

/// The Hashing layer on a model input it reads directly, on the host: TensorFlow's
/// `to_hash_bucket_fast` — the FarmHash fingerprint of each value (an integer as its decimal
/// string) modulo `num_bins`; with a `mask_value`, that value is bin 0 and the others share the
/// remaining bins.
#[derive(Debug, Clone, PartialEq)]
pub struct Hashing {
    /// The Keras layer it runs, for messages.
    pub layer: String,
    bins: Bins,
    mask: Option<String>,
}

impl Hashing {
    pub fn from_layer(name: &str, c: &Value) -> Result<Hashing, String> {
        let layer = format!("Hashing '{name}'");
        let bins = Bins::from_config(&layer, c)?;
        if c.get("salt").is_some_and(|v| !v.is_null()) {
            return Err(format!("{layer}: a salt (SipHash) is not supported"));
        }
        let mask = match c.get("mask_value") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| format!("{layer}: mask_value {v} is neither a string nor an integer"))?
                    .to_string(),
            ),
        };
        if mask.is_some() && bins.count < 2 {
            return Err(format!("{layer}: a mask_value needs at least 2 bins"));
        }
        Ok(Hashing { layer, bins, mask })
    }

    /// The graph input it makes of an input of type `input`: int64 bins of its shape, or
    /// `(batch, num_bins)` one-hot.
    pub fn graph_type(&self, input: &TensorType) -> TensorType {
        self.bins.graph_type(input.shape.clone())
    }

    pub fn apply(&self, feature: Feature) -> Result<Tensor, String> {
        let shape = feature.shape();
        if self.bins.one_hot && shape.iter().skip(1).any(|&d| d != 1) {
            return Err(format!("{}: one_hot takes one value per row; got shape {shape:?}", self.layer));
        }
        let free = self.bins.count - u64::from(self.mask.is_some());
        let bins = feature
            .strings()
            .map_err(|m| format!("{}: {m}", self.layer))?
            .iter()
            .map(|s| match &self.mask {
                Some(m) if m == s => 0,
                Some(_) => (fingerprint64(s.as_bytes()) % free + 1) as i64,
                None => (fingerprint64(s.as_bytes()) % free) as i64,
            })
            .collect();
        self.bins.tensor(&self.layer, bins, shape)
    }
}

/// How one graph input is made from the model's inputs (the arrays a user passes, in Keras's
/// `model.inputs` order).
#[derive(Debug, Clone, PartialEq)]
pub enum HostInput {
    /// Model input `k` as it is.
    Direct(usize),
    /// String model input `k` through its TextVectorization or StringLookup.
    Text(usize, TextInput),
    /// Model inputs crossed by HashedCrossing.
    Cross(Vec<usize>, Crossing),
    /// Model input `k` through its Hashing layer.
    Hash(usize, Hashing),
}

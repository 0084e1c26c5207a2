//! Layers that run on the host, before the graph, because the graph cannot hold what they read
//! (`crate::text`): TextVectorization and StringLookup reading a string model input, and the
//! hashing layers (Hashing, HashedCrossing: 64-bit hashes) over integer or string model inputs.
//! Each must read model inputs directly, and be their only reader.

use super::config::{LayerSpec, ModelSpec};
use crate::text::{Crossing, Hashing, TextInput};
use serde_json::Value;
use std::collections::HashMap;

/// The host layers of a model.
pub(crate) struct HostLayers {
    /// By string input layer name.
    pub text: HashMap<String, TextInput>,
    /// The model input layers each crossing reads (in its argument order), and the crossing.
    pub crossings: Vec<(Vec<String>, Crossing)>,
    /// By input layer name.
    pub hashing: HashMap<String, Hashing>,
}

fn readers<'a>(spec: &'a ModelSpec, input: &str) -> Vec<&'a LayerSpec> {
    if spec.is_sequential() {
        return spec.layers.iter().filter(|l| l.class != "InputLayer").take(1).collect();
    }
    spec.layers.iter().filter(|l| l.calls.iter().any(|c| c.args.iter().any(|r| r.layer == input))).collect()
}

pub(crate) fn find(spec: &ModelSpec, assets: &HashMap<String, String>) -> Result<HostLayers, String> {
    let mut text = HashMap::new();
    let is_string =
        |l: &LayerSpec| l.class == "InputLayer" && l.config.get("dtype").and_then(Value::as_str) == Some("string");
    let mut hashing = HashMap::new();
    for input in spec.layers.iter().filter(|l| l.class == "InputLayer") {
        if let [l] = readers(spec, &input.name)[..] {
            if l.class == "Hashing" {
                hashing.insert(input.name.clone(), Hashing::from_layer(&l.name, &l.config)?);
            }
        }
    }
    for input in spec.layers.iter().filter(|l| is_string(l)) {
        let reader = match readers(spec, &input.name)[..] {
            [l] if matches!(l.class.as_str(), "TextVectorization" | "StringLookup") => l,
            [l] if matches!(l.class.as_str(), "Hashing" | "HashedCrossing") => continue,
            _ => {
                return Err(format!(
                    "string input '{}' must be read by exactly one TextVectorization, StringLookup, Hashing or HashedCrossing layer (which runs on the host; the graph has no strings)",
                    input.name
                ))
            }
        };
        let vocab = assets.get(&format!("assets/layers/{}/vocabulary.txt", reader.archive_key));
        text.insert(
            input.name.clone(),
            TextInput::from_layer(&reader.class, &reader.name, &reader.config, vocab.map(String::as_str))?,
        );
    }
    let mut crossings = Vec::new();
    if !spec.is_sequential() {
        for l in spec.layers.iter().filter(|l| l.class == "HashedCrossing") {
            let [call] = &l.calls[..] else {
                return Err(format!("HashedCrossing '{}' is called more than once", l.name));
            };
            let members: Vec<String> = call.args.iter().map(|r| r.layer.clone()).collect();
            let direct = members.len() >= 2
                && members.iter().all(|m| {
                    spec.inputs.iter().any(|r| &r.layer == m)
                        && !text.contains_key(m)
                        && !hashing.contains_key(m)
                        && readers(spec, m).len() == 1
                });
            if !direct {
                return Err(format!(
                    "HashedCrossing '{}' must cross model inputs it alone reads (it runs on the host: its 64-bit hashes have no float form)",
                    l.name
                ));
            }
            crossings.push((members, Crossing::from_layer(&l.name, &l.config)?));
        }
    }
    Ok(HostLayers { text, crossings, hashing })
}

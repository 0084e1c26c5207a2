//! The mutator the model targets share: half the time libFuzzer's byte-level mutations, half
//! the time the mutation test's meaning-level edits (the JSON config of `.h5` and `.keras`
//! files, the graph of `.onnx` files), so that the fuzzer reaches past the containers' checks.

#[path = "../../tests/mutants/mutate.rs"]
#[allow(dead_code, clippy::all)]
mod mutate;

/// Mutates `data[..size]` in place (within `max_size`) and returns the new size.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    let mut rng = mutate::Rng(u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    if rng.chance(2) {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    let input = &data[..size];
    let edited = if input.starts_with(b"\x89HDF") {
        mutate::h5_config(&mut rng, input)
    } else if input.starts_with(b"PK") {
        mutate::keras_config(&mut rng, input)
    } else {
        mutate::onnx(&mut rng, input)
    };
    match edited {
        Some(e) if e.len() <= max_size => {
            data[..e.len()].copy_from_slice(&e);
            e.len()
        }
        _ => libfuzzer_sys::fuzzer_mutate(data, size, max_size),
    }
}

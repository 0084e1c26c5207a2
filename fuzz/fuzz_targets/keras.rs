//! The keras reader on any bytes: a model or an error, never a panic or a hang.
#![no_main]

mod structure;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kerasc::frontend::keras::load_keras_archive(data, "fuzz.keras");
});

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    structure::mutate(data, size, max_size, seed)
});

//! Load any model bytes; when the model loads, optimize it and run it on a small random input
//! (batch 1, within a memory limit), naive and planned: results or errors, never a panic or a
//! hang.
#![no_main]

mod structure;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(model) = kerasc::load_bytes(data.to_vec(), "fuzz") else { return };
    let Ok(inputs) = kerasc::bench::random_inputs(&model.graph, 1, 7) else { return };
    for naive in [true, false] {
        let options = kerasc::ExecutorOptions {
            device: kerasc::Device::Cpu,
            naive,
            optimize: Default::default(),
            ptx_cache: std::env::temp_dir(),
            precision: Default::default(),
            memory_limit: Some(1 << 30),
        };
        if let Ok((exec, _)) = kerasc::Executor::new(&model.graph, &options) {
            let _ = exec.run(&inputs);
        }
    }
});

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    structure::mutate(data, size, max_size, seed)
});

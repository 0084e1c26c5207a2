//! The `.npy` and `.npz` readers on any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kerasc::npy::parse(data, "fuzz.npy");
    if data.starts_with(b"PK") {
        let _ = kerasc::npy::parse_npz(data.to_vec(), "fuzz.npz");
    }
});

//! Every kernel generated for every dev model compiles with NVRTC 13.0 to PTX for sm_90 (no GPU
//! needed). `scripts/setup-test-deps.sh` installs NVRTC into `target/nvrtc`; without it the test
//! says why it is skipped, unless KERASC_REQUIRE_NVRTC is set (CI), when that is a failure.

mod common;

use common::{models_dir, DEV_MODELS};
use kerasc::runtime::cuda;

#[test]
fn every_dev_model_kernel_compiles_for_sm_90() {
    let dirs = cuda::default_nvrtc_dirs();
    match cuda::nvrtc_version(&dirs) {
        Ok(v) => assert_eq!(v.0, 13, "NVRTC {v:?}: the device machine's driver is CUDA 13.0"),
        Err(why) => {
            assert!(std::env::var_os("KERASC_REQUIRE_NVRTC").is_none(), "NVRTC is required here: {why}");
            eprintln!("skipped: {why} (run scripts/setup-test-deps.sh)");
            return;
        }
    }
    let mut compiled = 0;
    let mut failures = Vec::new();
    for name in DEV_MODELS {
        let model = kerasc::load(&models_dir().join(format!("{name}.keras"))).unwrap();
        let opt = kerasc::optimizer::optimize(&model.graph, &kerasc::OptimizeOptions::default()).unwrap();
        for batch in [1, 64] {
            let plan = kerasc::optimizer::plan(&opt.graph, batch).unwrap();
            let steps = kerasc::codegen::cuda::emit_plan(&opt.graph, &plan).unwrap();
            for k in steps.iter().flat_map(|s| &s.kernels) {
                match cuda::compile_ptx(&k.name, &k.source, "sm_90", &dirs) {
                    Ok(ptx) => {
                        assert!(ptx.contains(&format!(".entry {}", k.name)), "{name}: {} has no entry", k.name);
                        compiled += 1;
                    }
                    Err(e) => failures.push(format!("{name} (batch {batch}): {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{compiled} kernels compiled for sm_90");
    assert!(compiled > 100);
}

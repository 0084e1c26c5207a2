//! NVRTC: loading the library (also from folders not on the loader's path), its version, and
//! compiling CUDA C to PTX for an architecture, with a disk cache.

use crate::RuntimeError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The libraries kept loaded so later lookups by soname find them.
static PRELOADED: OnceLock<Vec<libloading::Library>> = OnceLock::new();

/// Folders where NVRTC 13 is commonly installed: the CUDA toolkit's, and a repo-local wheel
/// (`target/nvrtc`, made by `scripts/setup-test-deps.sh`).
pub fn default_nvrtc_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "/usr/local/cuda/lib64",
        "/usr/local/cuda-13.0/lib64",
        "/usr/local/cuda-13.0/targets/x86_64-linux/lib",
        "/usr/local/cuda/targets/x86_64-linux/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/nvrtc/nvidia/cu13/lib"));
    v
}

/// Makes NVRTC loadable: if it is not on the loader's path, loads `libnvrtc.so.13` from the
/// first of `dirs` that has it (once per process). Returns whether NVRTC is now present.
pub fn preload_nvrtc(dirs: &[PathBuf]) -> bool {
    // SAFETY: probing for a shared library by name has no preconditions.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return true;
    }
    let _ = PRELOADED.get_or_init(|| {
        let mut libs = Vec::new();
        for d in dirs {
            if !d.join("libnvrtc.so.13").exists() {
                continue;
            }
            // NVRTC opens its builtins library by name at compile time: load it first so that
            // lookup finds it already in the process.
            for lib in ["libnvrtc-builtins.so.13.0", "libnvrtc.so.13"] {
                // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
                if let Ok(l) = unsafe { libloading::Library::new(d.join(lib)) } {
                    libs.push(l);
                }
            }
            break;
        }
        libs
    });
    // SAFETY: as above.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC's version, or why it is not available.
pub fn nvrtc_version(dirs: &[PathBuf]) -> Result<(i32, i32), String> {
    if !preload_nvrtc(dirs) {
        return Err("no NVRTC library (libnvrtc.so.13): install the nvidia-cuda-nvrtc==13.0.* wheel or the CUDA 13 toolkit and put its lib folder on LD_LIBRARY_PATH".into());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded (checked above); the pointers are to live locals.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        Ok((major, minor))
    } else {
        Err(format!("nvrtcVersion failed: {r:?}"))
    }
}

/// Compiles one kernel to PTX for `arch` (such as `sm_90`); a compile error carries the
/// kernel's name and NVRTC's log.
pub fn compile_ptx(name: &str, source: &str, arch: &'static str, dirs: &[PathBuf]) -> Result<String, RuntimeError> {
    nvrtc_version(dirs).map_err(|e| RuntimeError::Compile { kernel: name.to_string(), log: e })?;
    if source.contains('\0') {
        return Err(RuntimeError::Compile { kernel: name.to_string(), log: "source contains a NUL byte".into() });
    }
    let opts =
        cudarc::nvrtc::CompileOptions { arch: Some(arch), name: Some(format!("{name}.cu")), ..Default::default() };
    match cudarc::nvrtc::compile_ptx_with_opts(source, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => {
            Err(RuntimeError::Compile { kernel: name.to_string(), log: log.to_string_lossy().into_owned() })
        }
        Err(e) => Err(RuntimeError::Compile { kernel: name.to_string(), log: format!("{e:?}") }),
    }
}

/// A folder of compiled PTX keyed by a hash of the source, the architecture and the options.
#[derive(Debug, Clone)]
pub struct PtxCache {
    pub dir: PathBuf,
}

/// FNV-1a, stable across builds and platforms (the cache outlives the process).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl PtxCache {
    /// The PTX of a kernel, from the cache or compiled (and stored) now.
    pub fn get(&self, name: &str, source: &str, arch: &'static str, dirs: &[PathBuf]) -> Result<String, RuntimeError> {
        let key = fnv1a(&[source.as_bytes(), arch.as_bytes(), b"default"]);
        let path = self.dir.join(format!("{key:016x}.ptx"));
        if let Ok(p) = std::fs::read_to_string(&path) {
            return Ok(p);
        }
        let ptx = compile_ptx(name, source, arch, dirs)?;
        if std::fs::create_dir_all(&self.dir).is_ok() {
            // A cache write that fails only costs a recompile next time.
            let tmp = self.dir.join(format!(".{key:016x}.{}.tmp", std::process::id()));
            if std::fs::write(&tmp, &ptx).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok(ptx)
    }
}

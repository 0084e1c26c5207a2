//! A CPU emulator for the generated CUDA: the kernels are compiled as C++ with a small shim
//! (one block at a time, its threads as OS threads meeting at a barrier for `__syncthreads`,
//! `__shared__` arrays as function statics), then run on host buffers. It checks the kernels'
//! arithmetic and indexing without a GPU; it says nothing of their speed.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use codegen::cuda::{KernelSource, StepKernels};
use ir::{DType, Graph, Producer, Tensor, TensorData, ValueId};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const SHIM: &str = r#"
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
struct kc_dim3 { unsigned x, y, z; };
static kc_dim3 gridDim, blockDim;
static thread_local kc_dim3 threadIdx, blockIdx;
static std::barrier<>* kc_barrier;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(n)
#define __shared__ static
inline void __syncthreads() { kc_barrier->arrive_and_wait(); }
inline float __int_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
template <class F> void kc_launch(kc_dim3 g, kc_dim3 b, F f) {
  gridDim = g; blockDim = b;
  const unsigned n = b.x * b.y * b.z;
  for (unsigned bz = 0; bz < g.z; ++bz) for (unsigned by = 0; by < g.y; ++by) for (unsigned bx = 0; bx < g.x; ++bx) {
    std::barrier<> bar(n);
    kc_barrier = &bar;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < n; ++t) ts.emplace_back([=] {
      threadIdx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
      blockIdx = {bx, by, bz};
      f();
    });
    for (auto& t : ts) t.join();
  }
}
static std::vector<char> kc_read(const char* p) {
  FILE* f = std::fopen(p, "rb"); if (!f) { std::perror(p); std::exit(2); }
  std::fseek(f, 0, SEEK_END); long n = std::ftell(f); std::fseek(f, 0, SEEK_SET);
  std::vector<char> v(n); if (n && std::fread(v.data(), 1, n, f) != (size_t)n) std::exit(3); std::fclose(f); return v;
}
"#;

fn ctype(d: DType) -> &'static str {
    codegen::cuda::ctype(d)
}

fn bytes_of(t: &Tensor) -> Vec<u8> {
    match t.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::F16(v) | TensorData::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn tensor_of(d: DType, shape: &[usize], b: &[u8]) -> Tensor {
    let data = match d {
        DType::F32 => TensorData::F32(b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        DType::I32 => TensorData::I32(b.chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()),
        DType::I64 => TensorData::I64(b.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
        DType::Bool => TensorData::Bool(b.iter().map(|&x| x != 0).collect()),
        DType::U8 => TensorData::U8(b.to_vec()),
        DType::F16 => TensorData::F16(b.chunks(2).map(|c| u16::from_le_bytes(c.try_into().unwrap())).collect()),
        DType::BF16 => TensorData::BF16(b.chunks(2).map(|c| u16::from_le_bytes(c.try_into().unwrap())).collect()),
    };
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// Runs the emitted steps of `g` on `inputs` through the emulator and returns the outputs.
pub fn run(g: &Graph, steps: &[StepKernels], shapes: &[Vec<usize>], inputs: &[Tensor], tag: &str) -> Vec<Tensor> {
    let dir = std::env::temp_dir().join(format!("kerasc-emu-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Every value gets a buffer; a reshape without a kernel shares its input's.
    let mut buffer_of: HashMap<ValueId, ValueId> = HashMap::new();
    for s in steps {
        let node = &g.nodes()[s.node.0];
        if s.kernels.is_empty() {
            let root = *buffer_of.get(&node.inputs[0]).unwrap_or(&node.inputs[0]);
            buffer_of.insert(node.outputs[0], root);
        }
    }
    let buf = |v: ValueId| *buffer_of.get(&v).unwrap_or(&v);
    let mut src = String::from(SHIM);
    let mut main = String::from("int main(int argc, char** argv) {\n  (void)argc;\n");
    let mut files: Vec<(ValueId, PathBuf)> = Vec::new();
    for (i, v) in g.values().iter().enumerate() {
        let id = ValueId(i);
        if buf(id) != id {
            continue;
        }
        let path = dir.join(format!("v{i}.bin"));
        let bytes = match v.producer {
            Producer::Input(k) => bytes_of(&inputs[k]),
            Producer::Constant => bytes_of(g.constant(id).unwrap()),
            Producer::Node(..) => vec![0u8; shapes[i].iter().product::<usize>() * v.ty.dtype.size()],
        };
        std::fs::write(&path, bytes).unwrap();
        let _ = writeln!(main, "  std::vector<char> v{i} = kc_read(argv[{}]);", files.len() + 1);
        files.push((id, path));
    }
    for s in steps {
        for k in &s.kernels {
            let _ = writeln!(src, "namespace ns_{} {{\n{}\n}}", k.name, k.source);
            main.push_str(&launch(g, k, &buf));
        }
    }
    for (id, _) in &files {
        let _ = writeln!(main, "  {{ FILE* f = std::fopen(argv[{}], \"wb\"); std::fwrite(v{}.data(), 1, v{}.size(), f); std::fclose(f); }}", files.iter().position(|(x, _)| x == id).unwrap() + 1, id.0, id.0);
    }
    main.push_str("  return 0;\n}\n");
    src.push_str(&main);
    let cpp = dir.join("emu.cpp");
    std::fs::write(&cpp, &src).unwrap();
    let exe = dir.join("emu");
    let out = Command::new("g++")
        .args(["-std=c++20", "-O1", "-pthread", "-w", "-o"])
        .arg(&exe)
        .arg(&cpp)
        .output()
        .expect("g++ runs");
    assert!(out.status.success(), "g++ failed on {}:\n{}", cpp.display(), String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).args(files.iter().map(|(_, p)| p)).output().unwrap();
    assert!(run.status.success(), "emulated kernels failed: {}", String::from_utf8_lossy(&run.stderr));
    let outs = g
        .outputs()
        .iter()
        .map(|&o| {
            let b = std::fs::read(dir.join(format!("v{}.bin", buf(o).0)))
                .unwrap_or_else(|_| bytes_of(g.constant(o).unwrap()));
            tensor_of(g.value(o).ty.dtype, &shapes[o.0], &b)
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    outs
}

fn launch(g: &Graph, k: &KernelSource, buf: &dyn Fn(ValueId) -> ValueId) -> String {
    let args: Vec<String> = k
        .args
        .iter()
        .map(|a| {
            let t = ctype(g.value(a.value).ty.dtype);
            let c = if a.output { "" } else { "const " };
            format!("({c}{t}*)v{}.data()", buf(a.value).0)
        })
        .collect();
    let l = k.launch;
    format!(
        "  kc_launch({{{}, {}, {}}}, {{{}, {}, {}}}, [&] {{ ns_{}::{}({}); }});\n",
        l.grid[0],
        l.grid[1],
        l.grid[2],
        l.block[0],
        l.block[1],
        l.block[2],
        k.name,
        k.name,
        args.join(", ")
    )
}

/// Whether the emulator can run here (it needs g++ with C++20).
pub fn have_compiler() -> bool {
    Command::new("g++").arg("--version").output().is_ok_and(|o| o.status.success())
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("KERASC_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/models")).to_path_buf())
}

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
#define __constant__ static const
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(n)
#define __shared__ static
inline void __syncthreads() { kc_barrier->arrive_and_wait(); }
inline float __int_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned kc_bits(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
// Tensor-core emulation: the conversions as the hardware rounds (tf32: nearest, ties away;
// f16/bf16: nearest even), and mma.sync as a block-wide exchange of the warp's fragments
// (the kernels call it from every thread together), each lane computing its own outputs from
// the fragment layouts of PTX's m16n8k8 .tf32 and m16n8k16 .f16/.bf16.
#define KC_EMULATOR 1
inline unsigned kc_tf32(float x) {
  unsigned u = kc_bits(x);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
  return u & 0xffffe000u;
}
inline unsigned short kc_f16_bits(float x) {
  unsigned u = kc_bits(x), sign = (u >> 16) & 0x8000u;
  int e = (int)((u >> 23) & 0xff) - 127 + 15;
  unsigned m = u & 0x7fffffu;
  if (((u >> 23) & 0xff) == 0xff) return (unsigned short)(sign | 0x7c00u | (m ? 0x200u : 0u));
  if (e >= 31) return (unsigned short)(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return (unsigned short)sign;
    m |= 0x800000u;
    unsigned shift = (unsigned)(14 - e), half = 1u << (shift - 1), rest = m & ((1u << shift) - 1);
    unsigned r = m >> shift;
    if (rest > half || (rest == half && (r & 1u))) ++r;
    return (unsigned short)(sign | r);
  }
  unsigned r = ((unsigned)e << 10) | (m >> 13), rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) ++r;
  return (unsigned short)(sign | r);
}
inline float kc_f16_val(unsigned short h) {
  unsigned sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  if (e == 0) { float f = std::ldexp((float)m, -24); return sign ? -f : f; }
  if (e == 31) return __int_as_float(sign | 0x7f800000u | (m << 13));
  return __int_as_float(sign | ((e - 15 + 127) << 23) | (m << 13));
}
inline unsigned short kc_bf16_bits(float x) {
  unsigned u = kc_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return (unsigned short)((u >> 16) | ((u & 0xffffu) ? 0x40u : 0u));
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
inline unsigned kc_pack_f16(float lo, float hi) { return (unsigned)kc_f16_bits(lo) | ((unsigned)kc_f16_bits(hi) << 16); }
inline unsigned kc_pack_bf16(float lo, float hi) { return (unsigned)kc_bf16_bits(lo) | ((unsigned)kc_bf16_bits(hi) << 16); }
static unsigned kc_mma_regs[1024][6];

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
inline unsigned kc_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
template <int KIND> void kc_mma(float* d, const unsigned* a, const unsigned* b) {
  const unsigned t = kc_tid();
  for (int i = 0; i < 4; ++i) kc_mma_regs[t][i] = a[i];
  kc_mma_regs[t][4] = b[0];
  kc_mma_regs[t][5] = b[1];
  __syncthreads();
  const unsigned w0 = t - t % 32, lane = t % 32, g = lane >> 2, q = lane & 3;
  const int K = KIND == 0 ? 8 : 16;
  float A[16][16], B[16][8];
  auto lo = [](unsigned r) { return KIND == 1 ? kc_f16_val((unsigned short)(r & 0xffffu)) : __int_as_float((r & 0xffffu) << 16); };
  auto hi = [](unsigned r) { return KIND == 1 ? kc_f16_val((unsigned short)(r >> 16)) : __int_as_float(r & 0xffff0000u); };
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned gg = l >> 2, tt = l & 3;
    const unsigned* r = kc_mma_regs[w0 + l];
    if (KIND == 0) {
      A[gg][tt] = __int_as_float(r[0]); A[gg + 8][tt] = __int_as_float(r[1]);
      A[gg][tt + 4] = __int_as_float(r[2]); A[gg + 8][tt + 4] = __int_as_float(r[3]);
      B[tt][gg] = __int_as_float(r[4]); B[tt + 4][gg] = __int_as_float(r[5]);
    } else {
      A[gg][2 * tt] = lo(r[0]); A[gg][2 * tt + 1] = hi(r[0]);
      A[gg + 8][2 * tt] = lo(r[1]); A[gg + 8][2 * tt + 1] = hi(r[1]);
      A[gg][2 * tt + 8] = lo(r[2]); A[gg][2 * tt + 9] = hi(r[2]);
      A[gg + 8][2 * tt + 8] = lo(r[3]); A[gg + 8][2 * tt + 9] = hi(r[3]);
      B[2 * tt][gg] = lo(r[4]); B[2 * tt + 1][gg] = hi(r[4]);
      B[2 * tt + 8][gg] = lo(r[5]); B[2 * tt + 9][gg] = hi(r[5]);
    }
  }
  for (int i = 0; i < 4; ++i) {
    const unsigned row = g + (i >= 2 ? 8 : 0), col = 2 * q + (i & 1);
    float s = 0.f;
    for (int k = 0; k < K; ++k) s += A[row][k] * B[k][col];
    d[i] += s;
  }
  __syncthreads();
}
inline void kc_mma_tf32(float* d, const unsigned* a, const unsigned* b) { kc_mma<0>(d, a, b); }
inline void kc_mma_f16(float* d, const unsigned* a, const unsigned* b) { kc_mma<1>(d, a, b); }
inline void kc_mma_bf16(float* d, const unsigned* a, const unsigned* b) { kc_mma<2>(d, a, b); }
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
    build_and_run(&dir, &src, files.iter().map(|(_, p)| p));
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

/// Compiles kernel `sources` with a `main` whose body is `body` and runs it on `bufs`: buffer
/// `k` is `std::vector<char> b{k}` in `body`, and is returned as the program left it.
pub fn run_program(tag: &str, sources: &str, body: &str, bufs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("kerasc-emu-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::from(SHIM);
    src.push_str(sources);
    src.push_str("\nint main(int argc, char** argv) {\n  (void)argc;\n");
    let paths: Vec<PathBuf> = (0..bufs.len()).map(|k| dir.join(format!("b{k}.bin"))).collect();
    for (k, (b, p)) in bufs.iter().zip(&paths).enumerate() {
        std::fs::write(p, b).unwrap();
        let _ = writeln!(src, "  std::vector<char> b{k} = kc_read(argv[{}]);", k + 1);
    }
    src.push_str(body);
    for k in 0..bufs.len() {
        let _ = writeln!(
            src,
            "  {{ FILE* f = std::fopen(argv[{}], \"wb\"); std::fwrite(b{k}.data(), 1, b{k}.size(), f); std::fclose(f); }}",
            k + 1
        );
    }
    src.push_str("  return 0;\n}\n");
    build_and_run(&dir, &src, &paths);
    let outs = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let _ = std::fs::remove_dir_all(&dir);
    outs
}

/// Compiles the emulator program `src` in `dir` with g++ and runs it with `args`.
fn build_and_run(dir: &Path, src: &str, args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>) {
    let cpp = dir.join("emu.cpp");
    std::fs::write(&cpp, src).unwrap();
    let exe = dir.join("emu");
    let out = Command::new("g++")
        .args(["-std=c++20", "-O1", "-pthread", "-w", "-o"])
        .arg(&exe)
        .arg(&cpp)
        .output()
        .expect("g++ runs");
    assert!(out.status.success(), "g++ failed on {}:\n{}", cpp.display(), String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).args(args).output().unwrap();
    assert!(run.status.success(), "emulated kernels failed: {}", String::from_utf8_lossy(&run.stderr));
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

/// For a check that cannot run on this machine: a failure when the `KERASC_REQUIRE_*` variable
/// `var` is set (CI requires the emulator, the device script the GPU), else a line on stderr.
pub fn cannot_run(var: &str, why: &str) {
    assert!(std::env::var_os(var).is_none(), "{var} is set, but this check cannot run here: {why}");
    eprintln!("skipped: {why} (set {var}=1 to make this a failure)");
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("KERASC_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/models")).to_path_buf())
}

//! The planned executor allocates nothing per run beyond the output tensors it returns (and
//! the GEMM library's own scratch), counted by a wrapping global allocator.

mod common;

use common::models_dir;
use kerasc::{npy, OptimizeOptions, SessionOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serializes the tests: the counter is process-wide.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (out, ALLOCS.load(Ordering::SeqCst))
}

#[test]
fn a_planned_run_without_gemm_allocates_only_its_outputs() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    use kerasc::ir::{BinaryOp, DType, Dim, Graph, Op, PoolAttrs, PoolKind, Shape, Tensor, TensorType, UnaryOp};
    let mut g = Graph::new("t");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(8), Dim::Fixed(8), Dim::Fixed(4)])),
    );
    let pool = PoolAttrs { kind: PoolKind::Max, window: vec![2, 2], strides: vec![2, 2], pads: vec![(0, 0), (0, 0)] };
    let p = g.add("pool", Op::Pool(pool), &[x]).unwrap();
    let t = g.add("t", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[p]).unwrap();
    let r = g.add("r", Op::Reshape { shape: vec![0, 4, 16] }, &[t]).unwrap();
    let s = g.add("softmax", Op::Softmax { axes: vec![2] }, &[r]).unwrap();
    let gamma = g.add_constant("gamma", Tensor::full(&[16], 1.5));
    let beta = g.add_constant("beta", Tensor::full(&[16], 0.1));
    let n = g.add("ln", Op::LayerNorm { axes: vec![2], epsilon: 1e-3 }, &[s, gamma, beta]).unwrap();
    let two = g.add_constant("two", Tensor::scalar(2.0));
    let a = g.add("mul", Op::Binary(BinaryOp::Mul), &[n, two]).unwrap();
    let a = g.add("tanh", Op::Unary(UnaryOp::Tanh), &[a]).unwrap();
    let c = g.add("concat", Op::Concat { axis: 1 }, &[a, r]).unwrap();
    g.set_outputs(vec![c]);
    let (s, _) = kerasc::compile(&g, &OptimizeOptions::default(), SessionOptions::default()).unwrap();
    let xs = vec![Tensor::from_f32(&[2, 8, 8, 4], (0..512).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap()];
    let want = kerasc::Session::new(g.clone(), SessionOptions::default()).unwrap().run(&xs).unwrap();
    s.run(&xs).unwrap();
    // The thread pool's job queue allocates a block every few dozen jobs: the fewest of three
    // runs is the planned run's own count.
    let mut n = usize::MAX;
    for _ in 0..3 {
        let (out, k) = count(|| s.run(&xs).unwrap());
        assert_eq!(out[0].as_f32(), want[0].as_f32());
        n = n.min(k);
    }
    // The returned Vec, the output's shape and data, and at most one for the thread pool's
    // job queue when a parallel kernel hands it work.
    assert!(
        n <= 4,
        "{n} allocations in a run of {} nodes:\n{}",
        s.graph().nodes().len(),
        kerasc::ir::render::to_text(s.graph())
    );
    // An epoch's short last batch, then a full one again: both plans are kept, so the full batch
    // runs without planning anew (and both give the naive executor's outputs).
    let short = vec![Tensor::from_f32(&[1, 8, 8, 4], (0..256).map(|i| (i as f32 * 0.11).cos()).collect()).unwrap()];
    let want_short = kerasc::Session::new(g.clone(), SessionOptions::default()).unwrap().run(&short).unwrap();
    assert_eq!(s.run(&short).unwrap()[0].as_f32(), want_short[0].as_f32());
    let (mut n_full, mut n_short) = (usize::MAX, usize::MAX);
    for _ in 0..3 {
        let (out, k) = count(|| s.run(&xs).unwrap());
        assert_eq!(out[0].as_f32(), want[0].as_f32());
        n_full = n_full.min(k);
        let (out, k) = count(|| s.run(&short).unwrap());
        assert_eq!(out[0].as_f32(), want_short[0].as_f32());
        n_short = n_short.min(k);
    }
    assert!(n_full <= 4 && n_short <= 4, "{n_full} and {n_short} allocations running two batch sizes in turn");
}

#[test]
fn planned_runs_allocate_far_less_than_naive_ones() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // The GEMM library allocates its own packing scratch per call; everything else is in the arena.
    for name in ["cnn_mnist", "mobilenetv2", "resnet_block", "transformer"] {
        let dir = models_dir();
        let model = kerasc::load(&dir.join(format!("{name}.keras"))).unwrap();
        let x = vec![npy::read(&dir.join(format!("{name}.input.npy"))).unwrap()];
        let naive = kerasc::Session::new(model.graph.clone(), SessionOptions::default()).unwrap();
        let (s, _) = kerasc::compile(&model.graph, &OptimizeOptions::default(), SessionOptions::default()).unwrap();
        naive.run(&x).unwrap();
        s.run(&x).unwrap();
        let (_, n_naive) = count(|| naive.run(&x).unwrap());
        let (_, n_planned) = count(|| s.run(&x).unwrap());
        println!("{name}: {n_planned} allocations planned, {n_naive} naive");
        assert!(n_planned * 3 <= n_naive, "{name}: {n_planned} allocations planned vs {n_naive} naive");
    }
}

#[test]
fn a_training_step_updates_from_gradients_in_its_arena() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    use kerasc::ir::{DType, Tensor};
    use kerasc::runtime::training::{Kind, Loss, Optimizer, Schedule, TrainStep};
    let dir = models_dir();
    let model = kerasc::load(&dir.join("cnn_mnist.h5")).unwrap();
    let g = &model.graph;
    let trainable: Vec<_> = g.constants().keys().copied().collect();
    let step =
        TrainStep::new(g, Loss::SparseCategoricalCrossentropy { from_logits: false }, &trainable, DType::I32).unwrap();
    let data = kerasc::npy::read_npz(&dir.join("cnn_mnist.finetune.npz")).unwrap();
    let find = |k: &str| data.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let (x, y) = (find("x_train"), find("y_train"));
    let rows = |t: &Tensor| t.gather_rows(&(0..16).collect::<Vec<_>>()).unwrap();
    let (xb, yb) = (vec![rows(&x)], vec![rows(&y)]);
    let adam = || {
        kerasc::runtime::training::KerasOptimizer::new(
            Kind::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: true },
            Schedule::Constant(0.01),
        )
    };
    let w0: Vec<Tensor> = trainable.iter().map(|v| g.constant(*v).unwrap().clone()).collect();
    // Two steps each way: the step's gradients copied out and applied, and the update that
    // reads them in the step's arena. Same weights, bit for bit.
    let (mut wa, mut oa, mut wb, mut ob) = (w0.clone(), adam(), w0.clone(), adam());
    let (mut copied, mut in_place) = (usize::MAX, usize::MAX);
    for _ in 0..5 {
        let (out, n) = count(|| {
            let out = step.run_full(&xb, &yb, &wa, &[], &[]).unwrap();
            oa.apply(&mut wa, &out.grads).unwrap();
            out
        });
        copied = copied.min(n);
        let (loss, n) = count(|| step.run_update(&xb, &yb, &mut wb, &[], &[], &mut ob).unwrap().loss);
        in_place = in_place.min(n);
        assert_eq!(out.loss.to_bits(), loss.to_bits());
        for (a, b) in wa.iter().zip(&wb) {
            assert_eq!(a.as_f32(), b.as_f32());
        }
    }
    assert_ne!(wa[0].as_f32(), w0[0].as_f32(), "the weights did not move");
    // Each gradient copied out is its data and its shape (the thread pool's job queue adds a
    // few either way, hence the fewest of five runs and a margin).
    println!("{} weights: {copied} allocations copying gradients out, {in_place} updating in place", wa.len());
    assert!(
        in_place + wa.len() <= copied,
        "{in_place} allocations updating in place vs {copied} copying {} gradients out",
        wa.len()
    );
}

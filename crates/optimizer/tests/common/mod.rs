//! Helpers shared by the optimizer's tests: a seeded generator, graph building, and running a
//! graph naive and optimized on the same input.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use ir::{ConvAttrs, DType, Dim, Graph, Op, Shape, Tensor, TensorType, Tolerance, ValueId};
use optimizer::{optimize, OptimizeOptions};
use runtime::{PlannedSession, Session, SessionOptions};

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape, (0..n).map(|_| self.f()).collect()).unwrap()
    }
    pub fn positive(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape, (0..n).map(|_| 0.5 + self.f().abs()).collect()).unwrap()
    }
}

pub fn input(g: &mut Graph, dims: &[usize]) -> ValueId {
    let mut d = vec![Dim::Batch];
    d.extend(dims.iter().map(|&n| Dim::Fixed(n)));
    g.add_input("x", TensorType::new(DType::F32, Shape(d)))
}

pub fn conv(g: &mut Graph, rng: &mut Rng, x: ValueId, c: usize, f: usize, same: bool) -> ValueId {
    let w = g.add_constant(format!("w{}", g.values().len()), rng.tensor(&[3, 3, c, f]));
    let p = usize::from(same);
    let a = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(p, p), (p, p)], groups: 1 };
    g.add(format!("conv{}", g.nodes().len()), Op::Conv(a), &[x, w]).unwrap()
}

pub fn batchnorm(g: &mut Graph, rng: &mut Rng, x: ValueId, c: usize) -> ValueId {
    let rank = g.value(x).ty.shape.rank();
    let gamma = g.add_constant("gamma", rng.tensor(&[c]));
    let beta = g.add_constant("beta", rng.tensor(&[c]));
    let mean = g.add_constant("mean", rng.tensor(&[c]));
    let var = g.add_constant("var", rng.positive(&[c]));
    g.add("bn", Op::BatchNorm { axis: rank - 1, epsilon: 1e-3 }, &[x, gamma, beta, mean, var]).unwrap()
}

pub fn random_input(g: &Graph, rng: &mut Rng, batch: usize) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let shape: Vec<usize> = g.value(v).ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(batch)).collect();
            rng.tensor(&shape)
        })
        .collect()
}

fn planner(g: &Graph, shapes: &[Vec<usize>]) -> Result<ir::MemoryPlan, String> {
    optimizer::plan_for_shapes(g, shapes).map_err(|e| e.to_string())
}

/// Optimizes with `options`, then checks the result against the naive run at two batch sizes.
pub fn optimize_and_check(g: &Graph, options: &OptimizeOptions, rng: &mut Rng) -> Graph {
    let opt = optimize(g, options).unwrap();
    let naive = Session::new(g.clone(), SessionOptions::default()).unwrap();
    let planned = PlannedSession::new(opt.graph.clone(), SessionOptions::default(), planner).unwrap();
    for batch in [1, 3] {
        let x = random_input(g, rng, batch);
        let want = naive.run(&x).unwrap();
        let got = planned.run(&x).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.shape(), b.shape());
            let c = Tolerance::REDUCTION.compare(&a.to_f64_vec(), &b.to_f64_vec());
            assert!(
                c.passed(),
                "optimized differs from naive: {c}\nbefore:\n{}\nafter:\n{}",
                ir::render::to_text(g),
                ir::render::to_text(&opt.graph)
            );
        }
    }
    opt.graph
}

/// The op names of a graph, in order.
pub fn ops(g: &Graph) -> Vec<String> {
    g.nodes().iter().map(|n| n.op.name()).collect()
}

/// Options that run only the named rewrite rules.
pub fn only(rules: &[&str]) -> OptimizeOptions {
    OptimizeOptions {
        rules: rules.iter().map(|s| s.to_string()).collect(),
        no_elementwise_fusion: true,
        ..Default::default()
    }
}

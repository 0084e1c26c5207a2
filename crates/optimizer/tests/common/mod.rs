//! Helpers shared by the optimizer's tests: a seeded generator, graph building, and running a
//! graph naive and optimized on the same input.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use ir::{ConvAttrs, DType, Dim, Graph, Op, Placement, Shape, Tensor, TensorType, Tolerance, ValueId};
use optimizer::{optimize, OptimizeOptions};
use std::collections::HashMap;

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

/// Runs `g` the way the planned executor does: nodes in the plan's order, every float32
/// intermediate written at its planned arena offset and read back from there, so values the
/// plan lets overlap while both are live corrupt the result.
pub fn run_planned(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let plan = optimizer::plan_for_shapes(g, &shapes).unwrap();
    let mut arena = vec![f32::NAN; plan.arena_bytes.div_ceil(4)];
    let mut separate: HashMap<ValueId, Tensor> = HashMap::new();
    let read = |v: ValueId, arena: &[f32], separate: &HashMap<ValueId, Tensor>| match plan.placements[v.0] {
        Placement::Input(i) => inputs[i].clone(),
        Placement::Constant => g.constant(v).unwrap().clone(),
        Placement::Arena { offset, bytes } => {
            Tensor::from_f32(&plan.shapes[v.0], arena[offset / 4..(offset + bytes) / 4].to_vec()).unwrap()
        }
        Placement::Separate => separate[&v].clone(),
    };
    for nid in &plan.order {
        let node = &g.nodes()[nid.0];
        let args: Vec<Tensor> = node.inputs.iter().map(|&v| read(v, &arena, &separate)).collect();
        let refs: Vec<&Tensor> = args.iter().collect();
        let outs = kernels::run_op(&node.op, &refs).unwrap();
        for (&o, t) in node.outputs.iter().zip(outs) {
            match plan.placements[o.0] {
                Placement::Arena { offset, bytes } => {
                    arena[offset / 4..(offset + bytes) / 4].copy_from_slice(t.as_f32().unwrap())
                }
                _ => {
                    separate.insert(o, t);
                }
            }
        }
    }
    g.outputs().iter().map(|&v| read(v, &arena, &separate)).collect()
}

/// Optimizes with `options`, then checks the result against the naive run at two batch sizes.
pub fn optimize_and_check(g: &Graph, options: &OptimizeOptions, rng: &mut Rng) -> Graph {
    let opt = optimize(g, options).unwrap();
    for batch in [1, 3] {
        let x = random_input(g, rng, batch);
        let want = kernels::evaluate(g, &x, |_, _| {}).unwrap();
        let got = run_planned(&opt.graph, &x);
        assert_eq!(got.len(), want.len(), "outputs");
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

//! Random small graphs through the whole optimizer: the optimized plan must compute what the
//! naive one does, at two batch sizes, and its memory plan must be sound.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use ir::{BinaryOp, Graph, Op, Placement, Tensor, UnaryOp, ValueId};
use optimizer::OptimizeOptions;

const ACTS: [UnaryOp; 6] =
    [UnaryOp::Relu, UnaryOp::Relu6, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Silu, UnaryOp::Gelu];

/// A random chain over a (N, 5, 5, C) feature map with side branches, residuals and layout ops.
fn random_graph(rng: &mut Rng) -> Graph {
    let mut g = Graph::new("random");
    let c0 = 1 + rng.below(3);
    let x = input(&mut g, &[5, 5, c0]);
    let mut cur = x;
    let mut c = c0;
    let mut same_shape: Vec<(ValueId, usize)> = vec![(x, c0)];
    for _ in 0..(2 + rng.below(6)) {
        cur = match rng.below(10) {
            0 => {
                let (k, f) = (c, 1 + rng.below(4));
                c = f;
                conv(&mut g, rng, cur, k, f, true)
            }
            1 => batchnorm(&mut g, rng, cur, c),
            2 => {
                let b = g.add_constant("b", rng.tensor(&[c]));
                g.add("bias", Op::BiasAdd { axis: 3 }, &[cur, b]).unwrap()
            }
            3 => g.add("act", Op::Unary(ACTS[rng.below(ACTS.len())]), &[cur]).unwrap(),
            4 => {
                let s = g.add_constant("s", rng.tensor(&[1, 1, c]));
                g.add("scale", Op::Binary(BinaryOp::Mul), &[cur, s]).unwrap()
            }
            5 => {
                let same: Vec<ValueId> = same_shape.iter().filter(|(_, k)| *k == c).map(|(v, _)| *v).collect();
                let r = same[rng.below(same.len())];
                g.add("residual", Op::Binary(BinaryOp::Add), &[r, cur]).unwrap()
            }
            6 => {
                let y = g.add("r1", Op::Reshape { shape: vec![0, 25, c as i64] }, &[cur]).unwrap();
                let y = g.add("t1", Op::Transpose { perm: vec![0, 2, 1] }, &[y]).unwrap();
                let y = g.add("t2", Op::Transpose { perm: vec![0, 2, 1] }, &[y]).unwrap();
                g.add("r2", Op::Reshape { shape: vec![0, 5, 5, c as i64] }, &[y]).unwrap()
            }
            7 => {
                let p =
                    g.add("pad", Op::Pad { pads: vec![(0, 0), (1, 1), (1, 1), (0, 0)], value: 0.0 }, &[cur]).unwrap();
                let (k, f) = (c, 1 + rng.below(3));
                c = f;
                conv(&mut g, rng, p, k, f, false)
            }
            8 => {
                let one = g.add_constant("one", Tensor::scalar(1.0));
                let y = g.add("mul1", Op::Binary(BinaryOp::Mul), &[cur, one]).unwrap();
                g.add("neg", Op::Unary(UnaryOp::Neg), &[y]).unwrap()
            }
            _ => {
                let w = g.add_constant("w", rng.tensor(&[c, 3]));
                c = 3;
                g.add("dense", Op::MatMul { transpose_a: false, transpose_b: false }, &[cur, w]).unwrap()
            }
        };
        same_shape.push((cur, c));
    }
    // Sometimes a second output that shares the trunk.
    if rng.below(3) == 0 {
        let side = g.add("side", Op::Unary(UnaryOp::Exp), &[cur]).unwrap();
        g.set_outputs(vec![cur, side]);
    } else {
        g.set_outputs(vec![cur]);
    }
    g
}

/// No two buffers that are live at the same time overlap, unless one is an in-place or
/// reshape alias of the other.
fn assert_plan_sound(g: &Graph, batch: usize) {
    let plan = optimizer::plan(g, batch).unwrap();
    let n = g.nodes().len();
    let mut span = vec![(usize::MAX, 0usize); g.values().len()];
    for (i, node) in g.nodes().iter().enumerate() {
        for o in &node.outputs {
            span[o.0].0 = i;
            span[o.0].1 = span[o.0].1.max(i);
        }
        for v in &node.inputs {
            span[v.0].1 = span[v.0].1.max(i);
        }
    }
    for o in g.outputs() {
        span[o.0].1 = n;
    }
    let arena: Vec<(usize, usize, usize)> = plan
        .placements
        .iter()
        .enumerate()
        .filter_map(|(v, p)| match p {
            Placement::Arena { offset, bytes } => Some((v, *offset, *bytes)),
            _ => None,
        })
        .collect();
    for (i, &(a, ao, ab)) in arena.iter().enumerate() {
        assert!(ao + ab <= plan.arena_bytes);
        for &(b, bo, bb) in &arena[i + 1..] {
            let overlap_mem = ao < bo + bb && bo < ao + ab;
            let (sa, sb) = (span[a], span[b]);
            // Live at the same step, with neither produced at the other's last read.
            let overlap_time = sa.0 < sb.1 && sb.0 < sa.1;
            if overlap_mem && overlap_time {
                let alias = ao == bo && ab == bb;
                assert!(alias, "values {a} and {b} overlap in memory and time\n{}", ir::render::to_text(g));
            }
        }
    }
    assert!(plan.arena_bytes >= plan.lower_bound_bytes.min(plan.arena_bytes));
}

#[test]
fn random_graphs_keep_their_meaning() {
    for seed in 0..150 {
        let mut rng = Rng(1000 + seed);
        let g = random_graph(&mut rng);
        let out = optimize_and_check(&g, &OptimizeOptions::default(), &mut rng);
        for batch in [1, 4] {
            assert_plan_sound(&out, batch);
        }
    }
}

#[test]
fn a_deep_chain_optimizes_without_exhausting_the_stack() {
    let mut rng = Rng(7);
    let mut g = Graph::new("deep");
    let mut cur = input(&mut g, &[4]);
    for i in 0..1500 {
        let w = g.add_constant(format!("w{i}"), rng.tensor(&[4, 4]));
        let y = g.add(format!("mm{i}"), Op::MatMul { transpose_a: false, transpose_b: false }, &[cur, w]).unwrap();
        cur = g.add(format!("tanh{i}"), Op::Unary(UnaryOp::Tanh), &[y]).unwrap();
    }
    g.set_outputs(vec![cur]);
    let t0 = std::time::Instant::now();
    let out = optimizer::optimize(&g, &OptimizeOptions::default()).unwrap();
    println!("1500-layer chain optimized in {:.2} s", t0.elapsed().as_secs_f64());
    assert_eq!(out.graph.nodes().len(), 1500);
    assert!(out.graph.nodes().iter().all(|n| matches!(n.op, Op::FusedMatMul { .. })));
}

//! Constant folding: every node whose operands are all weights is evaluated once, by the ops'
//! reference evaluator (the `kernels` crate).

use crate::copy::{live_nodes, Copier};
use crate::OptError;
use ir::Graph;

/// Outputs larger than this stay computed at run time rather than stored.
const MAX_FOLDED_ELEMENTS: usize = 1 << 24;

/// Folds weight-only nodes and drops dead ones; returns the graph and how many nodes folded.
pub fn fold_constants(g: &Graph) -> Result<(Graph, usize), OptError> {
    let live = live_nodes(g);
    let mut c = Copier::new(g);
    let mut folded = 0;
    for (node, _) in g.nodes().iter().zip(&live).filter(|(_, &l)| l) {
        let ins = node.inputs.iter().map(|&v| c.get(v)).collect::<Result<Vec<_>, _>>()?;
        let small =
            node.outputs.iter().all(|&o| g.value(o).ty.shape.num_elements().is_some_and(|n| n <= MAX_FOLDED_ELEMENTS));
        let consts: Option<Vec<_>> = ins.iter().map(|&v| c.constant(v)).collect();
        if let (Some(consts), true, false) = (consts, small, ins.is_empty()) {
            let outs = kernels::run_op(&node.op, &consts).map_err(|e| OptError::Fold(e.at(&node.name)))?;
            for (&o, t) in node.outputs.iter().zip(outs) {
                c.set_constant(o, t);
            }
            folded += 1;
            continue;
        }
        let outs = c.dst.add_node(node.name.clone(), node.op.clone(), &ins)?;
        for (&o, n) in node.outputs.iter().zip(outs) {
            c.set(o, n);
        }
    }
    Ok((c.finish()?, folded))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ir::{Op, Tensor, TensorData};

    #[test]
    fn a_kernel_that_fails_while_folding_is_an_error_naming_the_node() {
        let mut g = Graph::new("t");
        let table = g.add_constant("table", Tensor::from_f32(&[3, 2], vec![0.0; 6]).unwrap());
        let ids = g.add_constant("ids", Tensor::new(vec![1], TensorData::I32(vec![7])).unwrap());
        let y = g.add("lookup", Op::Gather { axis: 0 }, &[table, ids]).unwrap();
        g.set_outputs(vec![y]);
        let e = fold_constants(&g).unwrap_err().to_string();
        assert!(e.contains("'lookup'") && e.contains("out of range"), "{e}");
        // In range, the node folds into a constant.
        let mut g = Graph::new("t");
        let table = g.add_constant("table", Tensor::from_f32(&[3, 2], vec![1.0; 6]).unwrap());
        let ids = g.add_constant("ids", Tensor::new(vec![1], TensorData::I32(vec![2])).unwrap());
        let y = g.add("lookup", Op::Gather { axis: 0 }, &[table, ids]).unwrap();
        g.set_outputs(vec![y]);
        let (folded, n) = fold_constants(&g).unwrap();
        assert_eq!((n, folded.nodes().len()), (1, 0));
    }
}

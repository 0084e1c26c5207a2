//! The `lower-layout` pass: a channels-first op ([`Op::ChannelsFirst`], ONNX's layout kept as an
//! attribute at import) becomes its channels-last op between two transposes. The e-graph's
//! layout rules then cancel those transposes against the model's own (tf2onnx wraps every
//! convolution of a channels-last Keras model in a pair) and move element-wise ops through the
//! rest, so the optimized graph runs channels-last kernels without a forest of transposes.

use crate::copy::Copier;
use crate::OptError;
use ir::{Graph, Op};

/// Lowers every channels-first op; returns the graph and how many were lowered.
pub fn lower_channels_first(g: &Graph) -> Result<(Graph, usize), OptError> {
    let mut c = Copier::new(g);
    let mut lowered = 0;
    for node in g.nodes() {
        let ins = node.inputs.iter().map(|&v| c.get(v)).collect::<Result<Vec<_>, _>>()?;
        let outs = match &node.op {
            Op::ChannelsFirst(inner) => {
                lowered += 1;
                let r = c.dst.value(ins[0]).ty.shape.rank();
                let (to_last, to_first) = Op::channels_last_perm(r);
                let x =
                    c.dst.add(format!("{}/to_channels_last", node.name), Op::Transpose { perm: to_last }, &[ins[0]])?;
                let mut inner_ins = ins.clone();
                inner_ins[0] = x;
                let ys = c.dst.add_node(format!("{}/channels_last", node.name), (**inner).clone(), &inner_ins)?;
                let mut outs = Vec::with_capacity(ys.len());
                for y in ys {
                    outs.push(c.dst.add(node.name.clone(), Op::Transpose { perm: to_first.clone() }, &[y])?);
                }
                outs
            }
            op => c.dst.add_node(node.name.clone(), op.clone(), &ins)?,
        };
        for (&o, n) in node.outputs.iter().zip(outs) {
            c.set(o, n);
        }
    }
    Ok((c.finish()?, lowered))
}

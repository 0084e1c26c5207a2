use crate::{infer_types, IrError, Op, Tensor, TensorType};
use std::collections::BTreeMap;

/// Index of a value (an SSA edge) in a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// Index of a node in a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// The i-th graph input.
    Input(usize),
    /// A constant (a weight) held by the graph.
    Constant,
    /// Output `1` of node `0`.
    Node(NodeId, usize),
}

/// A typed SSA value.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: TensorType,
    pub producer: Producer,
}

/// One op application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The layer (or layer/part) this node came from.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A typed dataflow graph; nodes are kept in a topological order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    values: Vec<Value>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    constants: BTreeMap<ValueId, Tensor>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Default::default() }
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = ValueId(self.values.len());
        self.values.push(Value { name: name.into(), ty, producer: Producer::Input(self.inputs.len()) });
        self.inputs.push(id);
        id
    }

    /// Adds a constant tensor.
    pub fn add_constant(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        let id = ValueId(self.values.len());
        self.values.push(Value { name: name.into(), ty: tensor.tensor_type(), producer: Producer::Constant });
        self.constants.insert(id, tensor);
        id
    }

    /// Appends a node after inferring its output types; errors on a shape or type mismatch.
    pub fn add_node(&mut self, name: impl Into<String>, op: Op, inputs: &[ValueId]) -> Result<Vec<ValueId>, IrError> {
        let name = name.into();
        let mut tys = Vec::with_capacity(inputs.len());
        for &v in inputs {
            let value = self
                .values
                .get(v.0)
                .ok_or_else(|| IrError::Graph(format!("node '{name}' uses unknown value {}", v.0)))?;
            tys.push(value.ty.clone());
        }
        let out_tys = infer_types(&op, &tys).map_err(|e| match e {
            IrError::Shape { op, message } => IrError::Shape { op: format!("{op} in '{name}'"), message },
            other => other,
        })?;
        let node_id = NodeId(self.nodes.len());
        let mut outputs = Vec::with_capacity(out_tys.len());
        for (i, ty) in out_tys.into_iter().enumerate() {
            let id = ValueId(self.values.len());
            let vname = if i == 0 { name.clone() } else { format!("{name}:{i}") };
            self.values.push(Value { name: vname, ty, producer: Producer::Node(node_id, i) });
            outputs.push(id);
        }
        self.nodes.push(Node { name, op, inputs: inputs.to_vec(), outputs: outputs.clone() });
        Ok(outputs)
    }

    /// Convenience for single-output nodes.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[ValueId]) -> Result<ValueId, IrError> {
        let outs = self.add_node(name, op, inputs)?;
        outs.first().copied().ok_or_else(|| IrError::Graph("op produced no output".into()))
    }

    /// Declares the graph outputs.
    pub fn set_outputs(&mut self, outputs: Vec<ValueId>) {
        self.outputs = outputs;
    }

    /// Graph inputs in order.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Graph outputs in order.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// Nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// All values.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// One value.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }

    /// The constant tensor behind a value, if it is a constant.
    pub fn constant(&self, id: ValueId) -> Option<&Tensor> {
        self.constants.get(&id)
    }

    /// All constants.
    pub fn constants(&self) -> &BTreeMap<ValueId, Tensor> {
        &self.constants
    }

    /// Renames a value (used to give graph inputs and outputs their model names).
    pub fn rename_value(&mut self, id: ValueId, name: impl Into<String>) {
        if let Some(v) = self.values.get_mut(id.0) {
            v.name = name.into();
        }
    }

    /// The concrete shape of every value when the inputs have `input_shapes` (shape inference
    /// with every dimension known).
    pub fn concrete_shapes(&self, input_shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, IrError> {
        let mut shapes: Vec<Option<Vec<usize>>> = vec![None; self.values.len()];
        if input_shapes.len() != self.inputs.len() {
            return Err(IrError::Graph(format!(
                "{} input shapes for {} inputs",
                input_shapes.len(),
                self.inputs.len()
            )));
        }
        for (&v, s) in self.inputs.iter().zip(input_shapes) {
            shapes[v.0] = Some(s.clone());
        }
        for (&v, t) in &self.constants {
            shapes[v.0] = Some(t.shape().to_vec());
        }
        for node in &self.nodes {
            let mut tys = Vec::with_capacity(node.inputs.len());
            for v in &node.inputs {
                let s = shapes
                    .get(v.0)
                    .and_then(|s| s.as_ref())
                    .ok_or_else(|| IrError::Graph(format!("'{}' reads an undefined value", node.name)))?;
                tys.push(TensorType::new(self.values[v.0].ty.dtype, crate::Shape::fixed(s)));
            }
            let outs = crate::infer::infer_concrete_types(&node.op, &tys)?;
            for (&o, t) in node.outputs.iter().zip(outs) {
                let s = t
                    .shape
                    .as_fixed()
                    .ok_or_else(|| IrError::Graph(format!("'{}' has no concrete shape", node.name)))?;
                shapes[o.0] = Some(s);
            }
        }
        Ok(shapes.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Checks the invariants: every edge points to an existing earlier value, producers agree
    /// with node outputs, constants match their types, types re-infer to what is stored.
    pub fn validate(&self) -> Result<(), IrError> {
        let mut defined = vec![false; self.values.len()];
        for (i, &v) in self.inputs.iter().enumerate() {
            let value = self.values.get(v.0).ok_or_else(|| IrError::Graph(format!("input {i} is unknown")))?;
            if value.producer != Producer::Input(i) {
                return Err(IrError::Graph(format!("input '{}' has producer {:?}", value.name, value.producer)));
            }
            defined[v.0] = true;
        }
        for (&id, t) in &self.constants {
            let value = self.values.get(id.0).ok_or_else(|| IrError::Graph("constant with unknown id".into()))?;
            if value.ty != t.tensor_type() {
                return Err(IrError::Graph(format!(
                    "constant '{}' has type {} but holds {}",
                    value.name,
                    value.ty,
                    t.tensor_type()
                )));
            }
            defined[id.0] = true;
        }
        for (n, node) in self.nodes.iter().enumerate() {
            let mut tys = Vec::new();
            for &i in &node.inputs {
                if i.0 >= self.values.len() || !defined[i.0] {
                    return Err(IrError::Graph(format!(
                        "node '{}' reads value {} before it is defined",
                        node.name, i.0
                    )));
                }
                tys.push(self.values[i.0].ty.clone());
            }
            let expect = infer_types(&node.op, &tys)?;
            if expect.len() != node.outputs.len() {
                return Err(IrError::Graph(format!(
                    "node '{}' has {} outputs, op gives {}",
                    node.name,
                    node.outputs.len(),
                    expect.len()
                )));
            }
            for (k, (&o, ty)) in node.outputs.iter().zip(expect).enumerate() {
                let value = self
                    .values
                    .get(o.0)
                    .ok_or_else(|| IrError::Graph(format!("node '{}' output unknown", node.name)))?;
                if value.producer != Producer::Node(NodeId(n), k) {
                    return Err(IrError::Graph(format!("value '{}' producer mismatch", value.name)));
                }
                if value.ty != ty {
                    return Err(IrError::Graph(format!(
                        "value '{}' typed {} but op infers {}",
                        value.name, value.ty, ty
                    )));
                }
                if defined[o.0] {
                    return Err(IrError::Graph(format!("value '{}' defined twice", value.name)));
                }
                defined[o.0] = true;
            }
        }
        for &o in &self.outputs {
            if o.0 >= self.values.len() || !defined[o.0] {
                return Err(IrError::Graph(format!("graph output {} is not defined", o.0)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinaryOp, DType, Dim, Shape, UnaryOp};

    #[test]
    fn builds_and_validates() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(3)])));
        let b = g.add_constant("b", Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap());
        let y = g.add("add", Op::Binary(BinaryOp::Add), &[x, b]).unwrap();
        let z = g.add("relu", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
        g.set_outputs(vec![z]);
        g.validate().unwrap();
        assert_eq!(g.value(z).ty.shape, Shape(vec![Dim::Batch, Dim::Fixed(3)]));
    }

    #[test]
    fn shape_mismatch_is_an_error_naming_the_node() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[2, 3])));
        let b = g.add_constant("b", Tensor::zeros(&[4]));
        let err = g.add("bad_add", Op::Binary(BinaryOp::Add), &[x, b]).unwrap_err();
        assert!(err.to_string().contains("bad_add"), "{err}");
    }

    #[test]
    fn dangling_output_fails_validation() {
        let mut g = Graph::new("t");
        let _x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[2])));
        g.set_outputs(vec![ValueId(7)]);
        assert!(g.validate().is_err());
    }
}

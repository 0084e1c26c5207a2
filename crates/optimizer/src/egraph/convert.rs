//! Graph ⇄ e-graph: every value becomes an e-class; extraction's choice is rebuilt as a graph
//! that keeps the original input, output, weight and layer names.

use super::analysis::{TensorAnalysis, TensorEGraph};
use super::lang::TensorLang;
use crate::OptError;
use egg::{Id, Language};
use ir::{Graph, Producer, ValueId};
use std::collections::{HashMap, HashSet};

/// A graph loaded into an e-graph.
pub struct Loaded {
    pub egraph: TensorEGraph,
    /// The class of each graph output, in order.
    pub roots: Vec<Id>,
    /// The layer name of the node that first defined each class.
    pub names: Vec<(Id, String)>,
    /// Original names of interned weights.
    pub weight_names: HashMap<u32, String>,
}

/// Adds every input, weight and node of `g` to a fresh e-graph.
pub fn load(g: &Graph) -> Result<Loaded, OptError> {
    let mut analysis = TensorAnalysis::default();
    analysis.inputs = g.inputs().iter().map(|&v| g.value(v).ty.clone()).collect();
    let mut eg = TensorEGraph::new(analysis);
    let mut class_of: HashMap<ValueId, Id> = HashMap::new();
    let mut names = Vec::new();
    let mut weight_names = HashMap::new();
    for (i, &v) in g.inputs().iter().enumerate() {
        class_of.insert(v, eg.add(TensorLang::Input(i as u32)));
    }
    for (&v, t) in g.constants() {
        let k = eg.analysis.intern_weight(t.clone());
        weight_names.insert(k, g.value(v).name.clone());
        class_of.insert(v, eg.add(TensorLang::Weight(k)));
    }
    for node in g.nodes() {
        let mut children = Vec::with_capacity(node.inputs.len());
        for v in &node.inputs {
            children.push(
                *class_of
                    .get(v)
                    .ok_or_else(|| OptError::Graph(format!("node '{}' reads an undefined value", node.name)))?,
            );
        }
        let op = eg.analysis.intern_op(&node.op);
        let id = eg.add(TensorLang::Apply(op, children));
        if node.outputs.len() == 1 {
            class_of.insert(node.outputs[0], id);
            names.push((id, node.name.clone()));
        } else {
            for (k, &o) in node.outputs.iter().enumerate() {
                let p = eg.add(TensorLang::Project(k as u32, [id]));
                class_of.insert(o, p);
                names.push((p, node.name.clone()));
            }
            names.push((id, node.name.clone()));
        }
    }
    let roots = g
        .outputs()
        .iter()
        .map(|v| class_of.get(v).copied().ok_or_else(|| OptError::Graph("graph output undefined".into())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut uses: HashMap<ValueId, usize> = HashMap::new();
    for v in g.nodes().iter().flat_map(|n| n.inputs.iter()).chain(g.outputs()) {
        *uses.entry(*v).or_default() += 1;
    }
    // `x · sigmoid(x)` (swish as exporters write it) reads `x` once as SiLU
    // (`mul-sigmoid-as-silu`): the sigmoid is no second reader when the product is its only one.
    for n in g.nodes() {
        if let (ir::Op::Binary(ir::BinaryOp::Mul), [a, b]) = (&n.op, n.inputs.as_slice()) {
            for (x, s) in [(*a, *b), (*b, *a)] {
                let sig_of_x = match g.value(s).producer {
                    Producer::Node(p, _) => g.nodes().get(p.0).is_some_and(|p| {
                        matches!(p.op, ir::Op::Unary(ir::UnaryOp::Sigmoid)) && p.inputs.as_slice() == [x]
                    }),
                    _ => false,
                };
                if sig_of_x && uses.get(&s) == Some(&1) {
                    if let Some(u) = uses.get_mut(&x) {
                        *u = u.saturating_sub(1);
                    }
                    break;
                }
            }
        }
    }
    eg.analysis.shared = uses.iter().filter(|(_, &n)| n > 1).filter_map(|(v, _)| class_of.get(v).copied()).collect();
    eg.analysis.shared.extend(&roots);
    eg.rebuild();
    Ok(Loaded { egraph: eg, roots, names, weight_names })
}

/// Rebuilds a graph from one chosen node per class, starting at `roots`.
pub fn rebuild(
    original: &Graph,
    loaded: &Loaded,
    egraph: &TensorEGraph,
    choice: &HashMap<Id, TensorLang>,
) -> Result<Graph, OptError> {
    let mut g = Graph::new(original.name.clone());
    let mut names: HashMap<Id, String> = HashMap::new();
    for (id, name) in &loaded.names {
        names.entry(egraph.find(*id)).or_insert_with(|| name.clone());
    }
    let mut inputs = Vec::new();
    for &v in original.inputs() {
        let val = original.value(v);
        inputs.push(g.add_input(val.name.clone(), val.ty.clone()));
    }
    let mut b = Builder {
        egraph,
        choice,
        names,
        inputs,
        loaded,
        memo: HashMap::new(),
        visiting: HashSet::new(),
        g,
        fresh: 0,
        used: HashSet::new(),
    };
    let mut outs = Vec::new();
    for &r in &loaded.roots {
        let vals = b.value(egraph.find(r))?;
        outs.push(vals.first().copied().ok_or_else(|| OptError::Graph("root has no value".into()))?);
    }
    let mut g = b.g;
    for (&o, &orig) in outs.iter().zip(original.outputs()) {
        if matches!(g.value(o).producer, Producer::Node(..)) {
            g.rename_value(o, original.value(orig).name.clone());
        }
    }
    g.set_outputs(outs);
    Ok(g)
}

struct Builder<'a> {
    egraph: &'a TensorEGraph,
    choice: &'a HashMap<Id, TensorLang>,
    names: HashMap<Id, String>,
    inputs: Vec<ValueId>,
    loaded: &'a Loaded,
    memo: HashMap<Id, Vec<ValueId>>,
    visiting: HashSet<Id>,
    g: Graph,
    fresh: usize,
    /// Names given to the nodes rules made.
    used: HashSet<String>,
}

impl Builder<'_> {
    /// The values of a class, building its chosen node and everything below it (iteratively,
    /// so deep graphs cannot exhaust the stack).
    fn value(&mut self, root: Id) -> Result<Vec<ValueId>, OptError> {
        let mut stack = vec![(self.egraph.find(root), false)];
        while let Some((id, expanded)) = stack.pop() {
            let id = self.egraph.find(id);
            if self.memo.contains_key(&id) {
                continue;
            }
            let node =
                self.choice.get(&id).ok_or_else(|| OptError::Graph(format!("no node chosen for class {id}")))?.clone();
            if !expanded {
                if !self.visiting.insert(id) {
                    return Err(OptError::Graph(format!("extraction chose a cycle through class {id}")));
                }
                stack.push((id, true));
                stack.extend(node.children().iter().map(|&c| (c, false)));
                continue;
            }
            let vals = self.build(id, &node)?;
            self.visiting.remove(&id);
            self.memo.insert(id, vals);
        }
        self.memo.get(&self.egraph.find(root)).cloned().ok_or_else(|| OptError::Graph("root not built".into()))
    }

    /// Adds one chosen node whose operands are all built.
    fn build(&mut self, id: Id, node: &TensorLang) -> Result<Vec<ValueId>, OptError> {
        let built = |b: &Self, c: Id| -> Result<Vec<ValueId>, OptError> {
            b.memo.get(&b.egraph.find(c)).cloned().ok_or_else(|| OptError::Graph(format!("class {c} not built")))
        };
        Ok(match node {
            TensorLang::Input(i) => {
                vec![*self.inputs.get(*i as usize).ok_or_else(|| OptError::Graph(format!("input {i} out of range")))?]
            }
            TensorLang::Weight(k) => {
                let t = self
                    .egraph
                    .analysis
                    .weights
                    .get(*k as usize)
                    .ok_or_else(|| OptError::Graph(format!("weight {k} out of range")))?;
                let name = match self.loaded.weight_names.get(k) {
                    Some(n) => n.clone(),
                    None => {
                        self.fresh += 1;
                        format!("const_{}", self.fresh)
                    }
                };
                vec![self.g.add_constant(name, t.clone())]
            }
            TensorLang::Apply(op, children) => {
                let mut ins = Vec::with_capacity(children.len());
                for &c in children {
                    let v = built(self, c)?;
                    ins.push(*v.first().ok_or_else(|| OptError::Graph("operand without value".into()))?);
                }
                let op = self
                    .egraph
                    .analysis
                    .ops
                    .get(*op as usize)
                    .ok_or_else(|| OptError::Graph(format!("op {op} out of range")))?
                    .clone();
                let name = match self.names.get(&id) {
                    Some(n) => n.clone(),
                    // A node a rule made is named after the value it derives from (a folded
                    // batch norm's scaled kernel: `conv/kernel/mul`), so folded weights keep
                    // their layer's name.
                    None => {
                        let base = ins.first().map(|&v| self.g.value(v).name.clone()).unwrap_or_default();
                        let base = base.strip_prefix('@').unwrap_or(&base).to_string();
                        let stem = format!("{base}/{}", op.name().to_lowercase());
                        let mut name = stem.clone();
                        while !self.used.insert(name.clone()) {
                            self.fresh += 1;
                            name = format!("{stem}_{}", self.fresh);
                        }
                        name
                    }
                };
                self.g.add_node(name, op, &ins)?
            }
            TensorLang::Project(k, [c]) => {
                let v = built(self, *c)?;
                vec![*v.get(*k as usize).ok_or_else(|| OptError::Graph(format!("output {k} missing")))?]
            }
        })
    }
}

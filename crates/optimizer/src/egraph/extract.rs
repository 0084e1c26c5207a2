//! DAG-aware greedy extraction: each class keeps its cheapest node together with the set of
//! classes that node's solution uses, and a node's cost sums that set once, so a subgraph
//! shared by two consumers is not counted twice (the tree cost of egg's `Extractor` would).

use super::analysis::{class_type, TensorEGraph};
use super::cost::op_cost;
use super::lang::TensorLang;
use egg::Id;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

struct Best {
    node: TensorLang,
    total: f64,
    /// Every class in this solution with its own node's cost.
    uses: Rc<BTreeMap<Id, f64>>,
}

/// The chosen node of every reachable class and the DAG cost of the roots.
pub struct Extraction {
    pub choice: HashMap<Id, TensorLang>,
    pub cost: f64,
}

/// The cost of one e-node, given its children's types.
pub fn node_cost(eg: &TensorEGraph, id: Id, node: &TensorLang) -> f64 {
    match node {
        TensorLang::Input(_) | TensorLang::Weight(_) | TensorLang::Project(..) => 0.0,
        TensorLang::Apply(op, children) => {
            if eg[id].data.weight_only {
                return 0.0;
            }
            let Some(op) = eg.analysis.ops.get(*op as usize) else { return f64::INFINITY };
            let mut ins = Vec::with_capacity(children.len());
            for &c in children {
                match class_type(eg, c) {
                    Some(t) => ins.push(t.clone()),
                    None => return f64::INFINITY,
                }
            }
            op_cost(op, &ins, &eg[id].data.tys)
        }
    }
}

/// Picks one node per class, minimising the DAG cost of everything reachable from `roots`.
/// A worklist revisits a class's parents whenever its best solution improves, so the work
/// follows the graph's depth in one sweep rather than in rounds.
pub fn extract(eg: &TensorEGraph, roots: &[Id]) -> Extraction {
    let mut best: HashMap<Id, Best> = HashMap::new();
    let mut queue: VecDeque<Id> = eg.classes().map(|c| c.id).collect();
    let mut queued: HashSet<Id> = queue.iter().copied().collect();
    // Costs only decrease, so this bound is never reached on a sane e-graph; it guards the loop.
    let mut budget = 64 * eg.total_number_of_nodes() + 1024;
    while let Some(cid) = queue.pop_front() {
        queued.remove(&cid);
        if budget == 0 {
            break;
        }
        budget -= 1;
        if eg[cid].data.tys.is_empty() {
            continue;
        }
        let mut improved = false;
        for node in &eg[cid].nodes {
            let own = node_cost(eg, cid, node);
            if !own.is_finite() {
                continue;
            }
            let mut uses: BTreeMap<Id, f64> = BTreeMap::new();
            let mut ready = true;
            for &c in node.children() {
                match best.get(&eg.find(c)) {
                    Some(b) => uses.extend(b.uses.iter().map(|(k, v)| (*k, *v))),
                    None => {
                        ready = false;
                        break;
                    }
                }
            }
            if !ready || uses.contains_key(&cid) {
                continue;
            }
            uses.insert(cid, own);
            let total: f64 = uses.values().sum();
            let better = match best.get(&cid) {
                None => true,
                Some(b) => total < b.total - 1e-9 * b.total.abs().max(1.0),
            };
            if better {
                best.insert(cid, Best { node: node.clone(), total, uses: Rc::new(uses) });
                improved = true;
            }
        }
        if improved {
            for p in eg[cid].parents() {
                let pc = eg.find(p);
                if queued.insert(pc) {
                    queue.push_back(pc);
                }
            }
        }
    }
    let mut all: BTreeMap<Id, f64> = BTreeMap::new();
    for r in roots {
        if let Some(b) = best.get(&eg.find(*r)) {
            all.extend(b.uses.iter().map(|(k, v)| (*k, *v)));
        }
    }
    let cost = all.values().sum();
    let choice = best.into_iter().map(|(k, b)| (k, b.node)).collect();
    Extraction { choice, cost }
}

use egg::Language as _;

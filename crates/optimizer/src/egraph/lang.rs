//! The tensor language: leaves for graph inputs and weights, and one node kind that applies an
//! interned IR op to e-classes.

use egg::{Id, Language};

/// An e-node. Ops and weights are interned in the [`super::TensorAnalysis`] tables, so nodes
/// stay small, hashable and totally ordered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TensorLang {
    /// The i-th graph input.
    Input(u32),
    /// The i-th interned weight tensor.
    Weight(u32),
    /// An interned op applied to its operands.
    Apply(u32, Vec<Id>),
    /// Output `k` of a multi-output op.
    Project(u32, [Id; 1]),
}

/// What makes two nodes the same operator, regardless of children.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Discriminant {
    Input(u32),
    Weight(u32),
    Apply(u32, usize),
    Project(u32),
}

impl Language for TensorLang {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match self {
            TensorLang::Input(i) => Discriminant::Input(*i),
            TensorLang::Weight(i) => Discriminant::Weight(*i),
            TensorLang::Apply(op, c) => Discriminant::Apply(*op, c.len()),
            TensorLang::Project(k, _) => Discriminant::Project(*k),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            TensorLang::Input(_) | TensorLang::Weight(_) => &[],
            TensorLang::Apply(_, c) => c,
            TensorLang::Project(_, c) => c,
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            TensorLang::Input(_) | TensorLang::Weight(_) => &mut [],
            TensorLang::Apply(_, c) => c,
            TensorLang::Project(_, c) => c,
        }
    }
}

//! Metrics, resolved the way Keras resolves the names given to `compile`.

use super::error::{invalid, FitError};
use crate::ir::Tensor;
use crate::runtime::training::Loss;

/// A metric, resolved the way Keras resolves the names given to `compile`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Metric {
    SparseCategoricalAccuracy,
    CategoricalAccuracy,
    BinaryAccuracy,
    MeanAbsoluteError,
    MeanSquaredError,
}

impl Metric {
    /// The metric Keras resolves `name` to for an output with this loss and class count.
    pub(crate) fn resolve(name: &str, loss: Loss, classes: usize) -> Result<Metric, FitError> {
        Ok(match name {
            "accuracy" | "acc" => match loss {
                Loss::SparseCategoricalCrossentropy { .. } => Metric::SparseCategoricalAccuracy,
                Loss::BinaryCrossentropy { .. } => Metric::BinaryAccuracy,
                _ if classes == 1 => Metric::BinaryAccuracy,
                _ => Metric::CategoricalAccuracy,
            },
            "sparse_categorical_accuracy" => Metric::SparseCategoricalAccuracy,
            "categorical_accuracy" => Metric::CategoricalAccuracy,
            "binary_accuracy" => Metric::BinaryAccuracy,
            "mae" | "mean_absolute_error" => Metric::MeanAbsoluteError,
            "mse" | "mean_squared_error" => Metric::MeanSquaredError,
            other => return Err(invalid(format!("metric '{other}' is not implemented yet (accuracy, mae, mse are)"))),
        })
    }

    /// The metric summed over the batch's samples.
    pub(crate) fn sum(&self, pred: &Tensor, labels: &Tensor) -> f64 {
        let p = pred.to_f64_vec();
        let y = labels.to_f64_vec();
        let c = pred.shape().last().copied().unwrap_or(1).max(1);
        let argmax = |row: &[f64]| {
            row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
        };
        match self {
            Metric::SparseCategoricalAccuracy => {
                p.chunks(c).zip(&y).filter(|(row, &lab)| argmax(row) as f64 == lab).count() as f64
            }
            Metric::CategoricalAccuracy => {
                p.chunks(c).zip(y.chunks(c)).filter(|(a, b)| argmax(a) == argmax(b)).count() as f64
            }
            Metric::BinaryAccuracy => {
                let hits = p.iter().zip(&y).filter(|(&a, &b)| f64::from(u8::from(a > 0.5)) == b).count() as f64;
                hits / c as f64
            }
            Metric::MeanAbsoluteError => p.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f64>() / c as f64,
            Metric::MeanSquaredError => p.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / c as f64,
        }
    }
}

//! What a run records: Keras's `history.history`, and the early stopping that watches it.

/// What Keras's `history.history` holds (`loss`, each metric, their `val_` forms, per epoch),
/// plus `step_loss`: each batch's loss before its update.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(key, values per epoch)` in Keras's order.
    pub series: Vec<(String, Vec<f64>)>,
    pub step_loss: Vec<f64>,
}

impl History {
    /// The values of one key.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.series.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    pub(crate) fn push(&mut self, key: &str, v: f64) {
        match self.series.iter_mut().find(|(k, _)| k == key) {
            Some((_, vals)) => vals.push(v),
            None => self.series.push((key.to_string(), vec![v])),
        }
    }

    /// Keras's `history.history` with `step_loss`, as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut j = serde_json::Map::new();
        for (k, v) in &self.series {
            j.insert(k.clone(), serde_json::json!(v));
        }
        j.insert("step_loss".into(), serde_json::json!(self.step_loss));
        serde_json::Value::Object(j)
    }
}

/// Keras's EarlyStopping(patience) on the monitored loss (min_delta 0, no best-weight restore).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EarlyStopping {
    pub(crate) patience: Option<usize>,
    pub(crate) best: f64,
    pub(crate) wait: usize,
    pub(crate) stopped: bool,
}

impl EarlyStopping {
    pub(crate) fn new(patience: Option<usize>) -> EarlyStopping {
        EarlyStopping { patience, best: f64::INFINITY, wait: 0, stopped: false }
    }

    pub(crate) fn update(&mut self, value: f64) {
        let Some(p) = self.patience else { return };
        if value < self.best {
            self.best = value;
            self.wait = 0;
        } else {
            self.wait += 1;
            if self.wait >= p {
                self.stopped = true;
            }
        }
    }
}

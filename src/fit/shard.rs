//! The batches of an epoch, and a worker's shards of the data (`--strategy multi-worker`).
//!
//! Every worker draws the same seeded shuffle and cuts each global batch into the same replica
//! shares; a worker then needs only its replicas' shares of each batch. At the start of an
//! epoch it reads those rows of the data file in one pass ([`Source::read_rows`]) and keeps
//! no other: its memory holds its shard and the shuffle order, never the whole data set. The
//! validation data is cut the same way, once.

use super::data::{self, Chosen, Source};
use super::error::{invalid, FitError};
use crate::ir::{DType, Shape, Tensor};
use std::collections::HashMap;

/// The batches of one pass: the rows each takes of the data held (in order), and each global
/// batch's size (the rows held are a worker's share of it, or all of it).
pub(crate) struct Batches {
    rows: Vec<usize>,
    ends: Vec<usize>,
    sizes: Vec<usize>,
}

impl Batches {
    /// Batches of `bs` rows of `order`, all held.
    pub(crate) fn whole(order: Vec<usize>, bs: usize) -> Batches {
        let bs = bs.max(1);
        let n = order.len();
        let ends: Vec<usize> = (1..=n.div_ceil(bs)).map(|b| (b * bs).min(n)).collect();
        let sizes = ends.iter().scan(0, |s, &e| Some(e - std::mem::replace(s, e))).collect();
        Batches { rows: order, ends, sizes }
    }

    /// Batches of `bs` rows of `order` of which this process holds its replicas' shares:
    /// replicas `first..first + local` of `total`. Gives the batches (over the rows held, in
    /// order) and the rows of `order` to hold.
    pub(crate) fn local(order: &[usize], bs: usize, first: usize, local: usize, total: usize) -> (Batches, Vec<usize>) {
        let mut need = Vec::new();
        let (mut ends, mut sizes) = (Vec::new(), Vec::new());
        for chunk in order.chunks(bs.max(1)) {
            let cut = crate::runtime::strategy::shares(chunk.len(), total);
            let (lo, hi) = (cut[first].start, cut[first + local - 1].end);
            need.extend_from_slice(&chunk[lo..hi]);
            ends.push(need.len());
            sizes.push(chunk.len());
        }
        (Batches { rows: (0..need.len()).collect(), ends, sizes }, need)
    }

    /// How many batches.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Batch `b`: the rows it takes of the data held, and the global batch's size.
    pub(crate) fn get(&self, b: usize) -> (&[usize], usize) {
        let start = b.checked_sub(1).map_or(0, |p| self.ends[p]);
        (&self.rows[start..self.ends[b]], self.sizes[b])
    }
}

/// Inputs and labels held, and the batches over them.
pub(crate) type Held = (Vec<Tensor>, Vec<Tensor>, Batches);

/// Where the validation data is: given arrays of so many rows, or the last rows of the
/// training arrays (`--validation-split`), from a row on.
enum Val {
    Given(usize),
    Split { start: usize, rows: usize },
}

/// A worker's view of the data: which arrays it takes, how many samples there are in all, and
/// the shard it read for the last epoch.
pub(crate) struct Shards<'a> {
    what: String,
    source: Source<'a>,
    chosen: Chosen,
    /// Training samples, across all workers.
    pub(crate) n: usize,
    val: Option<Val>,
    /// The rows held for the last epoch, and its arrays (kept while the next epoch needs the same
    /// rows: without shuffling).
    last: Option<(Vec<usize>, Vec<Tensor>, Vec<Tensor>)>,
}

impl<'a> Shards<'a> {
    /// The arrays the model takes, from the files' headers alone; their samples counted.
    pub(crate) fn open(
        what: String,
        source: Source<'a>,
        inputs: &[(String, DType)],
        outputs: &[(String, DType, Shape)],
        validation_split: Option<f32>,
    ) -> Result<Shards<'a>, FitError> {
        let counts = source.row_counts()?;
        let in_names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        let out_names: Vec<&str> = outputs.iter().map(|(n, _, _)| n.as_str()).collect();
        let chosen = data::choose(&what, &|k| counts.contains_key(k), &in_names, &out_names)?;
        let rows = |names: &[String]| -> Result<usize, FitError> {
            let n = names.first().and_then(|k| counts.get(k)).copied().unwrap_or(0);
            for k in names {
                let m = counts.get(k).copied().unwrap_or(0);
                if n == 0 || m != n {
                    return Err(invalid(format!("{what}: arrays of {n} and {m} samples")));
                }
            }
            Ok(n)
        };
        let all = rows(&[chosen.x.clone(), chosen.y.clone()].concat())?;
        let (n, val) = match (&chosen.val, validation_split) {
            (Some((x, y)), _) => (all, Some(Val::Given(rows(&[x.clone(), y.clone()].concat())?))),
            (None, Some(f)) if f != 0.0 => {
                let nv = data::split_off(all, f)?;
                (all - nv, Some(Val::Split { start: all - nv, rows: nv }))
            }
            _ => (all, None),
        };
        Ok(Shards { what, source, chosen, n, val, last: None })
    }

    /// Reads the rows `need` of the arrays `x` and `y` (offset by `start`) and prepares them as
    /// the model takes them.
    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        model: &crate::Model,
        x: &[String],
        y: &[String],
        need: &[usize],
        start: usize,
        inputs: &[(String, DType)],
        outputs: &[(String, DType, Shape)],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>), FitError> {
        let idx: Vec<usize> = need.iter().map(|&i| i + start).collect();
        let pick = |name: &str| x.iter().chain(y).any(|k| k == name).then(|| idx.clone());
        let raw = self.source.read_rows(&pick)?;
        let mut arrays: HashMap<String, Tensor> = data::through_host(model, raw)?;
        // Moved out, not copied: the shard is held once.
        let mut take = |names: &[String]| -> Result<Vec<Tensor>, FitError> {
            names
                .iter()
                .map(|k| arrays.remove(k).ok_or_else(|| invalid(format!("{}: no array {k}", self.what))))
                .collect()
        };
        let (xs, ys) = (take(x)?, take(y)?);
        data::prepare(&self.what, xs, ys, inputs, outputs, true)
    }

    /// This worker's rows of an epoch whose samples come in `order`: its inputs and labels, and
    /// the epoch's batches over them (replicas `first..first + local` of `total`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn epoch(
        &mut self,
        model: &crate::Model,
        order: &[usize],
        bs: usize,
        (first, local, total): (usize, usize, usize),
        inputs: &[(String, DType)],
        outputs: &[(String, DType, Shape)],
    ) -> Result<(&[Tensor], &[Tensor], Batches), FitError> {
        let (batches, need) = Batches::local(order, bs, first, local, total);
        if self.last.as_ref().is_none_or(|(held, _, _)| *held != need) {
            // The last epoch's shard goes before this one's is read.
            self.last = None;
            let (x, y) = self.read(model, &self.chosen.x, &self.chosen.y, &need, 0, inputs, outputs)?;
            self.last = Some((need, x, y));
        }
        match &self.last {
            Some((_, x, y)) => Ok((x, y, batches)),
            None => Err(invalid("no shard was read")),
        }
    }

    /// This worker's rows of the validation data (in batches of `bs`), if there is any.
    pub(crate) fn validation(
        &self,
        model: &crate::Model,
        bs: usize,
        span: (usize, usize, usize),
        inputs: &[(String, DType)],
        outputs: &[(String, DType, Shape)],
    ) -> Result<Option<Held>, FitError> {
        let (first, local, total) = span;
        let (rows, start, names) = match (&self.val, &self.chosen.val) {
            (None, _) => return Ok(None),
            (Some(Val::Given(rows)), Some((x, y))) => (*rows, 0, (x, y)),
            (Some(Val::Split { start, rows }), _) => (*rows, *start, (&self.chosen.x, &self.chosen.y)),
            (Some(Val::Given(_)), None) => return Err(invalid("validation arrays without their names")),
        };
        let order: Vec<usize> = (0..rows).collect();
        let (batches, need) = Batches::local(&order, bs, first, local, total);
        let (x, y) = self.read(model, names.0, names.1, &need, start, inputs, outputs)?;
        Ok(Some((x, y, batches)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_every_batch_is_held_by_exactly_one_worker() {
        let order: Vec<usize> = (0..23).rev().collect();
        let whole = Batches::whole(order.clone(), 5);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole.get(4), (&order[20..], 3));
        // Three workers of two replicas each (six in all), batches of 5: the last of 3 rows.
        let mut seen = Vec::new();
        for w in 0..3 {
            let (b, need) = Batches::local(&order, 5, 2 * w, 2, 6);
            assert_eq!(b.len(), 5);
            for k in 0..b.len() {
                let (rows, size) = b.get(k);
                assert_eq!(size, whole.get(k).1);
                seen.extend(rows.iter().map(|&r| (k, need[r])));
            }
        }
        seen.sort_unstable();
        let mut want: Vec<(usize, usize)> = (0..5).flat_map(|k| whole.get(k).0.iter().map(move |&r| (k, r))).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        // The third worker holds no row of the last batch (3 rows, 6 replicas).
        let (b, _) = Batches::local(&order, 5, 4, 2, 6);
        assert!(b.get(4).0.is_empty());
    }
}

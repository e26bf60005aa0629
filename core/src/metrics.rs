//! Metrics as plain values: the state machines count and report families of labelled
//! series; a runtime renders them (Prometheus text through `prometheus-client`) and serves
//! them. Keeping the names, labels and values here lets the simulator and the unit tests
//! read exactly what an operator's scrape would show.

use std::collections::BTreeMap;

/// What a family measures, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (Prometheus adds `_total` to its samples).
    Counter,
    /// A value now.
    Gauge,
    /// Observations in fixed buckets.
    Histogram,
}

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A counter's or an integer gauge's value.
    Int(i64),
    /// Observations: their sum, and per bucket (upper bound, count in that bucket alone);
    /// the last bucket's bound is `f64::MAX` (`+Inf`).
    Histogram {
        /// Sum of everything observed.
        sum: f64,
        /// Per bucket, its bound and what fell in it (not cumulative).
        buckets: Vec<(f64, u64)>,
    },
}

impl MetricValue {
    /// The integer value, if it is one.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(value) => Some(*value),
            Self::Histogram { .. } => None,
        }
    }

    /// A histogram's observation count.
    #[must_use]
    pub fn count(&self) -> Option<u64> {
        match self {
            Self::Int(_) => None,
            Self::Histogram { buckets, .. } => Some(buckets.iter().map(|(_, n)| n).sum()),
        }
    }
}

/// One labelled series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label names and values, in the order they are shown.
    pub labels: Vec<(&'static str, String)>,
    /// Its value.
    pub value: MetricValue,
}

impl Series {
    /// The value of label `name`.
    #[must_use]
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A named family of series.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The name, without `_total` for a counter.
    pub name: &'static str,
    /// One line saying what it is.
    pub help: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Its series.
    pub series: Vec<Series>,
}

impl MetricFamily {
    /// An empty family.
    #[must_use]
    pub fn new(name: &'static str, help: &'static str, kind: MetricKind) -> Self {
        Self { name, help, kind, series: Vec::new() }
    }

    /// Add a series.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: MetricValue) {
        self.series.push(Series { labels, value });
    }

    /// The series whose labels include every pair of `wanted`.
    pub fn find<'a>(&'a self, wanted: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| wanted.iter().all(|(name, value)| s.label(name) == Some(*value)))
    }
}

/// Observations counted into fixed buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then one for everything above the last.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending upper bounds).
    #[must_use]
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    /// Count one observation.
    pub fn observe(&mut self, value: f64) {
        let bucket = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum += value;
    }

    /// Its value as a series shows it.
    #[must_use]
    pub fn value(&self) -> MetricValue {
        let bounds = self.bounds.iter().copied().chain(core::iter::once(f64::MAX));
        MetricValue::Histogram { sum: self.sum, buckets: bounds.zip(self.counts.iter().copied()).collect() }
    }
}

/// Counters keyed by their labels' values, bounded: once `max` keys exist, new keys are
/// counted under one overflow key instead, so a client inventing names cannot grow it
/// without limit.
#[derive(Debug, Clone)]
pub struct Keyed<K: Ord, V> {
    map: BTreeMap<K, V>,
    max: usize,
    overflow: K,
}

impl<K: Ord + Clone, V: Default> Keyed<K, V> {
    /// At most `max` keys; beyond them, `overflow` takes the counts.
    #[must_use]
    pub fn new(max: usize, overflow: K) -> Self {
        Self { map: BTreeMap::new(), max, overflow }
    }

    /// The value under `key` (or the overflow key's, when full).
    pub fn entry(&mut self, key: K) -> &mut V {
        let key = if self.map.len() >= self.max && !self.map.contains_key(&key) {
            self.overflow.clone()
        } else {
            key
        };
        self.map.entry(key).or_default()
    }

    /// The value under `key`, if counted.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Drop the keys `keep` refuses.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.map.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it() {
        let mut h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 1.5, 10.0, 11.0, 1e9] {
            h.observe(v);
        }
        let MetricValue::Histogram { sum, buckets } = h.value() else { panic!("a histogram") };
        assert_eq!(buckets, vec![(1.0, 2), (10.0, 2), (f64::MAX, 2)]);
        assert!((sum - (0.5 + 1.0 + 1.5 + 10.0 + 11.0 + 1e9)).abs() < 1e-6);
        assert_eq!(h.value().count(), Some(6));
    }

    #[test]
    fn keyed_counters_fold_new_keys_into_the_overflow_key_once_full() {
        let mut keyed: Keyed<String, u64> = Keyed::new(2, "_other".into());
        *keyed.entry("a".into()) += 1;
        *keyed.entry("b".into()) += 1;
        *keyed.entry("c".into()) += 5;
        *keyed.entry("a".into()) += 1;
        let all: Vec<_> = keyed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(all, vec![("_other", 5), ("a", 2), ("b", 1)]);
    }
}

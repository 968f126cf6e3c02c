//! Latency samples, percentiles and medians.
//!
//! Every completed request records its latency (and, for downloads, its time to first byte) as
//! nanoseconds in a [`Latencies`]. Workers keep their own and the run merges them at the end, so
//! the hot path never shares a cache line. Percentiles are exact (nearest rank over all samples):
//! at the rates we measure (≤ a few hundred thousand requests per run) sorting is cheap, and an
//! exact p999 is easier to trust than a histogram bucket.

use serde::Serialize;
use std::time::Duration;

/// Latency samples of one kind (request latency, time to first byte…), in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    samples_ns: Vec<u64>,
}

impl Latencies {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        self.samples_ns
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Moves every sample of `other` into `self`.
    pub fn merge(&mut self, mut other: Latencies) {
        self.samples_ns.append(&mut other.samples_ns);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples_ns.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples_ns.is_empty()
    }

    /// min / mean / p50 / p99 / p999 / max in milliseconds (all zero when empty).
    pub fn summary(&self) -> LatencySummary {
        let mut s = self.samples_ns.clone();
        s.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let mean = if s.is_empty() {
            0.0
        } else {
            s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64 / 1e6
        };
        LatencySummary {
            count: s.len() as u64,
            min_ms: ms(s.first().copied().unwrap_or(0)),
            mean_ms: mean,
            p50_ms: ms(percentile(&s, 0.50)),
            p99_ms: ms(percentile(&s, 0.99)),
            p999_ms: ms(percentile(&s, 0.999)),
            max_ms: ms(s.last().copied().unwrap_or(0)),
        }
    }
}

/// What [`Latencies::summary`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample, ms.
    pub min_ms: f64,
    /// Arithmetic mean, ms.
    pub mean_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest sample, ms.
    pub max_ms: f64,
}

/// Nearest-rank percentile of ascending `sorted` (`q` in 0..=1); 0 when empty.
///
/// The nearest rank is `ceil(q·n)`, so p50 of `[1, 2, 3, 4]` is 2 and p99 of 100 samples is
/// the 99th smallest.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Median of `values` (mean of the two middle values for an even count); `None` when empty or
/// when a value is NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Bytes per second as MB/s (10⁶ bytes).
pub fn mb_per_second(bytes: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s == 0.0 {
        0.0
    } else {
        bytes as f64 / 1e6 / s
    }
}

/// Bytes as GiB (2³⁰ bytes).
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let cases: &[(&[u64], f64, u64)] = &[
            (&[], 0.5, 0),
            (&[7], 0.0, 7),
            (&[7], 0.5, 7),
            (&[7], 1.0, 7),
            (&[1, 2, 3, 4], 0.5, 2),
            (&[1, 2, 3, 4], 0.75, 3),
            (&[1, 2, 3, 4], 0.76, 4),
            (&[1, 2, 3, 4], 1.0, 4),
            (&[1, 2, 3, 4], 0.0, 1),
        ];
        for (data, q, want) in cases {
            assert_eq!(percentile(data, *q), *want, "{data:?} q={q}");
        }
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 0.99), 99);
        assert_eq!(percentile(&hundred, 0.999), 100);
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 0.999), 999);
        assert_eq!(percentile(&thousand, 0.5), 500);
    }

    #[test]
    fn summary_of_samples_in_any_order() {
        let mut l = Latencies::new();
        for ms in [5u64, 1, 4, 2, 3] {
            l.record(Duration::from_millis(ms));
        }
        let mut other = Latencies::new();
        other.record(Duration::from_millis(10));
        l.merge(other);
        assert_eq!(l.len(), 6);
        let s = l.summary();
        assert_eq!(s.count, 6);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 10.0);
        assert_eq!(s.p50_ms, 3.0);
        assert_eq!(s.p99_ms, 10.0);
        assert!((s.mean_ms - 25.0 / 6.0).abs() < 1e-9);
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn rates() {
        assert_eq!(mb_per_second(2_000_000, Duration::from_secs(2)), 1.0);
        assert_eq!(mb_per_second(1, Duration::ZERO), 0.0);
        assert_eq!(gib(3 << 30), 3.0);
    }
}

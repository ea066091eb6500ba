//! A Prometheus histogram rendered from the bucket counts a coordinator
//! already keeps ([`Buckets`]: queue waits, upstream latency, served ages).
//!
//! `/metrics` is rendered from stats snapshots (the Worker's come from its
//! Durable Objects as JSON), not from live instruments, so the
//! `prometheus-client` histogram, which counts its own observations, does
//! not fit: this one encodes the counts it is given, as the same
//! `_bucket{le=...}`, `_sum` and `_count` series.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use syncoord_core::stats::{Bounds, Buckets};

/// One histogram series, set once per scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct BucketHistogram(Arc<Mutex<Encoded>>);

/// What the encoder takes: the sum, the count, and `(bound, count)` per
/// bucket, whatever the bounds.
#[derive(Debug, Default)]
struct Encoded {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl BucketHistogram {
    /// Takes `counts` as this series' value.
    pub(crate) fn set<B: Bounds>(&self, counts: &Buckets<B>) {
        // A panic while holding this lock left nothing half-written worth
        // refusing: the value is replaced whole.
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *v = Encoded {
            sum: counts.sum_secs,
            count: counts.count(),
            buckets: counts.buckets(),
        };
    }
}

impl TypedMetric for BucketHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BucketHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        encoder.encode_histogram::<NoLabelSet>(v.sum, v.count, &v.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

//! A Prometheus histogram rendered from the bucket counts a coordinator
//! already keeps ([`DurationBuckets`]).
//!
//! `/metrics` is rendered from stats snapshots (the Worker's come from its
//! Durable Objects as JSON), not from live instruments, so the
//! `prometheus-client` histogram, which counts its own observations, does
//! not fit: this one encodes the counts it is given, as the same
//! `_bucket{le=...}`, `_sum` and `_count` series.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use syncoord_core::stats::DurationBuckets;

/// One histogram series, set once per scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct BucketHistogram(Arc<Mutex<DurationBuckets>>);

impl BucketHistogram {
    /// Takes `counts` as this series' value.
    pub(crate) fn set(&self, counts: &DurationBuckets) {
        // A panic while holding this lock left nothing half-written worth
        // refusing: the value is replaced whole.
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.clone_from(counts);
    }
}

impl TypedMetric for BucketHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BucketHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        encoder.encode_histogram::<NoLabelSet>(v.sum_secs, v.count(), &v.buckets(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

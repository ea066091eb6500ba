//! The freshness families of `/metrics`: how old the answers served were
//! (a histogram per upstream and source, so that `histogram_quantile`
//! over `rate()` shows the last minutes and several daemons add up), and
//! the refresh-ahead calls upstream stopped, by reason.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use syncoord_core::stats::StatsSnapshot;
use syncoord_core::RefreshStopReason;

use super::{labels, Families, Labels};
use crate::histogram::BucketHistogram;

pub(super) struct FreshnessFamilies {
    served_age: Family<Labels, BucketHistogram>,
    refreshes_stopped: Family<Labels, Counter>,
}

impl FreshnessFamilies {
    pub(super) fn new(m: &mut Families) -> Self {
        FreshnessFamilies {
            served_age: m.histogram(
                "served_age_seconds",
                "Age of the answers served, by source (hit: a fresh cache entry; stale: an expired one; upstream: an answer from upstream, own call or coalesced, age 0).",
            ),
            refreshes_stopped: m.counter(
                "upstream_refreshes_stopped",
                "Refresh-ahead calls upstream stopped, by reason (rate_limited, server_error, transport: the entry ages until a later refresh; status, not_storable: the key is not refreshed again until a cache hit lends a request).",
            ),
        }
    }

    pub(super) fn record(&self, u: &str, s: &StatsSnapshot) {
        let b = &s.served_age.buckets;
        for (source, counts) in [
            ("hit", &b.hit),
            ("stale", &b.stale),
            ("upstream", &b.upstream),
        ] {
            self.served_age
                .get_or_create(&labels(u, &[("source", source)]))
                .set(counts);
        }
        for reason in RefreshStopReason::ALL {
            self.refreshes_stopped
                .get_or_create(&labels(u, &[("reason", reason.as_str())]))
                .inc_by(s.refresh_stops.get(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::metrics_response;
    use super::super::tests::snapshot;

    #[test]
    fn served_ages_are_a_cumulative_histogram_per_source() {
        let (mut s, h) = snapshot();
        s.served_age.buckets = Default::default();
        for ms in [1_200, 1_400, 1_500, 2_500] {
            s.served_age.buckets.hit.observe(Duration::from_millis(ms));
        }
        s.served_age.buckets.stale.observe(Duration::from_secs(400));
        s.refresh_stops.rate_limited = 4;
        let text = String::from_utf8(metrics_response(&[("a", s, h)]).body).unwrap();
        // Worked by hand from the bounds: 1.2, 1.4 and 1.5 s are at most
        // 1.5 s; 2.5 s is at most 3 s; nothing is at most 1 s.
        for line in [
            "syncoord_served_age_seconds_bucket{le=\"1.0\",upstream=\"a\",source=\"hit\"} 0",
            "syncoord_served_age_seconds_bucket{le=\"1.5\",upstream=\"a\",source=\"hit\"} 3",
            "syncoord_served_age_seconds_bucket{le=\"2.0\",upstream=\"a\",source=\"hit\"} 3",
            "syncoord_served_age_seconds_bucket{le=\"3.0\",upstream=\"a\",source=\"hit\"} 4",
            "syncoord_served_age_seconds_count{upstream=\"a\",source=\"hit\"} 4",
            "syncoord_served_age_seconds_sum{upstream=\"a\",source=\"hit\"} 6.6",
            "syncoord_served_age_seconds_bucket{le=\"300.0\",upstream=\"a\",source=\"stale\"} 0",
            "syncoord_served_age_seconds_bucket{le=\"+Inf\",upstream=\"a\",source=\"stale\"} 1",
            "syncoord_upstream_refreshes_stopped_total{upstream=\"a\",reason=\"rate_limited\"} 4",
            "syncoord_upstream_refreshes_stopped_total{upstream=\"a\",reason=\"not_storable\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("quantile="),
            "no since-start quantiles left:\n{text}"
        );
    }
}

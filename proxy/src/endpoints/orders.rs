//! The order-fate families of `/metrics`: orders that left for upstream
//! and whose answer did not reach their bot (the daemon counts them; see
//! `StatsSnapshot::orders`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use syncoord_core::stats::StatsSnapshot;

use super::{labels, Families, Labels};

pub(super) struct OrderFamilies {
    undelivered: Family<Labels, Counter>,
    late: Family<Labels, Counter>,
}

impl OrderFamilies {
    pub(super) fn new(m: &mut Families) -> Self {
        OrderFamilies {
            undelivered: m.counter(
                "orders_undelivered",
                "Orders that left for upstream and whose answer did not reach their bot, by fate (outcome_unknown: no answer came back; bot_gone: the bot hung up after its order left).",
            ),
            late: m.counter(
                "orders_late_answers",
                "Answers to orders whose bot had hung up, by status (upstream's, or ours when the call failed).",
            ),
        }
    }

    pub(super) fn record(&self, u: &str, s: &StatsSnapshot) {
        let o = &s.orders;
        for (fate, n) in [
            ("outcome_unknown", o.outcome_unknown),
            ("bot_gone", o.bot_gone),
        ] {
            self.undelivered
                .get_or_create(&labels(u, &[("fate", fate)]))
                .inc_by(n);
        }
        for (status, n) in &o.late_answers {
            let status = status.to_string();
            self.late
                .get_or_create(&labels(u, &[("status", &status)]))
                .inc_by(*n);
        }
    }
}

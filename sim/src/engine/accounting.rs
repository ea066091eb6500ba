//! Running counts per route, class and bucket, and how each request ended.

use hdrhistogram::Histogram;
use syncoord_core::config::Keying;
use syncoord_core::{Duration, Instant, Response, Source};

use super::{Sent, Sim, Waiting};
use crate::report::Breakdown;

/// Running counts for one [`Breakdown`].
pub(super) struct Acc {
    pub(super) b: Breakdown,
    pub(super) ages: Histogram<u64>,
    pub(super) waits: Histogram<u64>,
}

impl Acc {
    pub(super) fn new(name: String) -> Self {
        Acc {
            b: Breakdown {
                name,
                ..Breakdown::default()
            },
            ages: syncoord_core::stats::age_histogram(),
            waits: syncoord_core::stats::wait_histogram(),
        }
    }

    pub(super) fn finish(mut self) -> Breakdown {
        self.b.served_age = syncoord_core::stats::age_summary(&self.ages);
        self.b.queue_wait = syncoord_core::stats::wait_summary(&self.waits);
        self.b
    }
}

/// A coordinator bucket's calls, minute by minute.
pub(super) struct BucketAcc {
    pub(super) scope: String,
    pub(super) credential: Option<String>,
    pub(super) budget_per_min: f64,
    pub(super) per_minute: Vec<u32>,
    pub(super) calls: u64,
}

/// How a request ended, for the breakdowns.
pub(super) enum End {
    Answered(Source, Duration),
    Shed,
    Expired,
    Failed,
}

impl Sim<'_> {
    /// One call leaves: its route's count and each of its buckets'.
    pub(super) fn count_call(&mut self, now: Instant, sent: &Sent) {
        self.routes[sent.route].b.upstream_calls += 1;
        if let Some(c) = self.classes.get_mut(sent.class) {
            c.b.upstream_calls += 1;
        }
        let route = self.p.config.route(&sent.method, &sent.path);
        let minute = (now.saturating_duration_since(self.t0).as_secs() / 60) as usize;
        self.last_call = now;
        for scope in &route.scopes {
            let per_credential = self.p.config.keying(*scope) == Some(Keying::Credential);
            let key = (scope.0, per_credential.then_some(sent.credential));
            let b = match self.buckets.get_mut(&key) {
                Some(b) => b,
                None => {
                    let config = self.p.config.config();
                    let Some((name, sc)) = config.scopes.iter().nth(usize::from(scope.0)) else {
                        continue;
                    };
                    self.buckets.entry(key).or_insert(BucketAcc {
                        scope: name.clone(),
                        credential: key.1.map(|c| format!("key:{c}")),
                        budget_per_min: sc.rate * 60.0 / sc.period_secs.max(1e-9) * sc.headroom,
                        per_minute: Vec::new(),
                        calls: 0,
                    })
                }
            };
            b.calls += u64::from(route.cost);
            if b.per_minute.len() <= minute {
                b.per_minute.resize(minute + 1, 0);
            }
            b.per_minute[minute] += route.cost;
        }
    }

    /// Counts how a request ended in its route's and class's breakdowns.
    pub(super) fn record(&mut self, w: &Waiting, end: End) {
        let route = &mut self.routes[w.route];
        let mut accs: Vec<&mut Acc> = vec![route];
        if let Some(c) = self.classes.get_mut(w.class) {
            accs.push(c);
        }
        for acc in accs {
            let b = &mut acc.b;
            match end {
                End::Answered(source, age) => {
                    match source {
                        Source::Cache => b.hit += 1,
                        Source::Stale => b.stale += 1,
                        Source::Coalesced => b.coalesced += 1,
                        Source::Upstream => b.upstream += 1,
                    }
                    let _ = acc.ages.record((age.as_millis() as u64).max(1));
                }
                End::Shed => b.shed += 1,
                End::Expired => b.expired += 1,
                End::Failed => b.failed += 1,
            }
        }
    }

    pub(super) fn answered(&mut self, now: Instant, bot: usize, response: &Response) {
        let credential = self.bots[bot].credential;
        if response.status == 429 {
            self.bot_429s += 1;
        }
        let body = String::from_utf8_lossy(&response.body);
        if body.contains("\"credential\":")
            && !body.contains(&format!("\"credential\":{credential},"))
        {
            self.cross_credential += 1;
        }
        self.bots[bot].pending.pop_front();
        self.next_request(now, bot);
    }

    pub(super) fn failed(&mut self, now: Instant, w: &Waiting, kind: &'static str) {
        let end = match kind {
            "shed" => End::Shed,
            "expired" => End::Expired,
            _ => End::Failed,
        };
        self.record(w, end);
        *self.failures.entry(kind).or_default() += 1;
        if kind == "rate_limited" {
            self.bot_429s += 1;
        }
        let bot = &mut self.bots[w.bot];
        bot.failed = true;
        bot.used.insert((false, w.route), true);
        bot.used.insert((true, w.class), true);
        bot.pending.pop_front();
        self.next_request(now, w.bot);
    }
}

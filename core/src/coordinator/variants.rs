//! Coalescing with `Vary`: reads of one target joined one call before its
//! answer said it varies. Waiters whose headers select another variant
//! than the request upstream saw must not get that answer (RFC 9111 §4.1
//! forbids reusing it for them): each such group gets a call of its own,
//! queued and paced like any other, and every waiter still gets exactly
//! one answer. Once a variant is stored, later reads of the target join
//! only calls for their own variant (see `Cache::select`), so this costs
//! extra calls only while the first answer is on its way.

use super::*;

use crate::vary::{VariantId, Vary};

impl<P: Clone> Coordinator<P> {
    /// Request header names (lower-case) this host's upstream client
    /// replaces with its own value, whatever the bot sent: upstream saw
    /// the same value for every request, so they cannot have selected a
    /// `Vary`'d answer and never tell two variants apart.
    pub fn set_replaced_request_headers(&mut self, names: &'static [&'static str]) {
        self.cache.set_replaced(names);
    }

    /// Takes out of `call` the waiters its answer `response` does not
    /// answer (another variant, or anyone but the sender for `Vary: *`)
    /// and queues a call for each group of them that selects one variant.
    pub(super) fn split_variants(
        &mut self,
        now: Instant,
        call: &mut Call,
        response: &crate::Response,
    ) {
        if call.waiters.is_empty() || call.refresh {
            return;
        }
        let vary = Vary::of(&response.headers);
        if vary == Vary::None {
            return;
        }
        let sent = self.cache.variant_of(&vary, call.sent_headers.fields());
        let mut kept = Vec::with_capacity(call.waiters.len());
        // One group per variant; for `Vary: *`, one per waiter.
        let mut groups: Vec<(Option<VariantId>, Vec<Ticket>)> = Vec::new();
        for t in std::mem::take(&mut call.waiters) {
            let Some(w) = self.waiters.get(&t) else {
                kept.push(t);
                continue;
            };
            let own = self.cache.variant_of(&vary, w.headers.fields());
            let takes = match vary {
                Vary::Star => call.sent_by == Some(t),
                _ => own == sent,
            };
            if takes {
                kept.push(t);
                continue;
            }
            match groups.iter_mut().find(|(v, _)| own.is_some() && *v == own) {
                Some((_, group)) => group.push(t),
                None => groups.push((own, vec![t])),
            }
        }
        if !kept.contains(&call.origin) {
            if let Some(first) = kept.first() {
                call.origin = *first;
            }
        }
        call.waiters = kept;
        for (variant, group) in groups {
            self.stats.upstream.vary_redispatched += group.len() as u64;
            self.redispatch(now, call, variant, group);
        }
    }

    /// A new call, queued, for `group` (waiters of `call` that select
    /// `variant`: `None` for `Vary: *`, never joined by anyone).
    fn redispatch(
        &mut self,
        now: Instant,
        call: &Call,
        variant: Option<VariantId>,
        group: Vec<Ticket>,
    ) {
        let Some(first) = group.first().and_then(|t| self.waiters.get(t)) else {
            return;
        };
        let (lane, client, headers) = (
            first.lane.clone(),
            first.client.clone(),
            first.headers.clone(),
        );
        let class = group
            .iter()
            .filter_map(|t| self.waiters.get(t).map(|w| w.class))
            .min()
            .unwrap_or(call.class);
        let id = CallId(self.next_id());
        let key = call.key.as_ref().map(|k| match variant {
            Some(v) => k.primary().with_variant(v),
            None => k.primary(),
        });
        if let (Some(k), Some(_)) = (&key, variant) {
            self.by_key.entry(k.clone()).or_insert(id);
        }
        for t in &group {
            if let Some(w) = self.waiters.get_mut(t) {
                w.call = id;
                self.deadlines.insert((w.deadline, *t));
            }
        }
        self.queue
            .push(now, id, class, lane.clone(), client.clone(), call.cost);
        self.calls.insert(
            id,
            Call {
                route: call.route,
                idempotent: call.idempotent,
                key,
                cacheable: call.cacheable,
                lane,
                cost: call.cost,
                class,
                client,
                origin: group[0],
                waiters: group,
                state: CallState::Queued,
                attempts: 0,
                first_sent: None,
                sent: None,
                refresh: false,
                age_bounded: call.age_bounded,
                write: None,
                breaker: call.breaker.clone(),
                share: call.share.clone(),
                sent_headers: headers,
                sent_by: None,
            },
        );
        self.refresh_dirty = true;
    }
}

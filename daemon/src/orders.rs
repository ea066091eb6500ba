//! Every order's fate on record: orders that left for upstream and whose
//! answer did not reach their bot (the outcome is unknown, the bot hung
//! up, the answer came after it had gone) are counted per upstream for
//! stats, metrics and the dashboard, and kept in a small bounded record
//! by `client_order_id` that a bot which reconnects can ask, at
//! `GET /api/v1/sync-coordination/orders/<client_order_id>`, answered only
//! to the same owner: the client token's client in signing mode, the
//! credential identity otherwise.
//!
//! Bounds: at most [`MAX_PER_OWNER`] orders per owner (its oldest go
//! first) and [`MAX_ORDERS`] in all (the oldest go first); each expires
//! [`KEEP`] after its last change; a late answer's body is kept up to
//! [`MAX_BODY`] (a Coinbase order answer is under 1 KiB). At most about
//! 9 MB in all, the cost of answering a bot that lost its answer.
//! Counters are never forgotten.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use syncoord_core::stats::OrderFates;
use syncoord_core::Response;
use syncoord_proxy::Proxy;
use syncoord_server::HttpRequest;

/// Where a bot asks for an order's fate; the order's client id follows.
pub const ORDERS_PREFIX: &str = "/api/v1/sync-coordination/orders/";

/// How long an order stays on record after its last change.
pub const KEEP: Duration = Duration::from_secs(3600);
/// Orders kept per owner.
pub const MAX_PER_OWNER: usize = 256;
/// Orders kept in all.
pub const MAX_ORDERS: usize = 4096;
/// Largest late answer body kept with its order (larger ones keep their
/// status only).
pub const MAX_BODY: usize = 2048;

/// What became of an order whose answer did not reach its bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// No answer came back from upstream: check it there before sending
    /// it again.
    OutcomeUnknown,
    /// The bot hung up after the call left; upstream has not answered yet.
    AwaitingAnswer,
    /// Upstream (or our failure to reach it) answered after the bot had
    /// gone.
    AnsweredLate { status: u16, body: Option<Vec<u8>> },
}

/// One order on record.
#[derive(Debug, Clone)]
struct Entry {
    upstream: String,
    method: String,
    path: String,
    fate: Fate,
    changed: Instant,
    seq: u64,
}

/// An order the record tracks: who may ask for it, under which id.
#[derive(Debug, Clone)]
pub struct Order {
    /// `client:<name>` (signing mode) or `credential:<identity>`.
    pub owner: String,
    pub client_order_id: String,
    pub upstream: String,
    pub method: String,
    pub path: String,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(String, String), Entry>,
    /// Every entry by sequence number, oldest change first.
    by_age: BTreeMap<u64, (String, String)>,
    /// Each owner's entries by sequence number.
    by_owner: HashMap<String, BTreeSet<u64>>,
    next: u64,
    /// Counters per upstream name.
    counts: HashMap<String, OrderFates>,
}

/// The record and the counters (one per daemon, shared by its listeners).
#[derive(Default)]
pub struct OrderBook {
    inner: Mutex<Inner>,
}

impl OrderBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an order answered `outcome_unknown`, and records it when it
    /// has an owner and a client id.
    pub fn outcome_unknown(&self, upstream: &str, order: Option<&Order>, now: Instant) {
        let mut inner = self.lock();
        inner
            .counts
            .entry(upstream.to_owned())
            .or_default()
            .outcome_unknown += 1;
        if let Some(order) = order {
            inner.put(order, Fate::OutcomeUnknown, now);
        }
    }

    /// Counts an order whose bot hung up after it left, and records it.
    pub fn bot_gone(&self, upstream: &str, order: Option<&Order>, now: Instant) {
        let mut inner = self.lock();
        inner
            .counts
            .entry(upstream.to_owned())
            .or_default()
            .bot_gone += 1;
        if let Some(order) = order {
            inner.put(order, Fate::AwaitingAnswer, now);
        }
    }

    /// Counts the late answer of an order whose bot had gone, and records
    /// its status (and its body, when small).
    pub fn late_answer(
        &self,
        upstream: &str,
        order: Option<&Order>,
        answer: &Response,
        now: Instant,
    ) {
        let mut inner = self.lock();
        *inner
            .counts
            .entry(upstream.to_owned())
            .or_default()
            .late_answers
            .entry(answer.status)
            .or_default() += 1;
        if let Some(order) = order {
            let body = (answer.body.len() <= MAX_BODY).then(|| answer.body.clone());
            let fate = Fate::AnsweredLate {
                status: answer.status,
                body,
            };
            inner.put(order, fate, now);
        }
    }

    /// The counters of `upstream` since start.
    pub fn counts(&self, upstream: &str) -> OrderFates {
        self.lock()
            .counts
            .get(upstream)
            .cloned()
            .unwrap_or_default()
    }

    /// The order `client_order_id` of any of `owners`, if on record.
    pub fn lookup(&self, owners: &[String], client_order_id: &str, now: Instant) -> Option<Found> {
        let mut inner = self.lock();
        inner.expire(now);
        owners.iter().find_map(|owner| {
            let e = inner
                .entries
                .get(&(owner.clone(), client_order_id.to_owned()))?;
            Some(Found {
                upstream: e.upstream.clone(),
                method: e.method.clone(),
                path: e.path.clone(),
                fate: e.fate.clone(),
                age: now.saturating_duration_since(e.changed),
            })
        })
    }

    /// Orders on record now (expired ones dropped first).
    #[cfg(test)]
    pub fn len(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        inner.expire(now);
        inner.entries.len()
    }
}

/// A call other than a read, on its way: what its fate is counted and
/// recorded under.
pub struct Tracked {
    pub book: std::sync::Arc<OrderBook>,
    pub upstream: String,
    /// `None` without a client order id or an owner: counted only.
    pub order: Option<Order>,
}

impl Tracked {
    /// The tracking of a call about to be submitted: `None` for a read
    /// (GET, HEAD, OPTIONS). Its owner is the client its token names, else
    /// its credential identity; it is recorded only with an owner and a
    /// client order id.
    pub fn for_call(
        book: &std::sync::Arc<OrderBook>,
        proxy: &Proxy,
        headers: &[(String, String)],
        request: &syncoord_core::Request,
        upstream: &str,
        client_order_id: Option<String>,
    ) -> Option<Box<Tracked>> {
        let method = request.method.as_str();
        if matches!(method, "GET" | "HEAD" | "OPTIONS") {
            return None;
        }
        let token_client = proxy.authenticate(headers).ok().flatten();
        let owner = owner(
            token_client.map(|c| &*c.name),
            request.credential.as_ref().map(|c| c.as_str()),
        );
        let order = owner.zip(client_order_id).map(|(owner, id)| Order {
            owner,
            client_order_id: id,
            upstream: upstream.to_owned(),
            method: method.to_owned(),
            path: request.path.clone(),
        });
        Some(Box::new(Tracked {
            book: std::sync::Arc::clone(book),
            upstream: upstream.to_owned(),
            order,
        }))
    }

    /// Its answer reached the bot: counted when it says the outcome is
    /// unknown.
    pub fn answered(&self, status: u16) {
        if status == crate::OUTCOME_UNKNOWN_STATUS {
            self.book
                .outcome_unknown(&self.upstream, self.order.as_ref(), Instant::now());
        }
    }

    /// Its bot hung up after the call left.
    pub fn gone(&self) {
        self.book
            .bot_gone(&self.upstream, self.order.as_ref(), Instant::now());
    }

    /// Its answer came after the bot had gone.
    pub fn late(&self, answer: &Response) {
        self.book
            .late_answer(&self.upstream, self.order.as_ref(), answer, Instant::now());
    }
}

/// An order on record, as its owner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub fate: Fate,
    /// Since its last change.
    pub age: Duration,
}

impl Inner {
    fn put(&mut self, order: &Order, fate: Fate, now: Instant) {
        self.expire(now);
        let key = (order.owner.clone(), order.client_order_id.clone());
        if let Some(old) = self.entries.remove(&key) {
            self.unlink(&key.0, old.seq);
        }
        let owned = self.by_owner.get(&order.owner).map_or(0, BTreeSet::len);
        if owned >= MAX_PER_OWNER {
            let oldest = self
                .by_owner
                .get(&order.owner)
                .and_then(|s| s.first().copied());
            if let Some(seq) = oldest {
                self.remove_seq(seq);
            }
        }
        while self.entries.len() >= MAX_ORDERS {
            let Some(seq) = self.by_age.keys().next().copied() else {
                break;
            };
            self.remove_seq(seq);
        }
        let seq = self.next;
        self.next += 1;
        self.by_age.insert(seq, key.clone());
        self.by_owner.entry(key.0.clone()).or_default().insert(seq);
        self.entries.insert(
            key,
            Entry {
                upstream: order.upstream.clone(),
                method: order.method.clone(),
                path: order.path.clone(),
                fate,
                changed: now,
                seq,
            },
        );
    }

    fn expire(&mut self, now: Instant) {
        while let Some((&seq, key)) = self.by_age.iter().next() {
            let stale = self
                .entries
                .get(key)
                .is_none_or(|e| now.saturating_duration_since(e.changed) >= KEEP);
            if !stale {
                break;
            }
            self.remove_seq(seq);
        }
    }

    fn remove_seq(&mut self, seq: u64) {
        if let Some(key) = self.by_age.remove(&seq) {
            self.entries.remove(&key);
            self.unlink(&key.0, seq);
        }
    }

    fn unlink(&mut self, owner: &str, seq: u64) {
        self.by_age.remove(&seq);
        if let Some(set) = self.by_owner.get_mut(owner) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_owner.remove(owner);
            }
        }
    }
}

/// The owner key of a request: its client token's client, else its
/// credential identity; `None` when it has neither (nobody could prove
/// it is the same bot later, so its orders are counted, not recorded).
pub fn owner(token_client: Option<&str>, credential: Option<&str>) -> Option<String> {
    match (token_client, credential) {
        (Some(client), _) => Some(format!("client:{client}")),
        (None, Some(identity)) => Some(format!("credential:{identity}")),
        (None, None) => None,
    }
}

/// The client order id in a lookup's target, percent-decoded; `None` when
/// it is not one a body could have carried (empty, too long, not
/// printable ASCII).
pub fn id_in_target(target: &str) -> Option<String> {
    let path = target.split('?').next().unwrap_or(target);
    let raw = path.strip_prefix(ORDERS_PREFIX)?;
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())).then_some(id)
}

/// The answer to a lookup: the order's fate as JSON, `404` when there is
/// none for this owner (the same answer whether another owner has one).
fn lookup_response(client_order_id: &str, found: Option<Found>) -> Response {
    let Some(found) = found else {
        return json_response(
            404,
            &serde_json::json!({
                "error": "not_found",
                "message": format!("no order `{client_order_id}` on record for this client or credential (kept {} s after its last change, only when its answer did not reach its bot)", KEEP.as_secs()),
            }),
        );
    };
    let (fate, status, body) = match &found.fate {
        Fate::OutcomeUnknown => ("outcome_unknown", None, None),
        Fate::AwaitingAnswer => ("awaiting_answer", None, None),
        Fate::AnsweredLate { status, body } => ("answered_late", Some(*status), body.as_ref()),
    };
    let body = body.map(|b| {
        serde_json::from_slice::<serde_json::Value>(b)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
    });
    json_response(
        200,
        &serde_json::json!({
            "client_order_id": client_order_id,
            "fate": fate,
            "status": status,
            "body": body,
            "upstream": found.upstream,
            "method": found.method,
            "path": found.path,
            "age_secs": found.age.as_secs_f64(),
        }),
    )
}

/// `GET /api/v1/sync-coordination/orders/<client_order_id>`: the fate of
/// an order whose answer did not reach its bot, answered only to its
/// owner (the same client token, else the same credential).
pub fn lookup(book: &OrderBook, proxy: &Proxy, request: &HttpRequest) -> Response {
    let Some(id) = id_in_target(&request.target) else {
        return json_response(
            400,
            &serde_json::json!({
                "error": "bad_request",
                "message": "expected /api/v1/sync-coordination/orders/<client_order_id> (1 to 128 printable ASCII characters, percent-encoded)",
            }),
        );
    };
    let (client, credentials) = match proxy.presented_owner(&request.headers) {
        Ok(who) => who,
        Err(rejection) => return rejection.into_response(),
    };
    let owners: Vec<String> = match client {
        Some(name) => owner(Some(&name), None).into_iter().collect(),
        None => credentials
            .iter()
            .filter_map(|c| owner(None, Some(c.as_str())))
            .collect(),
    };
    if owners.is_empty() {
        return no_owner_response();
    }
    let found = book.lookup(&owners, &id, Instant::now());
    lookup_response(&id, found)
}

/// A refusal of a lookup that names no owner.
fn no_owner_response() -> Response {
    json_response(
        403,
        &serde_json::json!({
            "error": "identity_required",
            "message": "present the client token (signing mode) or the credential the order was sent with",
        }),
    )
}

fn json_response(status: u16, value: &serde_json::Value) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: value.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(owner: &str, id: &str) -> Order {
        Order {
            owner: owner.into(),
            client_order_id: id.into(),
            upstream: "advanced".into(),
            method: "POST".into(),
            path: "/api/v3/brokerage/orders".into(),
        }
    }

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_late_answer_replaces_the_wait_and_only_its_owner_reads_it() {
        let book = OrderBook::default();
        let t = Instant::now();
        let o = order("client:a", "c1");
        book.bot_gone("advanced", Some(&o), t);
        let mine = ["client:a".to_owned()];
        assert_eq!(
            book.lookup(&mine, "c1", t).map(|f| f.fate),
            Some(Fate::AwaitingAnswer)
        );
        book.late_answer("advanced", Some(&o), &answer(200, r#"{"success":true}"#), t);
        let found = book.lookup(&mine, "c1", t).expect("on record");
        assert_eq!(
            found.fate,
            Fate::AnsweredLate {
                status: 200,
                body: Some(br#"{"success":true}"#.to_vec())
            }
        );
        assert_eq!(book.lookup(&["client:b".to_owned()], "c1", t), None);
        assert_eq!(book.lookup(&["credential:a".to_owned()], "c1", t), None);
        let counts = book.counts("advanced");
        assert_eq!(counts.bot_gone, 1);
        assert_eq!(counts.late_answers.get(&200), Some(&1));
        assert_eq!(book.counts("exchange"), OrderFates::default());
        // Without an owner: counted, not recorded.
        book.outcome_unknown("advanced", None, t);
        assert_eq!(book.counts("advanced").outcome_unknown, 1);
        assert_eq!(book.len(t), 1);
    }

    #[test]
    fn orders_expire_and_stay_bounded() {
        let book = OrderBook::default();
        let t = Instant::now();
        book.outcome_unknown("u", Some(&order("client:a", "old")), t);
        let later = t + KEEP;
        assert_eq!(book.lookup(&["client:a".to_owned()], "old", later), None);
        for i in 0..MAX_PER_OWNER + 10 {
            book.outcome_unknown("u", Some(&order("client:a", &format!("o{i}"))), later);
        }
        assert_eq!(book.len(later), MAX_PER_OWNER);
        let a = ["client:a".to_owned()];
        assert_eq!(book.lookup(&a, "o0", later), None, "the oldest went first");
        assert!(book
            .lookup(&a, &format!("o{}", MAX_PER_OWNER + 9), later)
            .is_some());
        for i in 0..MAX_ORDERS + 5 {
            let owner = format!("credential:{}", i % 1000);
            book.bot_gone("u", Some(&order(&owner, &format!("x{i}"))), later);
        }
        assert_eq!(book.len(later), MAX_ORDERS);
        assert_eq!(book.counts("u").bot_gone as usize, MAX_ORDERS + 5);
    }

    #[test]
    fn ids_in_targets() {
        assert_eq!(
            id_in_target("/api/v1/sync-coordination/orders/abc-1?x=1").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            id_in_target("/api/v1/sync-coordination/orders/a%2Fb").as_deref(),
            Some("a/b")
        );
        assert_eq!(id_in_target("/api/v1/sync-coordination/orders/"), None);
        assert_eq!(id_in_target("/api/v1/sync-coordination/orders/a%20b"), None);
        assert_eq!(id_in_target("/api/v1/sync-coordination/stats"), None);
        assert_eq!(
            owner(Some("bot"), Some("id:1")).as_deref(),
            Some("client:bot")
        );
        assert_eq!(
            owner(None, Some("id:1")).as_deref(),
            Some("credential:id:1")
        );
        assert_eq!(owner(None, None), None);
    }
}

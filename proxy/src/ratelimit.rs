//! Signals out: the `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-12, Structured Fields written
//! with `sfv`) syncoord adds to its answers, so a bot can pace itself on
//! the budget syncoord holds for it rather than guess. One policy per
//! bucket the bot's call draws on, named after its scope. Shared by every
//! host, like the rest of the answer.
//!
//! The draft states a quota per window; syncoord's buckets are a rate and
//! a burst. `w` is the time the bucket takes to refill its burst (whole
//! seconds, at least 1) and `q` what the rate allows in `w`, rounded down:
//! never more than the bucket really allows. Where the draft has no
//! parameter, `syncoord-` ones say the rest: `syncoord-rate` (units per
//! second, 3 decimals), `syncoord-burst` and `syncoord-per` (`credential`:
//! the bot's key has its own bucket; `global`: every caller shares it).
//! `RateLimit` gives `r`, the units that could go now, and `t`, whole
//! seconds until the bucket is full again (or its pause ends).

use syncoord_core::Budget;

/// The policy field's name.
pub const POLICY_FIELD: &str = "RateLimit-Policy";
/// The limit field's name.
pub const LIMIT_FIELD: &str = "RateLimit";

/// The largest integer a Structured Field carries.
const SF_MAX: f64 = 999_999_999_999_999.0;

fn int(v: f64) -> sfv::Integer {
    let v = if v.is_finite() {
        v.clamp(0.0, SF_MAX)
    } else {
        0.0
    };
    sfv::Integer::try_from(v as i64).unwrap_or(sfv::integer(0))
}

/// The two fields for `budgets`, or none when there is nothing to say (no
/// bucket, or none with a usable name and rate).
pub fn ratelimit_fields(budgets: &[Budget]) -> Vec<(String, String)> {
    let mut policies = sfv::ListSerializer::new();
    let mut limits = sfv::ListSerializer::new();
    for b in budgets {
        let Ok(name) = sfv::StringRef::from_str(&b.scope) else {
            continue;
        };
        if !(b.rate_per_sec.is_finite() && b.rate_per_sec > 0.0) {
            continue;
        }
        // A rate kept as an interval is a hair off (9/s reads 8.9999...):
        // rounding ignores what is below a millionth.
        let window = (f64::from(b.burst) / b.rate_per_sec - 1e-6)
            .ceil()
            .clamp(1.0, 1e9);
        let quota = (b.rate_per_sec * window + 1e-6).floor();
        let rate = sfv::Decimal::try_from((b.rate_per_sec * 1000.0 + 1e-6).floor() / 1000.0)
            .unwrap_or_else(|_| sfv::Decimal::from(0));
        let per = if b.per_credential {
            sfv::token_ref("credential")
        } else {
            sfv::token_ref("global")
        };
        let _ = policies
            .bare_item(name)
            .parameter(sfv::key_ref("q"), int(quota))
            .parameter(sfv::key_ref("w"), int(window))
            .parameter(sfv::key_ref("syncoord-rate"), rate)
            .parameter(sfv::key_ref("syncoord-burst"), int(f64::from(b.burst)))
            .parameter(sfv::key_ref("syncoord-per"), per);
        let _ = limits
            .bare_item(name)
            .parameter(sfv::key_ref("r"), int(b.remaining.floor()))
            .parameter(sfv::key_ref("t"), int(b.reset.as_secs_f64().ceil()));
    }
    match (policies.finish(), limits.finish()) {
        (Some(p), Some(l)) => vec![(POLICY_FIELD.into(), p), (LIMIT_FIELD.into(), l)],
        _ => Vec::new(),
    }
}

/// Adds the fields for `budgets` to `headers`, replacing any of the same
/// names (upstream's own describe upstream's view, not this bot's).
pub fn add_ratelimit_fields(headers: &mut Vec<(String, String)>, budgets: &[Budget]) {
    let fields = ratelimit_fields(budgets);
    if fields.is_empty() {
        return;
    }
    headers.retain(|(n, _)| {
        !n.eq_ignore_ascii_case(POLICY_FIELD) && !n.eq_ignore_ascii_case(LIMIT_FIELD)
    });
    headers.extend(fields);
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncoord_core::Duration;

    fn budget(scope: &str, rate: f64, burst: u32, remaining: f64, reset: f64) -> Budget {
        Budget {
            scope: scope.into(),
            per_credential: scope == "private",
            rate_per_sec: rate,
            burst,
            remaining,
            reset: Duration::from_secs_f64(reset),
        }
    }

    /// The numeric parameters of each member, parsed back by `sfv`.
    fn parse(v: &str) -> Vec<(String, Vec<(String, String)>)> {
        let list = sfv::Parser::new(v)
            .parse_list::<sfv::List>()
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        list.into_iter()
            .map(|entry| match entry {
                sfv::ListEntry::Item(item) => (
                    item.bare_item
                        .as_string()
                        .expect("a String")
                        .as_str()
                        .to_owned(),
                    item.params
                        .iter()
                        .map(|(k, v)| {
                            let text = match v {
                                sfv::BareItem::Integer(i) => i.to_string(),
                                sfv::BareItem::Decimal(d) => d.to_string(),
                                sfv::BareItem::Token(t) => t.as_str().to_owned(),
                                other => format!("{other:?}"),
                            };
                            (k.as_str().to_owned(), text)
                        })
                        .collect(),
                ),
                sfv::ListEntry::InnerList(_) => panic!("an inner list in {v}"),
            })
            .collect()
    }

    #[test]
    fn fields_parse_as_structured_lists_with_the_drafts_parameters() {
        let fields = ratelimit_fields(&[
            budget("private", 27.0 - 1e-12, 27, 12.6, 0.55),
            budget("budget", 0.12, 2, 0.0, 14.2),
        ]);
        assert_eq!(fields.len(), 2);
        let policy = parse(&fields[0].1);
        let limit = parse(&fields[1].1);
        let p = |k: &str, i: usize| {
            policy[i]
                .1
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(fields[0].0, "RateLimit-Policy");
        assert_eq!(policy[0].0, "private");
        assert_eq!(p("q", 0).as_deref(), Some("27"));
        assert_eq!(p("w", 0).as_deref(), Some("1"));
        assert_eq!(p("syncoord-per", 0).as_deref(), Some("credential"));
        // 0.12/s with a burst of 2: 17 s to refill, 2 calls in it (never
        // more than the rate allows: 2/17 <= 0.12).
        assert_eq!(policy[1].0, "budget");
        assert_eq!(p("w", 1).as_deref(), Some("17"));
        assert_eq!(p("q", 1).as_deref(), Some("2"));
        assert_eq!(p("syncoord-rate", 1).as_deref(), Some("0.12"));
        assert_eq!(p("syncoord-burst", 1).as_deref(), Some("2"));
        assert_eq!(p("syncoord-per", 1).as_deref(), Some("global"));
        assert_eq!(fields[1].0, "RateLimit");
        assert_eq!(
            limit,
            vec![
                (
                    "private".into(),
                    vec![("r".into(), "12".into()), ("t".into(), "1".into())]
                ),
                (
                    "budget".into(),
                    vec![("r".into(), "0".into()), ("t".into(), "15".into())]
                ),
            ]
        );
    }

    #[test]
    fn what_the_fields_say_is_read_back_by_syncoords_own_signals_parser() {
        // A daemon in front of another daemon learns the first one's view.
        let mut headers = vec![("ratelimit".to_owned(), "\"old\";r=99".to_owned())];
        add_ratelimit_fields(&mut headers, &[budget("public", 9.0, 9, 4.0, 0.6)]);
        assert!(
            !headers.iter().any(|(_, v)| v.contains("old")),
            "{headers:?}"
        );
        let config = syncoord_core::config::SignalsConfig::default();
        let s = syncoord_core::read_signals(&headers, &config, None);
        let stated = s.stated.expect("a stated limit");
        assert!((stated.rate() - 9.0).abs() < 1e-9, "{stated:?}");
        assert_eq!(s.remaining, Some(4.0));
    }

    #[test]
    fn nothing_to_say_adds_nothing() {
        assert!(ratelimit_fields(&[]).is_empty());
        assert!(ratelimit_fields(&[budget("bad\u{7f}name", 1.0, 1, 1.0, 0.0)]).is_empty());
        assert!(ratelimit_fields(&[budget("zero", 0.0, 1, 1.0, 0.0)]).is_empty());
        let mut headers = vec![("RateLimit".to_owned(), "x".to_owned())];
        add_ratelimit_fields(&mut headers, &[]);
        assert_eq!(headers.len(), 1);
    }
}

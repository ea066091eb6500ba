use super::*;
use crate::http::h;

fn read(pairs: &[(&str, &str)]) -> Signals {
    read_signals(&h(pairs), &SignalsConfig::default(), Some(1_700_000_000))
}

#[test]
fn draft_examples() {
    // draft-12: a policy of 100 units per 10 s, 50 left, reset in 5 s.
    let s = read(&[
        ("RateLimit-Policy", r#""default";q=100;w=10"#),
        ("RateLimit", r#""default";r=50;t=5"#),
    ]);
    assert_eq!(
        s.stated,
        Some(Stated {
            quota: 100.0,
            window: Duration::from_secs(10)
        })
    );
    assert_eq!(s.remaining, Some(50.0));
    assert_eq!(s.reset, Some(Duration::from_secs(5)));
}

#[test]
fn several_policies_the_lowest_rate_binds() {
    // Per minute and per hour, split over two fields (one List).
    let s = read(&[
        ("RateLimit-Policy", r#""permin";q=50;w=60"#),
        (
            "ratelimit-policy",
            r#""perhr";q=1000;w=3600, burst;q=5;w=1"#,
        ),
        ("RateLimit", r#""permin";r=20;t=30, "perhr";r=3;t=900"#),
    ]);
    let st = s.stated.unwrap();
    assert!((st.rate() - 1000.0 / 3600.0).abs() < 1e-9, "{st:?}");
    assert_eq!(s.remaining, Some(3.0));
    assert_eq!(s.reset, Some(Duration::from_secs(900)));
}

#[test]
fn x_ratelimit_family_with_a_configured_window() {
    let cfg = SignalsConfig {
        limit_window_secs: Some(60.0),
        ..SignalsConfig::default()
    };
    let s = read_signals(
        &h(&[
            ("X-RateLimit-Limit", "120"),
            ("X-RateLimit-Remaining", "7"),
            ("X-RateLimit-Reset", "1700000012"),
        ]),
        &cfg,
        Some(1_700_000_000),
    );
    assert!((s.stated.unwrap().rate() - 2.0).abs() < 1e-9);
    assert_eq!(s.remaining, Some(7.0));
    assert_eq!(s.reset, Some(Duration::from_secs(12)));
    // Without a window the limit states no rate; the level still counts.
    let s = read(&[("x-ratelimit-limit", "120"), ("x-ratelimit-remaining", "0")]);
    assert_eq!((s.stated, s.remaining), (None, Some(0.0)));
}

#[test]
fn reset_units() {
    let at = |unit, v| {
        let cfg = SignalsConfig {
            reset_unit: unit,
            ..SignalsConfig::default()
        };
        read_signals(&h(&[("x-ratelimit-reset", v)]), &cfg, Some(1_000)).reset
    };
    assert_eq!(at(ResetUnit::Seconds, "30"), Some(Duration::from_secs(30)));
    assert_eq!(at(ResetUnit::Epoch, "1030"), Some(Duration::from_secs(30)));
    assert_eq!(at(ResetUnit::Epoch, "900"), Some(Duration::ZERO));
    assert_eq!(at(ResetUnit::Auto, "1030"), Some(Duration::from_secs(1030)));
}

#[test]
fn weights() {
    let s = read_signals(
        &h(&[("X-MBX-USED-WEIGHT-1M", "1150")]),
        &SignalsConfig::binance(),
        None,
    );
    assert_eq!(s.used, Some((1150.0, Duration::from_secs(60))));
    // Not read unless configured.
    assert_eq!(read(&[("X-MBX-USED-WEIGHT-1M", "1150")]).used, None);
}

#[test]
fn malformed_fields_are_ignored() {
    for (n, v) in [
        ("RateLimit-Policy", "default;q=100;w="),
        ("RateLimit-Policy", r#""default";q=-1;w=10"#),
        ("RateLimit-Policy", r#""default";q=0;w=10"#),
        ("RateLimit-Policy", r#""default";q="many";w=10"#),
        ("RateLimit-Policy", r#""default";w=10"#),
        ("RateLimit-Policy", "(a b);q=1;w=1"),
        ("RateLimit-Policy", "\u{7f}"),
        ("RateLimit", r#""default";r=abc"#),
        ("RateLimit", ";;;"),
        ("x-ratelimit-remaining", "lots"),
        ("x-ratelimit-remaining", "-4"),
        ("x-ratelimit-reset", "NaN"),
        ("x-ratelimit-limit", "inf"),
    ] {
        assert!(read(&[(n, v)]).is_empty(), "{n}: {v}");
    }
    assert!(read(&[]).is_empty());
    // None of them reads anything when signals are off.
    let none = read_signals(
        &h(&[
            ("RateLimit-Policy", r#""d";q=1;w=1"#),
            ("x-ratelimit-remaining", "0"),
        ]),
        &SignalsConfig::none(),
        None,
    );
    assert!(none.is_empty());
}

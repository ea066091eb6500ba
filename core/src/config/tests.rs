use super::*;

fn fields(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|e| e.field.as_str()).collect()
}

fn errors_of(config: &Config) -> ConfigErrors {
    config.validate().expect_err("config should be invalid")
}

fn problem<'a>(errors: &'a ConfigErrors, field: &str) -> &'a Problem {
    &errors
        .0
        .iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("no error for `{field}` in: {errors}"))
        .problem
}

fn rule(path: &str) -> RouteRule {
    RouteRule {
        path: path.to_owned(),
        ..RouteRule::default()
    }
}

#[test]
fn default_is_coinbase_advanced_trade_and_valid() {
    let c = Config::default();
    assert_eq!(c, coinbase::advanced_trade());
    c.validate().expect("the default config is valid");
    assert_eq!(c.priorities, ["trading", "account", "market", "analysis"]);
    assert_eq!(c.scopes.len(), 2);
    let public = &c.scopes["public"];
    assert_eq!((public.rate, public.period_secs), (10.0, 1.0));
    assert_eq!(public.per, Keying::Global);
    let private = &c.scopes["private"];
    assert_eq!((private.rate, private.period_secs), (30.0, 1.0));
    assert_eq!(private.per, Keying::Credential);
    assert!(c.scopes.values().all(|s| s.headroom == 0.9));
    assert!(c.queue.default_deadline_secs < 30.0, "signatures live 30 s");
    assert!(c.queue.default_deadline_secs > 0.0);
    assert_eq!(c.defaults.ttl_secs, 90.0);
    assert_eq!(c.defaults.priority, "market");
    assert!(c.defaults.private, "private by default: never leak");
    assert_eq!(c.credential.header, "Authorization");
    assert_eq!(c.credential.others, ["CB-ACCESS-KEY"]);
    let ex = coinbase::exchange();
    assert_eq!(ex.credential.header, "CB-ACCESS-KEY");
    assert_eq!(ex.credential.others, ["Authorization"]);
    // Placing an order is the top class and is never cached.
    let orders = c
        .routes
        .iter()
        .find(|r| r.name.as_deref() == Some("orders-write"))
        .unwrap();
    assert_eq!(orders.priority.as_deref(), Some("trading"));
    assert_eq!(orders.cacheable, Some(false));
    assert_eq!(orders.methods, ["POST"]);
}

#[test]
fn exchange_preset_is_valid_with_documented_limits() {
    let c = coinbase::exchange();
    c.validate().expect("the Exchange preset is valid");
    let get = |name: &str| {
        let s = &c.scopes[name];
        (s.rate, s.period_secs, s.burst, s.per, s.headroom)
    };
    assert_eq!(get("public"), (10.0, 1.0, 15, Keying::Global, 0.9));
    assert_eq!(get("private"), (15.0, 1.0, 30, Keying::Credential, 0.9));
    assert_eq!(get("fills"), (10.0, 1.0, 20, Keying::Credential, 0.9));
    assert_eq!(c.scopes.len(), 3);
    let fills = c.routes.iter().find(|r| r.path == "/fills").unwrap();
    assert_eq!(
        fills.scopes.as_deref(),
        Some(&["private".to_owned(), "fills".to_owned()][..])
    );
    // Headroom leaves 13 of the 15 public calls usable at once.
    assert_eq!(crate::limiter::usable_burst(&c.scopes["public"]), 13);
    assert_eq!(crate::limiter::usable_burst(&c.scopes["private"]), 27);
    assert_eq!(crate::limiter::usable_burst(&c.scopes["fills"]), 18);
}

#[test]
fn reference_workload_eight_per_minute_is_expressible() {
    let mut c = coinbase::advanced_trade();
    c.scopes.insert(
        "reference".into(),
        ScopeConfig {
            rate: 8.0,
            period_secs: 60.0,
            burst: 8,
            per: Keying::Global,
            headroom: 1.0,
        },
    );
    c.defaults.scopes = vec!["reference".into()];
    c.defaults.cost = 8;
    c.validate().expect("8 per minute with burst 8 is valid");
    assert_eq!(crate::limiter::usable_burst(&c.scopes["reference"]), 8);
    c.defaults.cost = 9;
    let e = errors_of(&c);
    // The defaults, and every rule that inherits both cost and scope.
    assert_eq!(fields(&e)[0], "defaults.cost");
    assert!(fields(&e).iter().all(|f| f.ends_with(".cost")), "{e}");
    assert!(e
        .to_string()
        .contains("cost 9 exceeds scope `reference`'s usable burst of 8"));
}

#[test]
fn lookups_by_name() {
    let c = coinbase::exchange();
    assert_eq!(c.class_id("trading"), Some(ClassId(0)));
    assert_eq!(c.class_id("Analysis"), Some(ClassId(3)), "case-insensitive");
    assert_eq!(c.class_id("urgent"), None);
    assert_eq!(c.class_name(ClassId(1)), "account");
    assert_eq!(c.class_name(ClassId(9)), "?");
    // Scope ids follow name order.
    assert_eq!(c.scope_id("fills"), Some(ScopeId(0)));
    assert_eq!(c.scope_id("private"), Some(ScopeId(1)));
    assert_eq!(c.scope_id("public"), Some(ScopeId(2)));
    assert_eq!(c.scope_id("Public"), None);
}

#[test]
fn validation_reports_every_problem_with_its_field() {
    let mut c = coinbase::advanced_trade();
    c.routes = vec![
        RouteRule {
            scopes: Some(vec!["public".into(), "nope".into()]),
            ..rule("/a")
        },
        RouteRule {
            priority: Some("urgent".into()),
            ..rule("/b")
        },
    ];
    c.scopes.get_mut("public").unwrap().rate = 0.0;
    c.queue.max_len = 0;
    c.cache.cacheable_statuses = vec![503];
    let e = errors_of(&c);
    assert_eq!(
        fields(&e),
        [
            "scopes.public.rate",
            "routes[0].scopes[1]",
            "routes[1].priority",
            "queue.max_len",
            "cache.cacheable_statuses[0]",
        ],
        "{e}"
    );
    assert_eq!(
        problem(&e, "scopes.public.rate"),
        &Problem::NotPositive(0.0)
    );
    assert_eq!(
        problem(&e, "routes[0].scopes[1]"),
        &Problem::UnknownScope {
            name: "nope".into(),
            known: "private, public".into()
        }
    );
    assert_eq!(
        problem(&e, "routes[1].priority"),
        &Problem::UnknownPriority {
            name: "urgent".into(),
            known: "trading, account, market, analysis".into()
        }
    );
    let text = e.to_string();
    assert_eq!(text.lines().count(), 5, "one line per problem:\n{text}");
    assert!(text.contains(
        "routes[1].priority: unknown priority class `urgent` (known: trading, account, market, analysis)"
    ));
    assert!(text.contains("cache.cacheable_statuses[0]: status 503 is an error to retry"));
    assert!(text.contains("scopes.public.rate: must be a positive, finite number (got 0)"));
    assert!(text.contains("unknown scope `nope` (known: private, public)"));
}

#[test]
fn validation_covers_every_section() {
    let mut c = coinbase::advanced_trade();
    c.priorities = vec!["hi".into(), "HI".into(), " ".into()];
    c.defaults.priority = "hi".into();
    c.routes = vec![RouteRule {
        methods: vec!["GET".into(), "G3T".into(), String::new()],
        scopes: Some(vec!["public".into(), "public".into()]),
        ttl_secs: Some(-1.0),
        cost: Some(0),
        ..rule("products/*x")
    }];
    let s = c.scopes.get_mut("private").unwrap();
    s.headroom = 1.5;
    s.period_secs = f64::NAN;
    s.burst = 0;
    c.queue.aging_secs = Some(0.0);
    c.queue.default_deadline_secs = f64::INFINITY;
    c.cache.max_entries = 0;
    c.cache.max_bytes = 0;
    c.cache.cacheable_statuses = vec![200, 429, 99];
    c.limiter.throttle_factor = 0.0;
    c.limiter.recovery_secs = -1.0;
    c.retry.max_attempts = 0;
    c.retry.retry_statuses = vec![600];
    c.breaker.failure_threshold = 0;
    c.health.degraded_queue_fill = 1.5;
    c.credential.header = "bad header".into();
    c.credential.others = vec!["X-Key".into(), "x-key".into(), "".into()];
    c.credential.aliases = [("k1", "a"), ("k2", "a"), ("k3", "no spaces")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    c.stats.max_clients = 0;
    let e = errors_of(&c);
    let f = fields(&e);
    for expected in [
        "priorities[1]",
        "priorities[2]",
        "scopes.private.period_secs",
        "scopes.private.burst",
        "scopes.private.headroom",
        "routes[0].path",
        "routes[0].methods[1]",
        "routes[0].methods[2]",
        "routes[0].cost",
        "routes[0].ttl_secs",
        "routes[0].scopes[1]",
        "queue.default_deadline_secs",
        "queue.aging_secs",
        "cache.max_entries",
        "cache.max_bytes",
        "cache.cacheable_statuses[1]",
        "cache.cacheable_statuses[2]",
        "limiter.throttle_factor",
        "limiter.recovery_secs",
        "retry.max_attempts",
        "retry.retry_statuses[0]",
        "breaker.failure_threshold",
        "health.degraded_queue_fill",
        "credential.header",
        "credential.others[1]",
        "credential.others[2]",
        "credential.aliases.k2",
        "credential.aliases.k3",
        "stats.max_clients",
    ] {
        assert!(f.contains(&expected), "missing {expected} in:\n{e}");
    }
    assert!(!f.contains(&"routes[0].methods[0]"), "GET is fine");
    assert!(!f.contains(&"credential.others[0]"), "X-Key is fine");
    assert!(
        !f.contains(&"credential.aliases.k1"),
        "the first `a` is fine"
    );
    assert_eq!(
        problem(&e, "credential.others[1]"),
        &Problem::Duplicate("x-key".into()),
        "header names are case-insensitive"
    );
    assert!(!f.contains(&"cache.cacheable_statuses[0]"), "200 is fine");
    assert_eq!(
        problem(&e, "priorities[1]"),
        &Problem::Duplicate("HI".into()),
        "duplicates are case-insensitive"
    );
    assert_eq!(
        problem(&e, "routes[0].scopes[1]"),
        &Problem::Duplicate("public".into())
    );
    assert_eq!(
        problem(&e, "routes[0].methods[1]"),
        &Problem::BadMethod("G3T".into())
    );
    assert!(matches!(
        problem(&e, "routes[0].path"),
        Problem::BadPattern(m) if m.to_string().contains("must start with `/`")
    ));
    assert!(matches!(
        problem(&e, "scopes.private.headroom"),
        Problem::OutOfRange { value, max, .. } if *value == 1.5 && *max == 1.0
    ));
    assert!(matches!(
        problem(&e, "cache.cacheable_statuses[2]"),
        Problem::OutOfRange { value, .. } if *value == 99.0
    ));
}

#[test]
fn empty_priorities_and_scopes_are_reported() {
    let mut c = coinbase::advanced_trade();
    c.priorities.clear();
    c.scopes.clear();
    c.routes.clear();
    let e = errors_of(&c);
    assert_eq!(problem(&e, "priorities"), &Problem::Empty);
    assert_eq!(problem(&e, "scopes"), &Problem::Empty);
    assert!(matches!(
        problem(&e, "defaults.priority"),
        Problem::UnknownPriority { known, .. } if known.is_empty()
    ));
    assert!(fields(&e).contains(&"defaults.scopes[0]"));

    let mut c = coinbase::advanced_trade();
    c.priorities = (0..65).map(|i| format!("p{i}")).collect();
    c.defaults.priority = "p0".into();
    c.routes.clear();
    let e = errors_of(&c);
    assert_eq!(fields(&e), ["priorities"]);
    assert_eq!(
        problem(&e, "priorities"),
        &Problem::TooMany { count: 65, max: 64 }
    );
}

#[test]
fn a_cost_beyond_a_scopes_usable_burst_is_rejected() {
    let mut c = coinbase::advanced_trade();
    // Advanced Trade public: burst 10 at headroom 0.9 leaves 9.
    c.routes = vec![
        RouteRule {
            cost: Some(9),
            scopes: Some(vec!["public".into()]),
            ..rule("/ok")
        },
        RouteRule {
            cost: Some(10),
            scopes: Some(vec!["public".into(), "private".into()]),
            ..rule("/too-much")
        },
    ];
    let e = errors_of(&c);
    assert_eq!(fields(&e), ["routes[1].cost"], "{e}");
    let text = e.to_string();
    assert!(
        text.contains("cost 10 exceeds scope `public`'s usable burst of 9"),
        "{text}"
    );
    // The rule's cost falls back to the defaults' cost.
    c.routes = vec![RouteRule {
        scopes: Some(vec!["public".into()]),
        ..rule("/inherits")
    }];
    c.defaults.cost = 20;
    let e = errors_of(&c);
    assert_eq!(fields(&e), ["routes[0].cost"], "private's 27 fit 20: {e}");
    c.defaults.cost = 28;
    let e = errors_of(&c);
    assert_eq!(fields(&e), ["defaults.cost", "routes[0].cost"], "{e}");
}

#[test]
fn only_get_and_head_rules_may_be_cacheable() {
    let mut c = coinbase::advanced_trade();
    c.routes = vec![
        RouteRule {
            methods: vec!["GET".into(), "head".into()],
            cacheable: Some(true),
            ..rule("/read")
        },
        RouteRule {
            methods: vec!["GET".into(), "post".into()],
            cacheable: Some(true),
            ..rule("/write")
        },
        RouteRule {
            methods: vec!["POST".into()],
            cacheable: Some(false),
            ..rule("/write-uncached")
        },
    ];
    let e = errors_of(&c);
    assert_eq!(fields(&e), ["routes[1].cacheable"]);
    assert!(matches!(
        problem(&e, "routes[1].cacheable"),
        Problem::Conflict(m) if m.contains("only GET and HEAD") && m.to_uppercase().contains("POST")
    ));
}

#[test]
fn a_short_toml_document_gets_defaults_for_the_rest() {
    let c: Config = toml::from_str(
        r#"
        priorities = ["urgent", "normal", "bulk"]

        [scopes.api]
        rate = 8
        period_secs = 60
        burst = 8
        headroom = 1.0

        [defaults]
        priority = "normal"
        scopes = ["api"]

        [[routes]]
        path = "/orders/**"
        methods = ["POST"]
        priority = "urgent"
        cacheable = false

        [queue]
        max_len = 50
        "#,
    )
    .expect("parses");
    c.validate().expect("valid");
    let d = Config::default();
    let api = &c.scopes["api"];
    assert_eq!((api.rate, api.period_secs, api.burst), (8.0, 60.0, 8));
    assert_eq!(api.per, Keying::Global, "unset: the scope default");
    assert_eq!(c.scopes.len(), 1, "the map replaces the preset's scopes");
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].cost, None);
    assert_eq!(c.routes[0].ttl_secs, None);
    assert_eq!(c.queue.max_len, 50);
    assert_eq!(
        c.queue.default_deadline_secs, d.queue.default_deadline_secs,
        "unset field of a set table"
    );
    assert_eq!(c.defaults.ttl_secs, 90.0);
    assert_eq!(c.defaults.cost, 1);
    assert!(c.defaults.private);
    assert_eq!(c.cache, d.cache);
    assert_eq!(c.limiter, d.limiter);
    assert_eq!(c.retry, d.retry);
    assert_eq!(c.breaker, d.breaker);
    assert_eq!(c.health, d.health);
    assert_eq!(c.stats, d.stats);
    assert_eq!(c.credential, d.credential);
}

#[test]
fn an_empty_toml_document_is_the_default() {
    let c: Config = toml::from_str("").expect("parses");
    assert_eq!(c, Config::default());
}

#[test]
fn a_partial_defaults_table_keeps_the_preset_for_unset_fields() {
    let c: Config = toml::from_str("[defaults]\nttl_secs = 30.0\n").expect("parses");
    assert_eq!(c.defaults.ttl_secs, 30.0);
    let d = Config::default();
    assert_eq!(
        c.defaults,
        RouteDefaults {
            ttl_secs: 30.0,
            ..d.defaults
        },
        "changing one default must not change the others"
    );
}

#[test]
fn unknown_fields_are_parse_errors_naming_the_field() {
    for (doc, typo) in [
        ("max_len = 5\n", "max_len"),
        ("[queue]\nmax_lenn = 5\n", "max_lenn"),
        ("[scopes.public]\nrate = 1\nbursts = 3\n", "bursts"),
        ("[[routes]]\npath = \"/a\"\nttl = 3\n", "ttl"),
        ("[cache]\nstale_if_eror_secs = 3\n", "stale_if_eror_secs"),
    ] {
        let err = toml::from_str::<Config>(doc).expect_err(doc).to_string();
        assert!(
            err.contains(&format!("unknown field `{typo}`")),
            "{doc}: {err}"
        );
    }
    // Wrong types are errors too, not silently defaulted.
    assert!(toml::from_str::<Config>("[queue]\nmax_len = \"many\"\n").is_err());
    assert!(toml::from_str::<Config>("[scopes.x]\nper = \"ip\"\n").is_err());
}

#[test]
fn keying_is_snake_case_in_toml() {
    let c: Config =
        toml::from_str("[scopes.a]\nper = \"credential\"\n[scopes.b]\nper = \"global\"\n")
            .expect("parses");
    assert_eq!(c.scopes["a"].per, Keying::Credential);
    assert_eq!(c.scopes["b"].per, Keying::Global);
}

#[test]
fn configs_round_trip_through_toml() {
    let mut custom = coinbase::exchange();
    custom.queue.aging_secs = Some(12.5);
    custom.queue.max_len = 77;
    custom.routes[0].cost = Some(2);
    custom.routes[0].retry_unsafe = Some(true);
    custom.cache.cacheable_statuses = vec![200];
    for config in [Config::default(), coinbase::exchange(), custom] {
        let text = toml::to_string(&config).expect("serialises");
        let back: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, config, "{text}");
        back.validate().expect("still valid");
    }
}

#[test]
fn secs_clamps_to_a_safe_range() {
    assert_eq!(secs(1.5), Duration::from_millis(1500));
    assert_eq!(secs(-3.0), Duration::ZERO);
    assert_eq!(secs(1e30), Duration::from_secs(1_000_000_000));
}

#[test]
fn presets_require_a_credential_where_coinbase_does() {
    let at = coinbase::advanced_trade().compile().expect("valid");
    let ex = coinbase::exchange().compile().expect("valid");
    let required = |c: &crate::CompiledConfig, method: &str, path: &str| {
        c.route(&crate::Method::new(method), path)
            .credential_required
    };
    let b = "/api/v3/brokerage";
    for path in [
        "/products",
        "/products/BTC-USD",
        "/products/BTC-USD/candles",
        "/best_bid_ask",
        "/product_book",
        "/accounts",
        "/orders/historical/batch",
    ] {
        assert!(required(&at, "GET", &format!("{b}{path}")), "{path}");
    }
    assert!(required(&at, "POST", &format!("{b}/orders")));
    for path in [
        "/market/products",
        "/market/products/BTC-USD/ticker",
        "/market/products/BTC-USD/candles",
        "/time",
    ] {
        assert!(!required(&at, "GET", &format!("{b}{path}")), "{path}");
    }
    for path in ["/accounts", "/fills", "/orders"] {
        assert!(required(&ex, "GET", path), "{path}");
    }
    for path in [
        "/products",
        "/products/BTC-USD/ticker",
        "/currencies",
        "/time",
    ] {
        assert!(!required(&ex, "GET", path), "{path}");
    }
    // A route the preset does not know is left to upstream.
    assert!(!required(&at, "GET", &format!("{b}/unknown")));
}

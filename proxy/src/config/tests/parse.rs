//! Reading files: defaults, the preset merge, and every mistake located.

use super::*;

#[test]
fn empty_file_is_the_default() {
    let c = ProxyConfig::from_toml_str("").unwrap();
    assert_eq!(c, ProxyConfig::default());
    assert_eq!(c.upstreams[0].coordination, coinbase::advanced_trade());
    assert_eq!(c.upstreams[1].coordination, coinbase::exchange());
    c.validate().unwrap();
    c.validate_for_edge().unwrap();
}

#[test]
fn coordination_merges_over_the_preset() {
    let text = r#"
[[upstreams]]
name = "ex"
url = "https://api.exchange.coinbase.com"
preset = "coinbase-exchange"
[upstreams.coordination.queue]
max_len = 500
[upstreams.coordination.scopes.public]
rate = 5.0
"#;
    let c = ProxyConfig::from_toml_str(text).unwrap();
    assert_eq!(c.upstreams.len(), 1);
    let co = &c.upstreams[0].coordination;
    let preset = coinbase::exchange();
    assert_eq!(co.queue.max_len, 500);
    assert_eq!(
        co.queue.default_deadline_secs,
        preset.queue.default_deadline_secs
    );
    assert_eq!(co.scopes["public"].rate, 5.0);
    // The rest of the table keeps the preset's values.
    assert_eq!(co.scopes["public"].burst, preset.scopes["public"].burst);
    assert_eq!(co.routes, preset.routes);
    // Arrays replace.
    let c = ProxyConfig::from_toml_str(
        "[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:9\"\npreset = \"coinbase-advanced\"\n[upstreams.coordination.credential]\nothers = [\"X-Key\"]\n",
    )
    .unwrap();
    assert_eq!(c.upstreams[0].coordination.credential.others, ["X-Key"]);
    assert_eq!(
        c.upstreams[0].coordination.credential.header, "Authorization",
        "the rest of the table is the preset's"
    );
}

#[test]
fn errors_name_field_and_position() {
    let text = r#"[server]
listen = "nowhere"

[[upstreams]]
name = "advanced"
url = "https://api.coinbase.com"
preset = "coinbase-advanced"

[[upstreams.coordination.routes]]
path = "/x"
scopes = ["public", "fils"]
"#;
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let shown = err.display_with("config.toml").to_string();
    assert!(
        shown.contains("config.toml:2:1: server.listen: `nowhere` is not an ip:port address"),
        "{shown}"
    );
    assert!(
        shown.contains("config.toml:11:21: upstreams[0].coordination.routes[0].scopes[1]: unknown scope `fils` (known: private, public)"),
        "{shown}"
    );
    assert_eq!(err.0.len(), 2, "{shown}");
}

#[test]
fn unknown_fields_and_bad_types_are_located() {
    let text = "[server]\nlisen = \"x\"\n\n[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\n[upstreams.coordination.queue]\nmax_len = \"many\"\n\n[[upstreams]]\nname = \"b\"\n";
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let shown = err.display_with("f").to_string();
    assert_eq!(err.0.len(), 3, "{shown}");
    assert!(shown.contains("unknown field `lisen`"), "{shown}");
    let e = err.0.iter().find(|e| e.message.contains("lisen")).unwrap();
    assert_eq!(
        (e.field.as_str(), e.line, e.column),
        ("server.lisen", Some(2), Some(1))
    );
    let e = err
        .0
        .iter()
        .find(|e| e.field == "upstreams[0].coordination.queue.max_len");
    assert_eq!(e.map(|e| e.line), Some(Some(8)), "{shown}");
    let e = err
        .0
        .iter()
        .find(|e| e.message.contains("missing field `url`"));
    assert_eq!(e.map(|e| e.field.as_str()), Some("upstreams[1]"), "{shown}");
}

#[test]
fn fields_from_the_preset_point_at_the_nearest_parent_in_the_file() {
    let text = "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n[upstreams.coordination]\npriorities = [\"a\", \"b\"]\n";
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let e = err
        .0
        .iter()
        .find(|e| e.field == "upstreams[0].coordination.routes[orders-write (preset)].priority")
        .unwrap_or_else(|| panic!("{err}"));
    // The preset's route is not in the file (so it is named, not
    // numbered); `[upstreams.coordination]` is.
    assert_eq!(e.line, Some(5), "{err}");
    assert!(e
        .message
        .contains("unknown priority class `trading` (known: a, b)"));
}

#[test]
fn unreadable_upstreams_do_not_hide_problems_of_the_others() {
    let text = "[[upstreams]]\nname = \"a\"\nurl = 3\n[[upstreams]]\nname = \"b b\"\nurl = \"https://h\"\n";
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["upstreams[0].url", "upstreams[1].name"], "{err}");
    assert_eq!(err.0[1].line, Some(5));
}

#[test]
fn syntax_errors_have_positions() {
    let err = ProxyConfig::from_toml_str("[server]\nlisten = \n").unwrap_err();
    assert_eq!(err.0[0].line, Some(2), "{err}");
    assert!(err.0[0].field.is_empty());
    let shown = err.display_with("c.toml").to_string();
    assert!(shown.starts_with("c.toml:2:"), "{shown}");
    // Several syntax errors are reported together.
    let err = ProxyConfig::from_toml_str("a = \nb = [\n[x\n").unwrap_err();
    assert!(err.0.len() >= 2, "{err}");
}

#[test]
fn route_rules_merge_with_the_preset_by_name() {
    let preset = coinbase::advanced_trade().routes;
    let names: Vec<_> = preset.iter().map(|r| r.name.clone().unwrap()).collect();
    // One rule of the preset changed by name, one added.
    let text = format!(
        "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n\
         [[upstreams.coordination.routes]]\nname = \"{}\"\nttl_secs = 2.5\n\
         [[upstreams.coordination.routes]]\nname = \"mine\"\npath = \"/x/**\"\nscopes = [\"public\"]\n",
        names[3]
    );
    let c = ProxyConfig::from_toml_str(&text).unwrap();
    let routes = &c.upstreams[0].coordination.routes;
    assert_eq!(routes.len(), preset.len() + 1);
    // New names first, then the preset's, in the preset's order.
    assert_eq!(routes[0].name.as_deref(), Some("mine"));
    assert_eq!(routes[0].path, "/x/**");
    let merged: Vec<_> = routes[1..]
        .iter()
        .map(|r| r.name.clone().unwrap())
        .collect();
    assert_eq!(merged, names);
    // The named rule keeps every field it does not set.
    let changed = &routes[4];
    assert_eq!(changed.ttl_secs, Some(2.5));
    assert_eq!(
        RouteRule {
            ttl_secs: preset[3].ttl_secs,
            ..changed.clone()
        },
        preset[3]
    );
    // Every other rule is the preset's, untouched.
    for (k, rule) in routes[1..].iter().enumerate().filter(|(k, _)| *k != 3) {
        assert_eq!(rule, &preset[k]);
    }
}

#[test]
fn preset_routes_replace_drops_the_preset_rules() {
    let c = ProxyConfig::from_toml_str(
        "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\npreset_routes = \"replace\"\n[[upstreams.coordination.routes]]\npath = \"/x\"\n",
    )
    .unwrap();
    assert_eq!(c.upstreams[0].coordination.routes.len(), 1);
    assert_eq!(c.upstreams[0].preset_routes, PresetRoutes::Replace);
    // `routes = []` merges nothing: the preset's rules stay.
    let c = ProxyConfig::from_toml_str(
        "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n[upstreams.coordination]\nroutes = []\n",
    )
    .unwrap();
    assert_eq!(
        c.upstreams[0].coordination.routes,
        coinbase::advanced_trade().routes
    );
    let err = ProxyConfig::from_toml_str(
        "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset_routes = \"drop\"\n",
    )
    .unwrap_err();
    assert_eq!(err.0[0].field, "upstreams[0].preset_routes", "{err}");
    assert_eq!(err.0[0].line, Some(4), "{err}");
}

#[test]
fn a_merged_rule_is_reported_where_the_file_has_it() {
    // The file's second rule overrides a preset rule in the middle of the
    // effective list; its error names the file's index and line.
    let text = "[[upstreams]]\nname = \"a\"\nurl = \"https://h\"\npreset = \"coinbase-advanced\"\n\
                [[upstreams.coordination.routes]]\nname = \"new\"\npath = \"/n\"\n\
                [[upstreams.coordination.routes]]\nname = \"fees\"\nscopes = [\"fils\"]\n";
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(
        err.0[0].field, "upstreams[0].coordination.routes[1].scopes[0]",
        "{err}"
    );
    assert_eq!(
        (err.0[0].line, err.0[0].column),
        (Some(10), Some(11)),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    // A type error, an unknown preset, two misspelt fields and an unknown
    // scope: each reported once, located, in one pass (serde alone stops
    // at the first of each section).
    let text = r#"[server]
listen = "127.0.0.1:8787"
max_connections = "many"
drain_sec = 3

[[upstreams]]
name = "advanced"
url = "https://api.coinbase.com"
preset = "coinbase-advnced"

[[upstreams]]
name = "exchange"
url = "https://api.exchange.coinbase.com"
preset = "coinbase-exchange"
prefix = "/exchange"
[upstreams.coordination.queue]
max_lenn = 5
[[upstreams.coordination.routes]]
name = "x"
path = "/x"
scopes = ["fils"]
"#;
    let err = ProxyConfig::from_toml_str(text).unwrap_err();
    let mut got: Vec<(String, Option<usize>)> =
        err.0.iter().map(|e| (e.field.clone(), e.line)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("server.drain_sec".to_owned(), Some(4)),
            ("server.max_connections".to_owned(), Some(3)),
            ("upstreams[0].preset".to_owned(), Some(9)),
            (
                "upstreams[1].coordination.queue.max_lenn".to_owned(),
                Some(17)
            ),
            (
                "upstreams[1].coordination.routes[0].scopes[0]".to_owned(),
                Some(21)
            ),
        ],
        "{err}"
    );
}

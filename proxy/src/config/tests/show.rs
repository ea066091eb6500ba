//! `config show`: provenance, and output that reads back as the same
//! configuration, for every preset and the examples.

use super::*;

fn round_trip(name: &str, text: &str) {
    let config = ProxyConfig::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let from = Provenance::from_file(name, text).unwrap();
    for diff in [false, true] {
        let shown = config.show(&from, diff);
        let again = ProxyConfig::from_toml_str(&shown)
            .unwrap_or_else(|e| panic!("{name} (diff: {diff}) does not read back: {e}\n{shown}"));
        assert_eq!(again, config, "{name} (diff: {diff}):\n{shown}");
    }
}

#[test]
fn shown_configurations_read_back_the_same_for_every_preset_and_example() {
    round_trip("empty.toml", "");
    for preset in ["coinbase-advanced", "coinbase-exchange", "none"] {
        round_trip(
            preset,
            &format!("[[upstreams]]\nname = \"u\"\nurl = \"https://h\"\npreset = \"{preset}\"\n"),
        );
    }
    round_trip(
        "examples/reference.toml",
        include_str!("../../../../examples/reference.toml"),
    );
    round_trip(
        "tests/conformance.toml",
        &include_str!("../../../../tests/conformance.toml").replace("@MOCK@", "http://127.0.0.1:9"),
    );
    round_trip(
        "merged.toml",
        "[server]\nlisten = \"127.0.0.1:9100\"\n\n[[upstreams]]\nname = \"a\"\nurl = \"https://api.coinbase.com\"\npreset = \"coinbase-advanced\"\n\
         [upstreams.coordination.scopes.public]\nrate = 5.0\n\
         [upstreams.coordination.credential.aliases]\n\"organizations/o/apiKeys/k1\" = \"trader-1\"\n\
         [[upstreams.coordination.routes]]\nname = \"public-market\"\nttl_secs = 2.0\n\
         [[upstreams.coordination.routes]]\nname = \"mine\"\npath = \"/x/**\"\nscopes = [\"public\"]\n",
    );
}

#[test]
fn each_value_says_where_it_came_from() {
    let text = "[server]\ndrain_secs = 3.0\n\n[[upstreams]]\nname = \"a\"\nurl = \"https://api.coinbase.com\"\npreset = \"coinbase-advanced\"\n\
                [[upstreams.coordination.routes]]\nname = \"public-market\"\nttl_secs = 2.0\n";
    let mut config = ProxyConfig::from_toml_str(text).unwrap();
    config
        .apply_override("upstreams.a.coordination.queue.max_len", "7")
        .unwrap();
    config
        .apply_override("upstreams[0].coordination.routes.fees.ttl_secs", "9")
        .unwrap();
    let from = Provenance::from_file("s.toml", text)
        .unwrap()
        .with_overrides([
            "upstreams.a.coordination.queue.max_len".to_owned(),
            "upstreams[0].coordination.routes.fees.ttl_secs".to_owned(),
        ]);
    let shown = config.show(&from, false);
    let line = |start: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` in:\n{shown}"))
            .to_owned()
    };
    assert_eq!(line("drain_secs"), "drain_secs = 3.0  # s.toml:2");
    assert_eq!(line("listen"), "listen = \"127.0.0.1:8787\"  # default");
    assert_eq!(line("max_len"), "max_len = 7  # --set");
    assert_eq!(line("ttl_secs = 2.0"), "ttl_secs = 2.0  # s.toml:10");
    assert!(
        line("max_attempts").ends_with("# preset coinbase-advanced"),
        "{shown}"
    );
    // The diff: what the file and --set say, plus the names (and the
    // upstream's identity) saying where.
    let diff = config.show(&from, true);
    let lines: Vec<&str> = diff
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('['))
        .collect();
    assert_eq!(
        lines,
        [
            "drain_secs = 3.0  # s.toml:2",
            "name = \"a\"  # s.toml:5",
            "preset = \"coinbase-advanced\"  # s.toml:7",
            "url = \"https://api.coinbase.com\"  # s.toml:6",
            "max_len = 7  # --set",
            "name = \"fees\"  # preset coinbase-advanced",
            "ttl_secs = 9.0  # --set",
            "name = \"public-market\"  # s.toml:9",
            "ttl_secs = 2.0  # s.toml:10",
        ],
        "{diff}"
    );
}

#[test]
fn rules_built_in_code_survive_overrides_and_show() {
    // Two rules only, on a preset with seventeen, built in code (as the
    // simulation's reference configuration is): `--set` and `config show`
    // must not bring the preset's back.
    let mut config = ProxyConfig::single_upstream("https://api.coinbase.com");
    config.upstreams[0].coordination.routes.truncate(2);
    let before = config.clone();
    config.apply_overrides(&[]).unwrap();
    assert_eq!(config, before, "an empty --set changes nothing");
    config.apply_override("server.drain_secs", "3").unwrap();
    assert_eq!(config.upstreams[0].coordination.routes.len(), 2);
    for diff in [false, true] {
        let shown = config.show(&Provenance::default(), diff);
        assert!(shown.contains("preset_routes = \"replace\""), "{shown}");
        let again = ProxyConfig::from_toml_str(&shown).unwrap();
        assert_eq!(
            again.upstreams[0].coordination,
            config.upstreams[0].coordination
        );
    }
}

//! The types themselves: presets, and the config as written back.

use super::*;

#[test]
fn preset_none_is_generic_and_valid() {
    let c = ProxyConfig::from_toml_str(
        "[[upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1234/v1\"\n",
    )
    .unwrap();
    let co = &c.upstreams[0].coordination;
    assert!(co.routes.is_empty());
    assert_eq!(co.scopes.keys().collect::<Vec<_>>(), ["global"]);
}

#[test]
fn serde_round_trip_keeps_the_effective_config() {
    let c = ProxyConfig::default();
    let text = toml::to_string(&c).unwrap();
    assert_eq!(ProxyConfig::from_toml_str(&text).unwrap(), c);
    let direct: ProxyConfig = toml::from_str(&text).unwrap();
    assert_eq!(direct, c);
}

//! `[[clients]] share`: which requests carry a client's share of the
//! buckets, under whose name, and what the check says of bad entries.

use super::*;

fn share_of(p: &Proxy, headers: &[(&str, &str)]) -> Option<(String, f64, bool)> {
    p.route(None, "GET", ACCOUNTS, &h(headers), Vec::new())
        .unwrap()
        .request
        .share
        .map(|s| (s.holder.to_string(), s.fraction, s.refuse))
}

#[test]
fn a_token_carries_its_clients_share_whatever_name_the_bot_gives() {
    let text = CONFIG
        .replace(
            "credentials = [\"desk\", \"ex\"]\n",
            "credentials = [\"desk\", \"ex\"]\nshare = 0.25\n",
        )
        .replace(
            "credentials = [\"desk\", \"ed\", \"open-signed\"]\n",
            "credentials = [\"desk\", \"ed\", \"open-signed\"]\nshare = 0.5\nabove_share = \"refuse\"\n",
        );
    let p = Proxy::with_secrets(ProxyConfig::from_toml_str(&text).unwrap(), &secrets()).unwrap();
    let bot1 = ("X-Syncoord-Token", "test");
    assert_eq!(share_of(&p, &[bot1]), Some(("bot1".into(), 0.25, false)));
    // A name of its own choosing does not escape the share.
    assert_eq!(
        share_of(&p, &[bot1, ("X-Syncoord-Client", "someone-else")]),
        Some(("bot1".into(), 0.25, false))
    );
    let bot2 = [
        ("X-Syncoord-Token", "b5d81f3e09a74c2e6f1d0a3b8c5e7f92"),
        ("X-Syncoord-Credential", "desk"),
    ];
    assert_eq!(share_of(&p, &bot2), Some(("bot2".into(), 0.5, true)));
    // The configuration without shares: none.
    assert_eq!(share_of(&proxy(), &[bot1]), None);
}

const SELF_SIGNED: &str = r#"
[[upstreams]]
name = "exchange"
url = "http://127.0.0.1:9000"
preset = "coinbase-exchange"

[[clients]]
name = "runner"
api_keys = ["key-of-runner"]
share = 0.2
"#;

#[test]
fn a_bot_signing_for_itself_is_known_by_its_api_key() {
    let p =
        Proxy::with_secrets(ProxyConfig::from_toml_str(SELF_SIGNED).unwrap(), &secrets()).unwrap();
    let share = |key: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("CB-ACCESS-KEY", key)];
        headers.extend_from_slice(extra);
        p.route(None, "GET", "/accounts", &h(&headers), Vec::new())
            .map(|f| f.request.share.map(|s| (s.holder.to_string(), s.fraction)))
            .map_err(|r| r.kind().as_str())
    };
    assert_eq!(
        share("key-of-runner", &[]),
        Ok(Some(("runner".into(), 0.2)))
    );
    assert_eq!(share("another-key", &[]), Ok(None));
    // No client is known by a token here: a Proxy-Authorization is not
    // read as one (and so not refused as an unknown token).
    assert_eq!(
        share("key-of-runner", &[("Proxy-Authorization", "Basic dTpw")]),
        Ok(Some(("runner".into(), 0.2)))
    );
}

#[test]
fn bad_shares_and_identities_are_located() {
    let bad = SELF_SIGNED.replace("share = 0.2", "share = 1.5").replace(
        "api_keys = [\"key-of-runner\"]",
        "api_keys = [\"key-of-runner\", \"\"]",
    );
    let err = ProxyConfig::from_toml_str(&bad).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["clients[0].share", "clients[0].api_keys[1]"],
        "{err}"
    );
    assert!(err.0.iter().all(|e| e.line.is_some()), "{err}");
    // A client known by its key signs for itself: no token, no credentials.
    let both = CONFIG.replace(
        "credentials = [\"desk\", \"ex\"]\n",
        "credentials = [\"desk\", \"ex\"]\napi_keys = [\"k\"]\n",
    );
    let err = ProxyConfig::from_toml_str(&both).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["clients[0].api_keys", "clients[0].credentials"],
        "{err}"
    );
}

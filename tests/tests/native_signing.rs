//! The signing conformance cases against the native daemon, in front of
//! the strict mock. The keys reach the daemon as it reads them in
//! production: from its process environment (`*_env` in the config). In
//! a test binary of its own, so that setting the environment races with
//! no other test.

use std::sync::Arc;

use syncoord_conformance::{signing, Target};
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

#[test]
fn native_daemon_signs() {
    for (name, value) in signing::SECRETS {
        std::env::set_var(name, value);
    }
    let verifier = Arc::new(signing::verifier());
    let mock = MockUpstream::start(MockOptions {
        verify: Some(Arc::clone(&verifier)),
        ..MockOptions::default()
    })
    .expect("strict mock starts");
    let config = ProxyConfig::from_toml_str(&signing::config_for(&mock.base_url()))
        .unwrap_or_else(|e| panic!("tests/conformance-signing.toml: {e}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let target = Target {
        name: "native, signing".into(),
        base: format!("http://{}", daemon.local_addr()),
        mock: mock.base_url(),
    };
    let result = signing::run_all(&target, &verifier);
    daemon.shutdown();
    mock.shutdown();
    if let Err(failures) = result {
        panic!("{failures}");
    }
}

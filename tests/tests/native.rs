//! The conformance suite against the native daemon, started in-process on
//! an ephemeral loopback port in front of the mock upstream.

use syncoord_conformance::{config_for, run_all, Target};
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

#[test]
fn native_daemon_conforms() {
    let mock = MockUpstream::start(MockOptions::default()).expect("mock upstream starts");
    let config = ProxyConfig::from_toml_str(&config_for(&mock.base_url()))
        .unwrap_or_else(|e| panic!("tests/conformance.toml: {e}"));
    let daemon = Daemon::start(config).expect("daemon starts");
    let target = Target {
        name: "native".into(),
        base: format!("http://{}", daemon.local_addr()),
        mock: mock.base_url(),
    };
    let result = run_all(&target);
    daemon.shutdown();
    mock.shutdown();
    if let Err(failures) = result {
        panic!("{failures}");
    }
}

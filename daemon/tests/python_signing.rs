//! Signing mode with the Python clients bots use (ccxt 4.5.90,
//! coinbase-advanced-py 1.8.4 from the venv `scripts/install-python-venv.sh`
//! makes), holding no exchange secret: the README's "keys in one place"
//! snippets, run by `scripts/python/signing_mode.py` against the daemon in
//! front of the strict mock, which verifies every signature.
//!
//! `SYNCOORD_SKIP_PYTHON=1` skips it knowingly (no venv on this machine).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use syncoord_daemon::ca::LocalCa;
use syncoord_daemon::{Daemon, HostSecrets};
use syncoord_mock::{MockOptions, MockUpstream, Verifier};
use syncoord_proxy::signing::token_sha256_hex;
use syncoord_proxy::ProxyConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

const CDP_KEY: &str = "organizations/py/apiKeys/desk";
const EX_KEY: &str = "py-exchange-key";
const EX_SECRET: &str = "cHl0aG9uLWV4Y2hhbmdlLXNlY3JldA==";
const TOKEN: &str = "py-desk-token-0b5e";
const EX_TOKEN: &str = "py-exchange-token-77a1";

#[test]
fn python_clients_with_only_a_token_are_signed_for_and_verified() {
    if std::env::var_os("SYNCOORD_SKIP_PYTHON").is_some_and(|v| v == "1") {
        eprintln!("SYNCOORD_SKIP_PYTHON=1: the Python signing test is skipped");
        return;
    }
    let venv = std::env::var_os("SYNCOORD_PYTHON_VENV")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { repo().join(p) })
        .unwrap_or_else(|| repo().join(".toolchain/python"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/install-python-venv.sh` (or set SYNCOORD_SKIP_PYTHON=1)",
        python.display()
    );
    let dir = std::env::temp_dir().join(format!("syncoord-python-signing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pem = syncoord_mock::p256::SecretKey::from_slice(&[0x5a; 32])
        .unwrap()
        .to_sec1_pem(Default::default())
        .unwrap()
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("cdp.json");
        std::fs::write(
            &key,
            serde_json::json!({"name": CDP_KEY, "privateKey": pem}).to_string(),
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = dir.join("ex.secret");
        std::fs::write(&secret, EX_SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let verifier = Verifier::new()
        .cdp_private_key(CDP_KEY, &pem)
        .unwrap()
        .exchange_base64(EX_KEY, EX_SECRET, "py-pass")
        .unwrap();
    let mock = MockUpstream::start(MockOptions {
        verify: Some(Arc::new(verifier)),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let ca = LocalCa::open(&dir.join("ca")).unwrap();
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
drain_secs = 0.5
ca_dir = "{ca_dir}"

[[upstreams]]
name = "advanced"
url = "{url}"
preset = "coinbase-advanced"
origins = ["https://api.coinbase.com"]

[[upstreams]]
name = "exchange"
url = "{url}"
preset = "coinbase-exchange"
prefix = "/exchange"
origins = ["https://api.exchange.coinbase.com"]

[[credentials]]
name = "desk"
upstream = "advanced"
kind = "coinbase-cdp"
key_file = "cdp.json"

[[credentials]]
name = "exchange-main"
upstream = "exchange"
kind = "coinbase-exchange"
key = "{EX_KEY}"
secret_file = "ex.secret"
passphrase_env = "SYNCOORD_TEST_NEVER_SET"

[[clients]]
name = "desk-bot"
token_sha256 = "{t}"
credentials = ["desk"]

[[clients]]
name = "exchange-bot"
token_sha256 = "{e}"
credentials = ["exchange-main"]
"#,
        ca_dir = dir.join("ca").display(),
        url = mock.base_url(),
        t = token_sha256_hex(TOKEN),
        e = token_sha256_hex(EX_TOKEN),
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The passphrase comes from the environment a host sees: a source
    // that adds it to the files of `dir`.
    struct WithPassphrase(HostSecrets);
    impl syncoord_proxy::signing::SecretSource for WithPassphrase {
        fn env(&self, name: &str) -> Option<zeroize::Zeroizing<String>> {
            (name == "SYNCOORD_TEST_NEVER_SET")
                .then(|| zeroize::Zeroizing::new("py-pass".to_owned()))
        }
        fn file(&self, path: &str) -> Result<syncoord_proxy::signing::SecretFile, String> {
            self.0.file(path)
        }
    }
    let daemon =
        Daemon::start_with_secrets(config, &WithPassphrase(HostSecrets::relative_to(&dir)))
            .expect("daemon starts");
    let ca_pem = ca.cert_path();
    let out = Command::new(&python)
        .arg(repo().join("scripts/python/signing_mode.py"))
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env(
            "SYNCOORD_TEST_DAEMON",
            format!("http://{}", daemon.local_addr()),
        )
        .env("SYNCOORD_TEST_TOKEN", TOKEN)
        .env("SYNCOORD_TEST_EX_TOKEN", EX_TOKEN)
        .env("SYNCOORD_TEST_CDP_KEY", CDP_KEY)
        .env("SYNCOORD_TEST_EX_KEY", EX_KEY)
        .env("REQUESTS_CA_BUNDLE", &ca_pem)
        .env("SSL_CERT_FILE", &ca_pem)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(
        !stdout.contains(&pem[40..80]),
        "no key material in the output"
    );
}

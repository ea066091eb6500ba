//! The conformance suite against the Cloudflare Worker host, run by
//! `wrangler dev` (workerd, fully local) on a loopback port, in front of the
//! mock upstream on 127.0.0.1.
//!
//! Needs the edge toolchain (`bash scripts/install-edge-toolchain.sh`, which
//! `.ci/run` runs first). Without it this test fails and says so; set
//! `SYNCOORD_SKIP_EDGE=1` to skip it knowingly on a machine without Node.
//! Before the suite, the Worker's `/dashboard` is loaded in headless
//! chromium under load and checked as the native one is
//! (`tests/tests/dashboard.rs`); `SYNCOORD_SKIP_BROWSER=1` skips that part.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::atomic::Ordering;

use std::sync::{Arc, Mutex};

use syncoord_conformance::{browser, config_for, run_all, signing, Target};
use syncoord_mock::{MockOptions, MockUpstream};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Stops `wrangler dev` when the test ends, even by a panic.
struct WranglerDev {
    root: PathBuf,
}

impl WranglerDev {
    /// `secrets`: a dotenv file of Worker secrets.
    fn start(
        root: &Path,
        config: &Path,
        secrets: Option<&Path>,
    ) -> Result<(WranglerDev, String), String> {
        let mut command = Command::new("bash");
        command
            .arg(root.join("scripts/edge-dev.sh"))
            .arg("start")
            .arg("--config")
            .arg(config);
        if let Some(file) = secrets {
            command.arg("--env-file").arg(file);
        }
        let out = command
            .current_dir(root)
            .output()
            .map_err(|e| format!("running scripts/edge-dev.sh: {e}"))?;
        let guard = WranglerDev {
            root: root.to_path_buf(),
        };
        if !out.status.success() {
            return Err(format!(
                "scripts/edge-dev.sh start failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((guard, url))
    }
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.root.join("scripts/edge-dev.sh"))
            .arg("stop")
            .current_dir(&self.root)
            .status();
    }
}

#[test]
fn edge_worker_conforms() {
    if std::env::var_os("SYNCOORD_SKIP_EDGE").is_some() {
        eprintln!("SYNCOORD_SKIP_EDGE is set: not testing the Worker");
        return;
    }
    let _turn = ONE_WORKER.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let mock = MockUpstream::start(MockOptions::default()).expect("mock upstream starts");
    let config =
        std::env::temp_dir().join(format!("syncoord-edge-conf-{}.toml", std::process::id()));
    std::fs::write(&config, config_for(&mock.base_url())).expect("write the config");
    let (wrangler, base) = match WranglerDev::start(&root, &config, None) {
        Ok(started) => started,
        Err(why) => panic!(
            "{why}\nThe edge toolchain is installed by `bash scripts/install-edge-toolchain.sh` \
             (`.ci/run` does it); set SYNCOORD_SKIP_EDGE=1 to skip this test knowingly."
        ),
    };
    // The dashboard in a browser first, while the Worker has only the
    // bots' shards (an endpoint call reports at most 47).
    if let Some(chromium) = browser::chromium() {
        let (stop, bots) = browser::bots(&base);
        let page = browser::load(chromium, &format!("{base}/dashboard"), 1400, 900, 12_000);
        stop.store(true, Ordering::Relaxed);
        for bot in bots {
            bot.join().expect("bot thread");
        }
        browser::check_live(&page, &base, "mock/global", "Per shard");
    }
    let target = Target {
        name: "edge".into(),
        base,
        mock: mock.base_url(),
    };
    let result = run_all(&target);
    drop(wrangler);
    mock.shutdown();
    let _ = std::fs::remove_file(&config);
    if let Err(failures) = result {
        panic!("{failures}");
    }
}

/// scripts/edge-dev.sh runs one `wrangler dev` at a time: the tests here
/// take turns.
static ONE_WORKER: Mutex<()> = Mutex::new(());

/// Signing mode, on a Worker of its own in front of a strict mock, its
/// keys given as Worker secrets.
#[test]
fn edge_worker_signs() {
    if std::env::var_os("SYNCOORD_SKIP_EDGE").is_some() {
        eprintln!("SYNCOORD_SKIP_EDGE is set: not testing the Worker");
        return;
    }
    let _turn = ONE_WORKER.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(failures) = signed_edge_conforms(&repo_root()) {
        panic!("{failures}");
    }
}

fn signed_edge_conforms(root: &Path) -> Result<(), String> {
    let verifier = Arc::new(signing::verifier());
    let mock = MockUpstream::start(MockOptions {
        verify: Some(Arc::clone(&verifier)),
        ..MockOptions::default()
    })
    .map_err(|e| format!("strict mock: {e}"))?;
    let dir = std::env::temp_dir().join(format!("syncoord-edge-signing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("config.toml");
    let secrets = dir.join("secrets.env");
    let written = std::fs::write(&config, signing::config_for(&mock.base_url()))
        .and_then(|()| std::fs::write(&secrets, signing::env_file()));
    let result = match written {
        Err(e) => Err(format!("writing {}: {e}", dir.display())),
        Ok(()) => match WranglerDev::start(root, &config, Some(&secrets)) {
            Err(why) => Err(why),
            Ok((wrangler, base)) => {
                let target = Target {
                    name: "edge, signing".into(),
                    base,
                    mock: mock.base_url(),
                };
                let result = signing::run_all(&target, &verifier);
                drop(wrangler);
                result
            }
        },
    };
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

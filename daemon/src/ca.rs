//! The local certificate authority behind CONNECT interception and the
//! TLS listener.
//!
//! A client that sends its calls through syncoord with `HTTPS_PROXY`
//! opens a TLS session for the real host (`api.coinbase.com`) inside the
//! CONNECT: syncoord answers it with a leaf certificate for that host,
//! signed by this CA, which the client has been told to trust
//! (`<ca_dir>/ca.pem`). Only hosts a configured upstream answers for are
//! ever given a leaf (the proxy refuses any other CONNECT with 403).
//!
//! As mitmproxy does (`certs.py`): one key pair for every leaf (minting a
//! leaf is then one signature, no key generation), leaves kept in memory
//! (at most [`MAX_LEAVES`]), the CA created on first use and its key
//! readable by the owner only (mode 0600, in a 0700 folder).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use syncoord_server::rustls::{self, ServerConfig};

/// Leaves kept at most (mitmproxy keeps about 100); past it the oldest
/// goes.
pub const MAX_LEAVES: usize = 100;
/// A leaf is re-minted after this long (it is valid for 397 days, the most
/// browsers and Apple's clients accept).
const LEAF_REMINT: std::time::Duration = std::time::Duration::from_secs(300 * 86_400);
/// The CA's name; fixed, so the issuer of a leaf can be rebuilt from the
/// key on disk without parsing the certificate.
const CA_NAME: &str = "syncoord local CA";

/// Why the CA or a leaf could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CA folder or a file in it cannot be made or read.
    #[error("CA folder {path}: {error}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The CA folder (or its certificate) may be written by other users,
    /// who could then swap the CA every intercepting client trusts.
    #[error("{path} is writable by group or others (mode {mode:o}): whoever can write there can replace the CA that clients trust; `chmod go-w` it (syncoord makes its folder 0700), or point `server.ca_dir` at a folder of your own")]
    Writable {
        /// The folder or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The CA key may be read by other users: refused.
    #[error("CA key {path} is readable by others (mode {mode:o}); it must be 0600")]
    KeyMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A certificate cannot be made.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refuses the chain or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{0}")]
    Pem(String),
}

/// The default CA folder: `$XDG_DATA_HOME/syncoord/ca`, else
/// `~/.local/share/syncoord/ca`, else `./syncoord-ca`.
pub fn default_ca_dir() -> PathBuf {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(data).join("syncoord").join("ca");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/syncoord/ca");
    }
    PathBuf::from("syncoord-ca")
}

/// A loaded CA and the leaves it minted.
pub struct LocalCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The one key pair of every leaf.
    leaf_key: KeyPair,
    leaves: Mutex<HashMap<String, (Arc<ServerConfig>, Instant)>>,
    minted: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").field("dir", &self.dir).finish()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    name.push(DnType::OrganizationName, "syncoord");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

impl LocalCa {
    /// Loads the CA in `dir`, creating it (and the folder) on first use.
    pub fn open(dir: &Path) -> Result<LocalCa, CaError> {
        let io = |error| CaError::Io {
            path: dir.to_owned(),
            error,
        };
        let existed = dir.exists();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let mode = fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            if existed {
                // Someone else's folder, or one made open on purpose: not
                // ours to change, and not safe to use.
                return Err(CaError::Writable {
                    path: dir.to_owned(),
                    mode,
                });
            }
            // Ours (a umask cannot widen 0700, but a parent's default ACL
            // can): closed again.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if let Ok(meta) = fs::metadata(&cert_path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                return Err(CaError::Writable {
                    path: cert_path,
                    mode,
                });
            }
        }
        let key = if key_path.exists() && cert_path.exists() {
            let mode = fs::metadata(&key_path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CaError::KeyMode {
                    path: key_path,
                    mode,
                });
            }
            let pem = fs::read_to_string(&key_path).map_err(io)?;
            KeyPair::from_pem(&pem)?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            // The key first, created with 0600 so it is never readable by
            // others, not even for a moment.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key_path)
                .map_err(io)?;
            file.write_all(key.serialize_pem().as_bytes()).map_err(io)?;
            fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).map_err(io)?;
            fs::write(&cert_path, cert.pem()).map_err(io)?;
            tracing::info!(ca = %cert_path.display(), "created the local CA: clients that go through syncoord's CONNECT must trust this certificate");
            key
        };
        Ok(LocalCa {
            dir: dir.to_owned(),
            issuer: Issuer::new(ca_params(), key),
            leaf_key: KeyPair::generate()?,
            leaves: Mutex::new(HashMap::new()),
            minted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The certificate clients must trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Leaves minted since start (a cached one is not counted again).
    pub fn minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A TLS server configuration whose certificate names `host`: cached,
    /// minted on first use.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let now = Instant::now();
        {
            let leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((config, at)) = leaves.get(host) {
                if now.duration_since(*at) < LEAF_REMINT {
                    return Ok(Arc::clone(config));
                }
            }
        }
        let config = self.mint(&[host])?;
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if leaves.len() >= MAX_LEAVES && !leaves.contains_key(host) {
            if let Some(oldest) = leaves
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(h, _)| h.clone())
            {
                leaves.remove(&oldest);
            }
        }
        leaves.insert(host.to_owned(), (Arc::clone(&config), now));
        Ok(config)
    }

    /// A leaf for `names` (DNS names or IP addresses), not cached.
    pub fn mint(&self, names: &[&str]) -> Result<Arc<ServerConfig>, CaError> {
        let names: Vec<String> = names
            .iter()
            .map(|n| n.trim_start_matches('[').trim_end_matches(']').to_owned())
            .collect();
        let mut params = CertificateParams::new(names.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(397);
        let leaf = params.signed_by(&self.leaf_key, &self.issuer)?;
        self.minted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        server_config(vec![leaf.der().clone()], key)
    }
}

/// HTTP/1.1 over TLS with this chain, on rustls' ring provider.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, CaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // Clients that offer h2 get HTTP/1.1, which is what this server speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS configuration from PEM files (`server.tls_cert`, `tls_key`).
pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, CaError> {
    use rustls_pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| CaError::Pem(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| CaError::Pem(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(CaError::Pem(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| CaError::Pem(format!("{}: {e}", key.display())))?;
    server_config(chain, key)
}

/// The CA, opened when first needed: at start when the daemon can
/// intercept CONNECT (an `https://` upstream or origin), else on first
/// use, so a daemon that cannot be a forward proxy never writes a key to
/// disk. A CA that cannot be opened is tried again, at most once per
/// backoff (1 s, doubling to 60 s), when a CONNECT or a probe asks, and at
/// once on reload: fixing the folder needs no restart.
#[derive(Debug)]
pub struct LazyCa {
    dir: PathBuf,
    state: Mutex<CaState>,
}

#[derive(Debug, Default)]
struct CaState {
    ca: Option<Arc<LocalCa>>,
    /// The last failure, and when to try again.
    failed: Option<(Arc<CaError>, Instant)>,
    backoff: std::time::Duration,
}

/// First wait before opening a CA that failed again.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest wait between attempts.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

impl LazyCa {
    /// The CA in `dir`, not yet opened.
    pub fn new(dir: PathBuf) -> LazyCa {
        LazyCa {
            dir,
            state: Mutex::new(CaState::default()),
        }
    }

    /// The CA, or why it cannot be had: opened now when it never was, or
    /// when it failed and its backoff is over; else the kept answer.
    pub fn get(&self) -> Result<Arc<LocalCa>, Arc<CaError>> {
        self.get_at(Instant::now())
    }

    fn get_at(&self, now: Instant) -> Result<Arc<LocalCa>, Arc<CaError>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ca) = &state.ca {
            return Ok(Arc::clone(ca));
        }
        if let Some((why, retry_at)) = &state.failed {
            if now < *retry_at {
                return Err(Arc::clone(why));
            }
        }
        match LocalCa::open(&self.dir) {
            Ok(ca) => {
                let ca = Arc::new(ca);
                if state.failed.take().is_some() {
                    tracing::info!(ca = %ca.cert_path().display(), "the local CA is usable again: CONNECT interception works");
                }
                state.ca = Some(Arc::clone(&ca));
                Ok(ca)
            }
            Err(why) => {
                let why = Arc::new(why);
                let first = state.failed.is_none();
                state.backoff = if first {
                    RETRY_FIRST
                } else {
                    (state.backoff * 2).clamp(RETRY_FIRST, RETRY_MAX)
                };
                if first {
                    tracing::error!(error = %why, "the local CA for CONNECT is unusable: intercepting bots get 502 ca_unavailable, /readyz says not ready; it is tried again (backoff up to 60 s, and on reload)");
                }
                state.failed = Some((Arc::clone(&why), now + state.backoff));
                Err(why)
            }
        }
    }

    /// Why the CA is unusable, when its last attempt failed: tried again
    /// first if its backoff is over (what a probe asks).
    pub fn problem(&self) -> Option<String> {
        let failed = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed
            .is_some();
        if !failed {
            return None;
        }
        self.get().err().map(|why| why.to_string())
    }

    /// Tries a CA that failed again now, whatever its backoff (a reload).
    pub fn retry_now(&self) {
        let due = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match &mut state.failed {
                Some((_, retry_at)) => {
                    *retry_at = Instant::now();
                    true
                }
                None => false,
            }
        };
        if due {
            let _ = self.get();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "syncoord-ca-test-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn created_once_key_private_leaves_cached_and_reloaded() {
        let dir = temp_dir("basic");
        let ca = LocalCa::open(&dir).unwrap();
        let mode = fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let pem = fs::read_to_string(ca.cert_path()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let a = ca.server_config("api.coinbase.com").unwrap();
        let b = ca.server_config("api.coinbase.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(ca.minted(), 1);
        ca.server_config("api.exchange.coinbase.com").unwrap();
        assert_eq!(ca.minted(), 2);
        // Opened again: the same CA (its certificate is not rewritten).
        let again = LocalCa::open(&dir).unwrap();
        assert_eq!(fs::read_to_string(again.cert_path()).unwrap(), pem);
        // A key others can read is refused, not used.
        fs::set_permissions(dir.join("ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(LocalCa::open(&dir), Err(CaError::KeyMode { .. })));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_folder_others_may_write_is_refused_when_it_was_there_and_closed_when_ours() {
        let dir = temp_dir("open-dir");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = LocalCa::open(&dir).unwrap_err();
        assert!(
            matches!(err, CaError::Writable { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        assert!(!dir.join("ca.key").exists(), "no key written into it");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let ca = LocalCa::open(&dir).unwrap();
        // A certificate others may write is refused too.
        fs::set_permissions(ca.cert_path(), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(LocalCa::open(&dir), Err(CaError::Writable { .. })));
        let _ = fs::remove_dir_all(&dir);
        // A folder syncoord makes is 0700.
        let made = temp_dir("made").join("deeper");
        LocalCa::open(&made).unwrap();
        let mode = fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = fs::remove_dir_all(made.parent().unwrap());
    }

    #[test]
    fn a_ca_that_failed_is_tried_again_after_its_backoff_and_on_demand() {
        let dir = temp_dir("retry");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let lazy = LazyCa::new(dir.clone());
        let t0 = Instant::now();
        assert!(lazy.get_at(t0).is_err());
        assert!(lazy.problem().is_some_and(|p| p.contains("writable")));
        // Fixed: not tried again before the backoff...
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(lazy
            .get_at(t0 + std::time::Duration::from_millis(500))
            .is_err());
        // ...and usable after it, with no restart.
        assert!(lazy.get_at(t0 + RETRY_FIRST).is_ok());
        assert_eq!(lazy.problem(), None);
        // Broken before the first use, then fixed: a reload tries at once.
        let other = temp_dir("reload");
        fs::create_dir_all(&other).unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o757)).unwrap();
        let lazy = LazyCa::new(other.clone());
        assert!(lazy.get().is_err());
        fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
        lazy.retry_now();
        assert_eq!(lazy.problem(), None);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&other);
    }

    #[test]
    fn the_leaf_cache_is_bounded() {
        let dir = temp_dir("bound");
        let ca = LocalCa::open(&dir).unwrap();
        for i in 0..MAX_LEAVES + 5 {
            ca.server_config(&format!("h{i}.example")).unwrap();
        }
        assert_eq!(ca.leaves.lock().unwrap().len(), MAX_LEAVES);
        let _ = fs::remove_dir_all(&dir);
    }
}

//! Where the native host finds the secrets `[[credentials]]` and
//! `[[clients]]` point at: the process environment and files.

use std::path::{Path, PathBuf};

use syncoord_wire::{SecretFile, SecretFileError, SecretSource};
use zeroize::Zeroizing;

/// Env vars of this process, and files (a relative path is taken from
/// `base_dir`, the config file's folder, when set; else from the working
/// directory). A file's mode is reported so that a key others may read
/// is warned about.
#[derive(Debug, Clone, Default)]
pub struct HostSecrets {
    base_dir: Option<PathBuf>,
}

/// Longest secret file read: key files are a few hundred bytes.
const MAX_SECRET_FILE: u64 = 64 * 1024;

impl HostSecrets {
    /// Relative paths are resolved against `base_dir`.
    pub fn relative_to(base_dir: impl Into<PathBuf>) -> Self {
        HostSecrets {
            base_dir: Some(base_dir.into()),
        }
    }

    fn path(&self, path: &str) -> PathBuf {
        match &self.base_dir {
            Some(dir) if Path::new(path).is_relative() => dir.join(path),
            _ => PathBuf::from(path),
        }
    }
}

impl SecretSource for HostSecrets {
    fn env(&self, name: &str) -> Option<Zeroizing<String>> {
        std::env::var(name).ok().map(Zeroizing::new)
    }

    fn file(&self, path: &str) -> Result<SecretFile, SecretFileError> {
        let full = self.path(path);
        let meta = std::fs::metadata(&full).map_err(SecretFileError::Read)?;
        if !meta.is_file() {
            return Err(SecretFileError::NotAFile);
        }
        if meta.len() > MAX_SECRET_FILE {
            return Err(SecretFileError::TooLarge {
                size: meta.len(),
                max: MAX_SECRET_FILE,
            });
        }
        let bytes = Zeroizing::new(std::fs::read(&full).map_err(SecretFileError::Read)?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| SecretFileError::NotUtf8)?
            .to_owned();
        Ok(SecretFile {
            text: Zeroizing::new(text),
            mode: mode(&meta),
        })
    }
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode())
}

#[cfg(not(unix))]
fn mode(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

#[cfg(all(test, unix, not(loom)))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_resolve_against_the_base_dir_and_report_their_mode() {
        let dir = std::env::temp_dir().join(format!("syncoord-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.txt");
        std::fs::write(&file, "abc").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let secrets = HostSecrets::relative_to(&dir);
        let read = secrets.file("key.txt").unwrap();
        assert_eq!(read.text.as_str(), "abc");
        assert_eq!(read.mode.map(|m| m & 0o777), Some(0o640));
        let missing = secrets.file("nope.txt").err().unwrap().to_string();
        assert!(missing.starts_with("cannot read it"), "{missing}");
        assert_eq!(
            secrets.file(".").err().map(|e| e.to_string()).as_deref(),
            Some("is not a file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

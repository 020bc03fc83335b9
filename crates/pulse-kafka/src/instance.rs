//! The transactional id of an exactly-once instance. It must be stable across restarts (a
//! restarted instance then aborts what its predecessor left open, at once, and fences it
//! should it still run) and distinct between instances running at the same time (two
//! instances with one id fence each other). Configured explicitly, it is used as is;
//! otherwise it is `<group>-<host name>-<n>`, `n` the lowest number whose lock file in the
//! temporary directory no other live process of this host holds. A lock is released by
//! the kernel when its process ends, however it ends, so a restart takes the number of the
//! instance it replaces.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Most instances of one group on one host.
const MAX_INSTANCES: usize = 1024;

/// A transactional id, held for as long as this value lives.
#[derive(Debug)]
pub struct InstanceId {
    pub transactional_id: String,
    /// The lock that makes the id this process's own (none for a configured id).
    _lock: Option<File>,
}

/// The transactional id of this process: `configured` when it is not empty, otherwise
/// claimed as described in the module documentation, under `lock_dir`.
pub fn claim(configured: &str, group: &str, lock_dir: &Path) -> io::Result<InstanceId> {
    if !configured.is_empty() {
        return Ok(InstanceId {
            transactional_id: configured.to_string(),
            _lock: None,
        });
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let prefix = format!("{group}-{host}");
    std::fs::create_dir_all(lock_dir)?;
    for n in 0..MAX_INSTANCES {
        let id = format!("{prefix}-{n}");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(lock_dir, &id))?;
        match file.try_lock() {
            Ok(()) => {
                return Ok(InstanceId {
                    transactional_id: id,
                    _lock: Some(file),
                })
            }
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
    }
    Err(io::Error::other(format!(
        "{MAX_INSTANCES} instances of {prefix} already run on this host"
    )))
}

/// The default directory of instance locks.
pub fn default_lock_dir() -> PathBuf {
    std::env::temp_dir().join("pulse-instances")
}

fn lock_path(dir: &Path, id: &str) -> PathBuf {
    let file: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{file}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_get_distinct_ids_and_a_freed_id_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim("", "pulse-enrich", dir.path()).unwrap();
        let second = claim("", "pulse-enrich", dir.path()).unwrap();
        assert!(first.transactional_id.starts_with("pulse-enrich-"));
        assert!(first.transactional_id.ends_with("-0"), "{first:?}");
        assert!(second.transactional_id.ends_with("-1"), "{second:?}");
        let freed = first.transactional_id.clone();
        drop(first);
        let third = claim("", "pulse-enrich", dir.path()).unwrap();
        assert_eq!(third.transactional_id, freed);
        let other_group = claim("", "other", dir.path()).unwrap();
        assert!(other_group.transactional_id.ends_with("-0"));
    }

    #[test]
    fn a_configured_id_is_used_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let id = claim("enrich-a", "pulse-enrich", dir.path()).unwrap();
        assert_eq!(id.transactional_id, "enrich-a");
    }
}

//! Small durable state of a source (a REST cursor, a backfill's progress): one JSON file, replaced atomically
//! (write a sibling, fsync, rename, fsync the directory), so a crash leaves either the old or the new state,
//! never a torn one. Callers save only after the messages the state covers were delivered to Kafka
//! (`Emitter::flush`), so a restart neither re-sends nor skips.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct StateFile<T> {
    path: PathBuf,
    value: T,
}

impl<T: Serialize + DeserializeOwned + Default> StateFile<T> {
    /// The saved state, or the default when the file does not exist yet. A file that exists but cannot be read
    /// is an error: starting over silently would re-send (or skip) what the file was there to prevent.
    pub fn open(path: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let path = path.into();
        let value = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("state file {} is not valid", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => T::default(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, value })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self) -> &T {
        &self.value
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.value
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        let name = self
            .path
            .file_name()
            .context("state path has no file name")?;
        let temporary = directory.join(format!(".{}.tmp", name.to_string_lossy()));
        let bytes = serde_json::to_vec_pretty(&self.value)?;
        let mut file = File::create(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        // The rename is durable only once the directory entry is.
        File::open(&directory)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn missing_file_is_the_default_and_a_save_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/cursor.json");
        let mut state: StateFile<BTreeMap<String, i64>> = StateFile::open(&path).unwrap();
        assert!(state.get().is_empty());
        state.get_mut().insert("AAPL".into(), 1_700_000_000_000);
        state.save().unwrap();
        let reopened: StateFile<BTreeMap<String, i64>> = StateFile::open(&path).unwrap();
        assert_eq!(reopened.get().get("AAPL"), Some(&1_700_000_000_000));
        assert!(!dir.path().join("nested/.cursor.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        fs::write(&path, b"{\"AAPL\": ").unwrap();
        let opened: anyhow::Result<StateFile<BTreeMap<String, i64>>> = StateFile::open(&path);
        assert!(format!("{:#}", opened.err().unwrap()).contains("not valid"));
    }
}

//! Files that survive a power cut. Every file keel writes outside its database (the admin key,
//! model files) is written to a temporary file beside its target, fsynced, renamed into place,
//! and the directory fsynced, so after a cut the file is either whole or absent, never torn or
//! silently lost; every directory keel creates is fsynced into its parent.
//!
//! It lives in this crate because it is the lowest one that does file I/O and that both the
//! server (the admin key) and the binary (the data directory) depend on; keel-core does none.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Creates `path` and any missing parents, fsyncing each new directory's entry into its parent,
/// so a directory that exists after this returns still exists after a power cut.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(path);
    while let Some(dir) = next.filter(|d| !d.as_os_str().is_empty()) {
        if dir.is_dir() {
            break;
        }
        missing.push(dir);
        next = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => sync_parent(dir)?,
            // Another process made it meanwhile: it synced it, or will.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fsyncs the directory `dir`, making the entries created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; renames are durable once the file is.
        let _ = dir;
        Ok(())
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Writes `contents` to `path` durably (see [`DurableFile`]), readable by the owner only
/// when `private`.
pub fn write(path: &Path, contents: &[u8], private: bool) -> io::Result<()> {
    let mut file = DurableFile::create(path, private)?;
    file.write_all(contents)?;
    file.commit()
}

/// A file being written: the bytes go to a temporary file beside `path`; `commit` fsyncs it,
/// renames it over `path` and fsyncs the directory. Dropped uncommitted, the temporary file is
/// removed and `path` is left as it was.
pub struct DurableFile {
    file: Option<File>,
    temp: PathBuf,
    path: PathBuf,
}

impl DurableFile {
    /// Starts writing `path` (its directory must exist); with `private`, mode 0600 on Unix.
    pub fn create(path: &Path, private: bool) -> io::Result<DurableFile> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file", path.display()),
            )
        })?;
        let temp = path.with_file_name(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            unique_suffix()
        ));
        let mut options = File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let file = options.open(&temp)?;
        Ok(DurableFile {
            file: Some(file),
            temp,
            path: path.to_path_buf(),
        })
    }

    /// Makes the file durable under its name: fsync, rename, fsync of the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("a DurableFile is committed once");
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temp, &self.path)?;
        // From here the temporary name is gone; nothing is left to clean up.
        self.temp = PathBuf::new();
        sync_parent(&self.path)
    }
}

impl Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("not yet committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not yet committed").flush()
    }
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Distinct for every call in this process and across processes.
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-durable-{name}-{}", unique_suffix()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_every_missing_directory() {
        let root = scratch("dirs");
        let deep = root.join("a").join("b");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_committed_file_replaces_the_old_one_and_leaves_no_temporary_file() {
        let root = scratch("commit");
        create_dir_all(&root).unwrap();
        let path = root.join("admin.key");
        write(&path, b"old\n", true).unwrap();
        write(&path, b"new\n", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_file_dropped_uncommitted_leaves_the_old_one_and_no_temporary_file() {
        let root = scratch("drop");
        create_dir_all(&root).unwrap();
        let path = root.join("model.gguf");
        write(&path, b"whole", false).unwrap();
        let mut half = DurableFile::create(&path, false).unwrap();
        half.write_all(b"ha").unwrap();
        drop(half);
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
        std::fs::remove_dir_all(root).unwrap();
    }
}

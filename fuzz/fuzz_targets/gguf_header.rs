//! GGUF model files (the `keel-local` crate): the header, metadata and tensor directory, then
//! the tokenizer and the model built from them, as `LocalClient::load` reads a file. The
//! reader takes a path, so each input is written to one scratch file first. A damaged file
//! must be an error naming it, never a panic or an allocation its header asks for.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use keel_local::{LocalClient, LocalOptions};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

fn scratch_file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("keel-fuzz-{}.gguf", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file();
    std::fs::write(path, data).expect("the scratch file is writable");
    let _ = LocalClient::load(path, LocalOptions::default());
});

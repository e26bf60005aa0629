//! Tidy: the core stays sans-IO. Code under `core/` (comments aside) must not mention the
//! async runtime, the file system or sockets, nor read a clock or OS randomness; and the
//! crate must not depend on tokio. `core/clippy.toml` bans the same calls by path; this
//! test also catches them behind imports and macros clippy cannot see through.

use std::fs;
use std::path::{Path, PathBuf};

const BANNED: &[&str] = &["tokio", "std::fs", "std::net", "Instant::now", "SystemTime::now", "thread_rng"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The line without its `//` comment (string literals containing `//` are rare enough in
/// the core that a plain cut is fine; a false positive only makes this test stricter).
fn code_part(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

fn violations_in(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = code_part(line);
        for banned in BANNED {
            if code.contains(banned) {
                found.push((number + 1, *banned));
            }
        }
    }
    found
}

#[test]
fn core_sources_stay_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "tidy.rs"));
    assert!(files.len() > 10, "tidy found too few files: {files:?}");
    let mut problems = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (line, banned) in violations_in(&text) {
            problems.push(format!("{}:{line}: mentions `{banned}`", file.display()));
        }
    }
    assert!(problems.is_empty(), "core must stay sans-IO:\n{}", problems.join("\n"));
}

#[test]
fn core_does_not_depend_on_tokio() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("tokio"), "core/Cargo.toml must not depend on tokio");
}

#[test]
fn the_tidy_check_itself_catches_each_banned_name() {
    for banned in BANNED {
        let sample = format!("let x = {banned}();");
        assert_eq!(violations_in(&sample), vec![(1, *banned)]);
        assert!(violations_in(&format!("// {banned} in a comment is fine")).is_empty());
    }
}

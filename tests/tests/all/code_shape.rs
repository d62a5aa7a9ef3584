//! The size rule of `ARCHITECTURE.md` ("Code shape"): no code file over 400 lines outside
//! tests and generated bindings. A file's inline test module (from its first
//! `#[cfg(test)]` line at the start of a line) does not count; neither do test folders,
//! `tests.rs` files, benches and the committed guest bindings. Functions are held to 60 lines
//! by clippy's `too_many_lines` (`clippy.toml`, workspace lints).

use std::path::{Path, PathBuf};

/// Lines a code file may have before its test module.
const MAX_FILE_LINES: usize = 400;

/// The crates' source folders the rule covers.
const SOURCES: &[&str] = &[
    "host/src",
    "registry/src",
    "marketplace/src",
    "marketplace/domain/src",
    "marketplace/money/src",
    "tools/loadgen/src",
    "tests/testkit/src",
];

/// Files allowed over the limit, each with the reason `ARCHITECTURE.md` gives (none today).
const EXCEPTIONS: &[(&str, &str)] = &[];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

fn rust_files(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if name != "tests" && name != "templates" {
                rust_files(&path, found);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "bindings.rs" {
            found.push(path);
        }
    }
}

/// Lines of `text` before its test module.
fn code_lines(text: &str) -> usize {
    text.lines().take_while(|line| !line.starts_with("#[cfg(test)]")).count()
}

#[test]
fn no_code_file_is_over_400_lines() {
    let repo = repository();
    let mut files = Vec::new();
    for folder in SOURCES {
        rust_files(&repo.join(folder), &mut files);
    }
    assert!(files.len() > 100, "the walk found only {} files", files.len());
    let mut over: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let lines = code_lines(&std::fs::read_to_string(path).unwrap());
            let relative = path.strip_prefix(&repo).unwrap().to_string_lossy().replace('\\', "/");
            let excused = EXCEPTIONS.iter().any(|(file, _)| *file == relative);
            (lines > MAX_FILE_LINES && !excused).then(|| format!("{relative}: {lines} lines"))
        })
        .collect();
    over.sort();
    assert!(
        over.is_empty(),
        "split these by what each part owns (ARCHITECTURE.md, \"Code shape\"):\n{}",
        over.join("\n")
    );
    for (file, reason) in EXCEPTIONS {
        let lines = code_lines(&std::fs::read_to_string(repo.join(file)).unwrap());
        assert!(lines > MAX_FILE_LINES, "{file} ({lines} lines) no longer needs its exception: {reason}");
    }
}

#[test]
fn a_test_module_does_not_count() {
    assert_eq!(code_lines("fn a() {}\n\n#[cfg(test)]\nmod tests {\n}\n"), 2);
    assert_eq!(code_lines("fn a() {\n    #[cfg(test)]\n    let x = 1;\n}\n"), 4);
}

//! Embeds `templates/` (the project templates `nexus new` writes) into the binary: one
//! `include_str!` per file, listed by walking the folder, so adding a template file needs
//! no code change.

// A build script reports a broken checkout by failing the build with the reason.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

fn main() {
    // Read when the script runs, not when it was compiled: a build script compiled for one
    // checkout is reused by another that shares the target folder.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("templates");
    println!("cargo::rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut out = String::from("/// Every file under `marketplace/templates/`, by its path there.\n");
    out.push_str("pub static TEMPLATE_FILES: &[(&str, &str)] = &[\n");
    for file in &files {
        let relative = file.strip_prefix(&root).expect("walked from the root");
        let relative = relative.to_str().expect("template paths are UTF-8").replace('\\', "/");
        out.push_str(&format!("    ({relative:?}, include_str!({:?})),\n", file.display().to_string()));
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("templates.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable folder entry").path();
        println!("cargo::rerun-if-changed={}", path.display());
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

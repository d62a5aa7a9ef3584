//! Builds the guest workspace (`sample-plugins/`) for `wasm32-wasip2` into `OUT_DIR` and
//! generates one path constant per plugin. The nested cargo gets its own target dir and none
//! of the outer build's flags, so host flags never leak into guests. Hostile components
//! written by hand in the text format (`hostile/<name>/component.wat`) are compiled with
//! `wat` into `OUT_DIR` and get constants the same way.

// A build script reports failure by panicking, so `expect` is the error path here.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// The file a hand-written component lives in, inside its `hostile/<name>/` folder.
const WAT_FILE: &str = "component.wat";

/// One built component, as the generated code names it.
struct Built {
    /// Package name (cargo members) or folder name (text-format components).
    name: String,
    /// Where its source lives, relative to `sample-plugins/`.
    source: String,
    file: PathBuf,
}

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let guests = manifest_dir.parent().expect("artifacts/ sits inside sample-plugins/").to_path_buf();
    let wit = guests.parent().expect("sample-plugins/ sits inside the repository").join("wit");
    let out_dir = PathBuf::from(env("OUT_DIR"));

    // `hostile/` is watched so that a new component folder is picked up.
    for watched in [guests.join("Cargo.toml"), guests.join("Cargo.lock"), guests.join("hostile"), wit] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let members = guest_members(&guests);
    for member in &members {
        println!("cargo:rerun-if-changed={}", guests.join(member).display());
    }

    require_target();
    let wasm_dir = build_guests(&guests, &out_dir.join("guest-target"));
    let mut built: Vec<Built> = members.iter().filter_map(|member| cargo_built(&guests, member, &wasm_dir)).collect();
    for folder in wat_folders(&guests, &members) {
        built.push(compile_wat(&guests, &folder, &out_dir));
    }
    std::fs::write(out_dir.join("plugins.rs"), generated_code(&built)).expect("write plugins.rs into OUT_DIR");
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}

/// Fails with the one command that fixes it when the wasm target is not installed: rustup
/// does not add a toolchain file's targets to an already installed toolchain.
fn require_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().expect("run rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let std_dir = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    if !std_dir.exists() {
        panic!(
            "\n\nThe {TARGET} target is not installed, so the sample plugins cannot be built.\n\
             Fix: rustup target add {TARGET}\n\
             (The README's two commands run this for you.)\n\n"
        );
    }
}

/// Runs the nested cargo build of every member and returns the folder the `.wasm` files
/// land in.
fn build_guests(guests: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", TARGET, "--workspace"])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        // `cargo clippy` wraps rustc; guests are linted by their own command in .ci/run.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .status()
        .expect("failed to run the nested cargo build of sample-plugins/");
    assert!(status.success(), "building the guest plugins in sample-plugins/ failed (see above)");
    target_dir.join(TARGET).join("release")
}

/// The component cargo built for `member`; `None` for the SDK, which is a library.
fn cargo_built(guests: &Path, member: &str, wasm_dir: &Path) -> Option<Built> {
    let name = package_name(&guests.join(member));
    if name == "nexus-plugin-sdk" {
        return None;
    }
    let file = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(file.exists(), "expected {} after the guest build", file.display());
    Some(Built { name, source: member.to_owned(), file })
}

/// The `members = [...]` of the guest workspace, read without a TOML parser: the list is
/// one quoted path per line.
fn guest_members(guests: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(guests.join("Cargo.toml")).expect("read sample-plugins/Cargo.toml");
    let start = manifest.find("members = [").expect("sample-plugins/Cargo.toml lists members");
    let end = start + manifest[start..].find(']').expect("members list is closed");
    manifest[start..end]
        .lines()
        .skip(1)
        .filter_map(|line| line.trim().trim_end_matches(',').strip_prefix('"')?.strip_suffix('"').map(str::to_owned))
        .collect()
}

fn package_name(crate_dir: &Path) -> String {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("read {}/Cargo.toml: {e}", crate_dir.display()));
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("name = \"")?.strip_suffix('"').map(str::to_owned))
        .unwrap_or_else(|| panic!("{}/Cargo.toml has no name", crate_dir.display()))
}

/// The folders under `hostile/` that hold a `component.wat` and are not cargo members,
/// sorted so the generated code does not depend on directory order.
fn wat_folders(guests: &Path, members: &[String]) -> Vec<String> {
    let hostile = guests.join("hostile");
    let entries = std::fs::read_dir(&hostile).unwrap_or_else(|e| panic!("read {}: {e}", hostile.display()));
    let mut folders: Vec<String> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("read {}: {e}", hostile.display())).file_name())
        .filter_map(|name| name.to_str().map(str::to_owned))
        .filter(|name| hostile.join(name).join(WAT_FILE).is_file())
        .filter(|name| !members.contains(&format!("hostile/{name}")))
        .collect();
    folders.sort();
    folders
}

/// Compiles `hostile/<folder>/component.wat` into `OUT_DIR/<folder_with_underscores>.wasm`.
fn compile_wat(guests: &Path, folder: &str, out_dir: &Path) -> Built {
    let source = format!("hostile/{folder}/{WAT_FILE}");
    let wat = guests.join(&source);
    println!("cargo:rerun-if-changed={}", wat.display());
    let bytes = wat::parse_file(&wat).unwrap_or_else(|e| panic!("sample-plugins/{source} does not compile: {e}"));
    let file = out_dir.join(format!("{}.wasm", folder.replace('-', "_")));
    std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    Built { name: folder.to_owned(), source, file }
}

/// `plugins.rs`: one path constant per component, then `ALL`.
fn generated_code(built: &[Built]) -> String {
    let mut code = String::from("// Generated by build.rs: absolute paths of the built guest components.\n");
    let mut all = String::from(
        "/// Every sample and hostile plugin: (package or folder name, path).\npub const ALL: &[(&str, &str)] = &[\n",
    );
    for Built { name, source, file } in built {
        let constant = name.replace('-', "_").to_uppercase();
        let path = file.display().to_string();
        code += &format!("/// `sample-plugins/{source}`\npub const {constant}: &str = {path:?};\n");
        all += &format!("    ({name:?}, {constant}),\n");
    }
    all += "];\n";
    code + &all
}

//! Paths of the sample and hostile plugins in `sample-plugins/`, compiled for
//! `wasm32-wasip2` by this crate's build script. Tests, benchmarks and the demo use these;
//! no `.wasm` file is ever committed.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// Reads a plugin's component bytes.
pub fn bytes(path: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

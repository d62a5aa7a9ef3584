//! The precompiled cache: memory, then disk, then compile; corrupt files are rebuilt.

use nexus_host::{Host, HostConfig, LoadSource};
use nexus_sample_plugins::ECHO;

use crate::common::*;

fn host_with_cache(dir: &std::path::Path) -> Host {
    Host::new(HostConfig { cache_dir: Some(dir.to_path_buf()), max_concurrent: 2, ..HostConfig::default() })
        .expect("host")
}

#[test]
fn components_compile_once_then_come_from_memory_or_disk() {
    block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = nexus_sample_plugins::bytes(ECHO).expect("echo");

        let first = host_with_cache(dir.path());
        let digest = nexus_host::Digest::of(&bytes);
        assert!(first.loaded(&digest).is_none(), "`loaded` never compiles");
        let (plugin, source) = first.load(&bytes).await.expect("load");
        assert_eq!(source, LoadSource::Compiled);
        assert_eq!(first.load(&bytes).await.expect("load").1, LoadSource::Memory);
        assert_eq!(first.loaded(&digest).map(|p| p.digest()), Some(digest));
        assert_eq!((first.metrics().compiles, first.metrics().loads_memory), (1, 2));
        first.evict(&digest);
        assert!(first.loaded(&digest).is_none(), "evicted from memory");
        assert_eq!(first.load(&bytes).await.expect("load").1, LoadSource::Disk);

        let files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1);
        let name = &files[0];
        assert!(name.starts_with(&plugin.digest().hex()) && name.ends_with(".cwasm"), "{name}");
        // <64 hex digest>-<16 hex engine compatibility hash>.cwasm
        assert_eq!(name.len(), 64 + 1 + 16 + 6);

        let second = host_with_cache(dir.path());
        let (again, source) = second.load(&bytes).await.expect("load");
        assert_eq!(source, LoadSource::Disk);
        let config = with_config(context(&[nexus_host::Capability::Config]), &[("prefix", "cached:")]);
        let run = second.invoke(&again, config, &event("x", "{}")).await;
        assert_eq!(data(&run), "cached:{}", "the precompiled code runs");
    })
}

#[test]
fn a_corrupt_cache_file_is_rebuilt_not_trusted() {
    block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = nexus_sample_plugins::bytes(ECHO).expect("echo");
        host_with_cache(dir.path()).load(&bytes).await.expect("load");
        let file = std::fs::read_dir(dir.path()).expect("dir").next().expect("a file").expect("entry").path();

        let mut cached = std::fs::read(&file).expect("read");
        let middle = cached.len() / 2;
        cached[middle] ^= 0xFF;
        std::fs::write(&file, &cached).expect("corrupt");
        let host = host_with_cache(dir.path());
        assert_eq!(host.load(&bytes).await.expect("load").1, LoadSource::Compiled);

        std::fs::write(&file, &cached[..100]).expect("truncate");
        assert_eq!(host_with_cache(dir.path()).load(&bytes).await.expect("load").1, LoadSource::Compiled);
        assert_eq!(host_with_cache(dir.path()).load(&bytes).await.expect("load").1, LoadSource::Disk);
    })
}

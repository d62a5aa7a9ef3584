//! The [`Host`]: one engine, one linker, a pool of instance slots, and the compiled
//! components. Loading compiles each component once (or takes it from the caches) and
//! pre-links it; invoking takes a fresh instance from the pool every time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

use crate::bindings::{latest, since_v1_0};
use crate::cache::DiskCache;
use crate::capability::http::OutboundPolicy;
use crate::capability::kv::KvLocks;
use crate::contract::{self, ContractVersion};
use crate::digest::Digest;
use crate::error::LoadError;
use crate::limits::{self, Limits};
use crate::report::Metrics;
use crate::slots::Slots;
use crate::state::InvocationState;

/// How often the epoch advances: the granularity of wall-clock limits and how long a
/// runaway plugin can hold a worker thread before it yields to others.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Wasm stack per invocation; deep recursion past it traps as `stack_bytes`.
pub const WASM_STACK_BYTES: usize = 512 << 10;
/// The native stack an invocation runs on: the wasm stack plus room for host calls.
const ASYNC_STACK_BYTES: usize = 2 << 20;
/// What one plugin instance may take of the pool, checked when a component is loaded: a
/// Rust component has a main module and a few shims (about four core instances, one or two
/// memories and tables); a Python or JavaScript one links a dozen modules over one memory.
/// The pool holds `max_concurrent` times each, so no set of invocations within the slot
/// count can exhaust it.
pub const MAX_CORE_INSTANCES_PER_PLUGIN: u32 = 32;
pub const MAX_MEMORIES_PER_PLUGIN: u32 = 2;
pub const MAX_TABLES_PER_PLUGIN: u32 = 8;
/// How long an invocation waits for a slot before it is refused as busy: long enough to ride
/// out a burst, short enough that the caller hears back well within its own timeout.
pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(1);
/// Linear memory kept mapped between uses of a pool slot. With the kernel's PAGEMAP_SCAN
/// (Linux 6.7+, enabled below) only the pages a plugin dirtied are reset, by memset rather
/// than madvise, so no page faults on reuse. 2 MiB covers a Rust plugin's 1 MiB stack plus
/// its data and a typical heap; see BENCHMARKS.md for the measured effect.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// The default size budget of the precompiled-component cache.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Engine-wide settings; per-invocation limits are [`Limits`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where precompiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The most the cache folder may hold; storing a component removes the least recently
    /// used ones past it. A Python or JavaScript plugin takes 30–60 MB precompiled.
    pub cache_max_bytes: u64,
    /// Invocations in flight at once; more wait for a slot (at most `slot_wait`).
    pub max_concurrent: u32,
    /// Slots one tenant may hold at once; when slots are short, freed ones go to the tenant
    /// holding the fewest. Default: a quarter of `max_concurrent`.
    pub max_concurrent_per_tenant: u32,
    /// How long an invocation waits for a slot before it fails as `busy`.
    pub slot_wait: Duration,
    /// The most linear memory any invocation can be allowed (`Limits::memory_bytes` ≤ this).
    pub max_memory_bytes: u64,
    /// The limits invocations get unless the caller passes others.
    pub default_limits: Limits,
    /// Which addresses outbound HTTP may connect to (default: public addresses only).
    pub outbound: OutboundPolicy,
    /// How components become machine code (default: Cranelift).
    pub compiler: Compiler,
}

/// How a host compiles components. The marketplace runs Cranelift: optimised code, so the
/// most work per unit of fuel and time. A builder's local commands may pick Winch, wasmtime's
/// baseline compiler: one pass with no optimisation, so a 40 MB Python component compiles
/// in seconds instead of a minute while running slower. Both meter fuel per operator and
/// honour the same limits and capabilities; Winch does not support every WebAssembly
/// proposal, and a component it refuses is compiled with Cranelift instead (see
/// `nexus_marketplace`'s local host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compiler {
    #[default]
    Cranelift,
    Winch,
}

impl std::fmt::Display for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cranelift => "cranelift",
            Self::Winch => "winch",
        })
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        let max_concurrent = 128;
        Self {
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            max_concurrent,
            max_concurrent_per_tenant: max_concurrent / 4,
            slot_wait: DEFAULT_SLOT_WAIT,
            max_memory_bytes: 256 << 20,
            default_limits: Limits::default(),
            outbound: OutboundPolicy::default(),
            compiler: Compiler::default(),
        }
    }
}

/// A loaded component, ready to instantiate.
pub struct Plugin {
    pub(crate) digest: Digest,
    pub(crate) contract: ContractVersion,
    pub(crate) pre: Pre,
}

pub(crate) enum Pre {
    V1_0(since_v1_0::PluginPre<InvocationState>),
    Latest(latest::PluginPre<InvocationState>),
}

impl Plugin {
    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn contract(&self) -> ContractVersion {
        self.contract
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("digest", &self.digest).field("contract", &self.contract).finish()
    }
}

/// Where a load found its component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadSource {
    Memory,
    Disk,
    Compiled,
}

pub struct Host {
    pub(crate) engine: Engine,
    linker: Linker<InvocationState>,
    disk: Option<DiskCache>,
    loaded: Mutex<HashMap<Digest, Arc<OnceCell<Arc<Plugin>>>>>,
    pub(crate) slots: Slots,
    pub(crate) http_client: reqwest::Client,
    pub(crate) outbound: Arc<OutboundPolicy>,
    pub(crate) config: HostConfig,
    pub(crate) metrics: Metrics,
    pub(crate) kv_locks: Arc<KvLocks>,
    ticker_stop: Arc<AtomicBool>,
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config(&config)).map_err(|e| LoadError::Link(format!("engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        latest::Plugin::add_to_linker::<_, HasSelf<InvocationState>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let disk =
            config.cache_dir.as_ref().map(|dir| DiskCache::new(dir, &engine, config.cache_max_bytes)).transpose()?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        Ok(Self {
            engine,
            linker,
            disk,
            loaded: Mutex::new(HashMap::new()),
            slots: Slots::new(
                config.max_concurrent.max(1) as usize,
                config.max_concurrent_per_tenant as usize,
                config.slot_wait,
            ),
            http_client: crate::capability::http::client(&config.outbound),
            outbound: Arc::new(config.outbound.clone()),
            config,
            metrics: Metrics::default(),
            kv_locks: Arc::default(),
            ticker_stop,
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Loads a component: from memory if loaded before, else from the disk cache, else by
    /// compiling it. Concurrent loads of the same bytes compile once.
    pub async fn load(&self, bytes: &[u8]) -> Result<(Arc<Plugin>, LoadSource), LoadError> {
        let digest = Digest::of(bytes);
        let cell = {
            let mut loaded = self.loaded.lock().map_err(|_| LoadError::Cache("load table poisoned".into()))?;
            loaded.entry(digest).or_default().clone()
        };
        if let Some(plugin) = cell.get() {
            self.metrics.record_load(LoadSource::Memory);
            return Ok((plugin.clone(), LoadSource::Memory));
        }
        let mut source = LoadSource::Memory;
        let loaded = cell
            .get_or_try_init(|| async {
                let (component, from) = self.component(digest, bytes.to_vec()).await?;
                source = from;
                self.prepare(digest, component).map(Arc::new)
            })
            .await;
        let plugin = match loaded {
            Ok(plugin) => plugin.clone(),
            Err(error) => {
                // Refused bytes leave no entry behind, so garbage uploads cannot grow the table.
                if let Ok(mut table) = self.loaded.lock()
                    && table.get(&digest).is_some_and(|c| c.get().is_none())
                {
                    table.remove(&digest);
                }
                return Err(error);
            }
        };
        self.metrics.record_load(source);
        Ok((plugin, source))
    }

    /// The component with this digest if it is loaded in memory already: never compiles,
    /// never waits for a compile in flight.
    pub fn loaded(&self, digest: &Digest) -> Option<Arc<Plugin>> {
        let plugin = self.loaded.lock().ok()?.get(digest).and_then(|cell| cell.get().cloned())?;
        self.metrics.record_load(LoadSource::Memory);
        Some(plugin)
    }

    /// Forgets a loaded component (the disk cache keeps it).
    pub fn evict(&self, digest: &Digest) {
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.remove(digest);
        }
    }

    async fn component(&self, digest: Digest, bytes: Vec<u8>) -> Result<(Component, LoadSource), LoadError> {
        let engine = self.engine.clone();
        let cached = match &self.disk {
            Some(disk) => disk.load(&engine, &digest),
            None => None,
        };
        if let Some(component) = cached {
            return Ok((component, LoadSource::Disk));
        }
        // Compiling takes tens of milliseconds of CPU: keep it off the async workers.
        let component = tokio::task::spawn_blocking(move || compile(&engine, &bytes))
            .await
            .map_err(|e| LoadError::Cache(format!("compile task: {e}")))??;
        if let Some(disk) = &self.disk {
            disk.store(&digest, &component)?;
        }
        Ok((component, LoadSource::Compiled))
    }

    fn prepare(&self, digest: Digest, component: Component) -> Result<Plugin, LoadError> {
        let contract = contract::detect(&self.engine, &component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let link = |e: wasmtime::Error| LoadError::UnsupportedContract(format!("{e:#}"));
        let pre = match contract {
            ContractVersion::V1_0 => Pre::V1_0(since_v1_0::PluginPre::new(instance_pre).map_err(link)?),
            ContractVersion::V1_1 => Pre::Latest(latest::PluginPre::new(instance_pre).map_err(link)?),
        };
        Ok(Plugin { digest, contract, pre })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.slots.close();
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    // The same checks the registry runs, so both refuse a component with the same error.
    contract::inspect(bytes)?;
    Component::new(engine, bytes).map_err(refusal)
}

/// Why wasmtime refused a component. The pooling allocator checks the component against the
/// per-plugin maxima when it is compiled or deserialized, and says so only in its message
/// ("... exceeds the configured maximum of N in the pooling allocator", "does not fit in
/// pooling allocator requirements").
pub(crate) fn refusal(error: wasmtime::Error) -> LoadError {
    let message = format!("{error:#}");
    if message.contains("pooling allocator") {
        LoadError::ExceedsHostLimits(message)
    } else {
        LoadError::NotAComponent(message)
    }
}

fn engine_config(host: &HostConfig) -> Config {
    let slots = host.max_concurrent.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_PLUGIN)
        .max_memories_per_component(MAX_MEMORIES_PER_PLUGIN)
        .max_tables_per_component(MAX_TABLES_PER_PLUGIN)
        .max_memories_per_module(MAX_MEMORIES_PER_PLUGIN)
        .max_tables_per_module(MAX_TABLES_PER_PLUGIN)
        .table_elements(limits::DEFAULT_TABLE_ELEMENTS as usize)
        .total_core_instances(slots * MAX_CORE_INSTANCES_PER_PLUGIN)
        .total_memories(slots * MAX_MEMORIES_PER_PLUGIN)
        .total_tables(slots * MAX_TABLES_PER_PLUGIN)
        .total_stacks(slots)
        .max_memory_size(usize::try_from(host.max_memory_bytes).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .strategy(match host.compiler {
            Compiler::Cranelift => Strategy::Cranelift,
            Compiler::Winch => Strategy::Winch,
        })
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(WASM_STACK_BYTES)
        .async_stack_size(ASYNC_STACK_BYTES)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the host is dropped.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("nexus-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the epoch ticker: {e}; wall-clock limits will not fire"));
}

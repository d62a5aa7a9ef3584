//! The store data of one invocation: an empty WASI context (no files, environment, sockets),
//! the resource table, the install's grants and settings, and everything the invocation
//! accumulates (logs, staged KV writes, usage, denials). It is dropped with the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capability::Denial;
use crate::capability::config::Secrets;
use crate::capability::kv::{KvLocks, KvScope, KvStore, KvTxn};
use crate::capability::log::LogBuffer;
use crate::error::{Limit, LimitExceeded};
use crate::grants::Grants;
use crate::limits::Limits;

/// What a guest may write to stdout and stderr (panic messages land on stderr). Beyond it
/// writes fail; the contract's channel for output is `log`.
pub const STDIO_CAPTURE_BYTES: usize = 16 << 10;

/// Everything the host needs to know about the install an invocation runs for.
#[derive(Clone)]
pub struct InvocationContext {
    pub tenant: String,
    pub install: String,
    pub grants: Grants,
    pub config: BTreeMap<String, String>,
    pub secrets: Secrets,
    pub kv: Arc<dyn KvStore>,
    pub limits: Limits,
}

impl std::fmt::Debug for InvocationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvocationContext")
            .field("tenant", &self.tenant)
            .field("install", &self.install)
            .field("grants", &self.grants)
            .field("config", &self.config)
            .field("secrets", &self.secrets)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

pub struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) context: InvocationContext,
    pub(crate) limiter: Limiter,
    pub(crate) log: LogBuffer,
    pub(crate) kv: KvTxn,
    pub(crate) http_client: reqwest::Client,
    pub(crate) outbound: Arc<crate::capability::http::OutboundPolicy>,
    pub(crate) http_requests: u64,
    pub(crate) usage: BTreeMap<String, u64>,
    pub(crate) denials: Vec<Denial>,
    pub(crate) denials_dropped: u64,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) stdout: MemoryOutputPipe,
    started: Instant,
}

impl InvocationState {
    pub(crate) fn new(
        context: InvocationContext,
        http_client: reqwest::Client,
        outbound: Arc<crate::capability::http::OutboundPolicy>,
        kv_locks: Arc<KvLocks>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        // Default deny: no preopened directories, no environment, no arguments, no sockets,
        // no name lookups. Clocks and randomness stay: they reveal nothing about the host.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Random bytes are allocated by the host before they reach the guest: never more
            // than the invocation's memory could hold.
            .max_random_size(context.limits.memory_bytes)
            .build();
        let scope = KvScope { tenant: context.tenant.clone(), install: context.install.clone() };
        let kv = KvTxn::new(scope, context.kv.clone(), kv_locks);
        let mut table = ResourceTable::new();
        table.set_max_capacity(usize::try_from(context.limits.resource_handles).unwrap_or(usize::MAX));
        Self {
            wasi,
            table,
            limiter: Limiter::new(&context.limits),
            context,
            log: LogBuffer::default(),
            kv,
            http_client,
            outbound,
            http_requests: 0,
            usage: BTreeMap::new(),
            denials: Vec::new(),
            denials_dropped: 0,
            stderr,
            stdout,
            started: Instant::now(),
        }
    }

    pub(crate) fn grants(&self) -> &Grants {
        &self.context.grants
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.context.limits
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Enforces memory, table and instance limits and remembers the peak memory. The memory
/// limit is per invocation: the sum over every linear memory of the instance.
pub(crate) struct Limiter {
    memory_max: u64,
    table_elements_max: u64,
    instances_max: u64,
    /// Bytes of all linear memories now.
    memory: u64,
    /// Largest `memory` reached.
    pub(crate) peak_memory: u64,
}

impl Limiter {
    fn new(limits: &Limits) -> Self {
        Self {
            memory_max: limits.memory_bytes,
            table_elements_max: limits.table_elements,
            instances_max: limits.instances,
            memory: 0,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Each memory is created by a call from 0 to its initial size, then grows from its
        // current size: the sum of the differences is the instance's total.
        let total = (self.memory + desired as u64).saturating_sub(current as u64);
        if total > self.memory_max {
            // An error, not `Ok(false)`: the invocation ends naming the limit instead of the
            // guest's allocator aborting with a bare trap.
            return Err(LimitExceeded { limit: Limit::MemoryBytes, used: total, max: self.memory_max }.into());
        }
        self.memory = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.table_elements_max {
            let limit = LimitExceeded { limit: Limit::TableElements, used: desired, max: self.table_elements_max };
            return Err(limit.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        usize::try_from(self.instances_max).unwrap_or(usize::MAX)
    }

    // Tables and memories per component are bounded by the pool and refused at load
    // (runtime.rs); their sizes by `table_growing` and `memory_growing` above.
    fn tables(&self) -> usize {
        usize::MAX
    }

    fn memories(&self) -> usize {
        usize::MAX
    }
}

//! Running one event through a plugin: a fresh store and instance, the limits armed, the
//! call, then the result classified and the report assembled.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTableError;
use wasmtime::{CallHook, PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use crate::bindings::latest::nexus::plugin::types as wit;
use crate::capability::kv::{KvError, KvQuota, KvScope, KvTxn, KvWrite};
use crate::error::{InvocationError, Limit, LimitExceeded};
use crate::limits::{HOST_CALL_FUEL, Limits, MAX_ERROR_MESSAGE_BYTES, clip};
use crate::report::{Invocation, Report, outcome_label};
use crate::runtime::{Host, Plugin, Pre, WASM_STACK_BYTES};
use crate::slots::Refused;
use crate::state::{InvocationContext, InvocationState};
use crate::types::{Event, Info, Outcome};

/// What the guest returned, before limits on the output are applied.
type GuestResult = Result<wit::Outcome, wit::PluginError>;

impl Host {
    /// Delivers `event` to a fresh instance of `plugin` under `context`'s grants and limits,
    /// and commits its KV writes through the context's store if it succeeded.
    /// Never fails as a whole: every failure is in `result`, and the report is always there.
    pub async fn invoke(&self, plugin: &Plugin, context: InvocationContext, event: &Event) -> Invocation {
        let finished = self.execute(plugin, context, event).await;
        self.commit(finished).await
    }

    /// Runs `event` like [`Host::invoke`] but leaves its KV writes staged: a caller that
    /// records invocations in the same database as the KV data commits both in one
    /// transaction ([`Finished::staged`], then [`Host::conclude`]); others call
    /// [`Host::commit`].
    pub async fn execute(&self, plugin: &Plugin, context: InvocationContext, event: &Event) -> Finished {
        let limits = context.limits.clone();
        let input = event.payload.len() as u64;
        let run = if input > limits.input_bytes {
            let limit = LimitExceeded { limit: Limit::InputBytes, used: input, max: limits.input_bytes };
            Run {
                result: Err(InvocationError::LimitExceeded(limit)),
                state: None,
                elapsed: Duration::ZERO,
                fuel_used: 0,
            }
        } else {
            let event = wit::Event::from(event);
            self.run(plugin, context, |pre, store| Box::pin(call_handle(pre, store, event))).await
        };
        let Run { result, mut state, elapsed, fuel_used } = run;
        let result = result.and_then(|guest| check_output(guest, &limits));
        // The staged writes (and the scope's lock) outlive the store's other data.
        let kv = state.as_mut().map(|state| state.kv.take());
        let report = report(plugin, &result, state, elapsed, fuel_used);
        Finished { result, report, kv, quota: KvQuota::of(&limits) }
    }

    /// Commits a finished invocation's KV writes through its context's store (only if it
    /// succeeded), and reports it.
    pub async fn commit(&self, mut finished: Finished) -> Invocation {
        let committed = match (&finished.result, finished.kv.as_mut()) {
            (Ok(_), Some(kv)) => kv.commit(finished.quota).await,
            _ => Ok(()),
        };
        self.conclude(finished, committed)
    }

    /// Reports a finished invocation whose staged KV writes the caller committed itself
    /// (`Ok`), or could not commit (the error becomes the invocation's result).
    pub fn conclude(&self, finished: Finished, committed: Result<(), KvError>) -> Invocation {
        let Finished { mut result, mut report, kv, .. } = finished;
        if result.is_ok() {
            match committed {
                Ok(()) => report.kv_writes = kv.as_ref().map_or(0, |kv| kv.staged_count() as u64),
                Err(KvError::Quota(limit)) => result = Err(InvocationError::LimitExceeded(limit)),
                Err(KvError::Conflict) => result = Err(InvocationError::KvConflict),
                Err(other) => result = Err(InvocationError::Host { message: other.to_string() }),
            }
        }
        report.outcome = outcome_label(&result);
        // The scope's lock is released only now, after the commit.
        drop(kv);
        self.metrics.record_invocation(&report);
        Invocation { result, report }
    }

    /// Asks the plugin to describe itself, with no capabilities granted.
    pub async fn describe(&self, plugin: &Plugin, context: InvocationContext) -> Result<Info, InvocationError> {
        let mut context = context;
        context.grants = Default::default();
        let run = self.run(plugin, context, |pre, store| Box::pin(call_describe(pre, store))).await;
        run.result.map(Info::from)
    }

    async fn run<T: Send>(
        &self,
        plugin: &Plugin,
        context: InvocationContext,
        call: impl for<'a> FnOnce(&'a Pre, &'a mut Store<InvocationState>) -> CallFuture<'a, T>,
    ) -> Run<T> {
        let fuel = context.limits.fuel;
        let wall_clock = context.limits.wall_clock;
        let _slot = match self.slots.acquire(&context.tenant).await {
            Ok(slot) => slot,
            Err(refused) => {
                let error = match refused {
                    Refused::Busy => InvocationError::Busy { retry_after_ms: BUSY_RETRY_AFTER_MS },
                    Refused::Closed => InvocationError::Host { message: "the host is shutting down".into() },
                };
                return Run { result: Err(error), state: None, elapsed: Duration::ZERO, fuel_used: 0 };
            }
        };
        let started = Instant::now();
        let state =
            InvocationState::new(context, self.http_client.clone(), self.outbound.clone(), self.kv_locks.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        arm_limits(&mut store, fuel, started, wall_clock);

        // The epoch callback ends runaway wasm; this also bounds time spent awaiting host calls.
        let outcome = tokio::time::timeout(wall_clock, call(&plugin.pre, &mut store)).await;
        let elapsed = started.elapsed();
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(&error, &store, fuel)),
            Err(_) => Err(InvocationError::LimitExceeded(wall_clock_exceeded(elapsed, wall_clock))),
        };
        let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        Run { result, state: Some(store.into_data()), elapsed, fuel_used }
    }
}

type CallFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// An invocation that has run, with its KV writes staged but not committed. The install's
/// KV scope stays locked in this process until the invocation is concluded.
pub struct Finished {
    result: Result<Outcome, InvocationError>,
    report: Report,
    kv: Option<KvTxn>,
    quota: KvQuota,
}

/// KV writes for a caller to commit itself, atomically and only if `base` is still the
/// scope's revision and the result stays within `quota` (the rule of [`crate::KvStore::commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedKv {
    pub scope: KvScope,
    pub writes: Vec<KvWrite>,
    pub quota: KvQuota,
    pub base: Option<u64>,
}

impl Finished {
    pub fn result(&self) -> &Result<Outcome, InvocationError> {
        &self.result
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The writes to commit: only when the invocation succeeded and staged any.
    pub fn staged(&self) -> Option<StagedKv> {
        let kv = self.kv.as_ref().filter(|kv| self.result.is_ok() && kv.staged_count() > 0)?;
        Some(StagedKv { scope: kv.scope().clone(), writes: kv.staged_writes(), quota: self.quota, base: kv.base() })
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished").field("result", &self.result).field("report", &self.report).finish_non_exhaustive()
    }
}

/// A finished call: what it returned and what its store holds.
struct Run<T> {
    result: Result<T, InvocationError>,
    state: Option<InvocationState>,
    elapsed: Duration,
    fuel_used: u64,
}

/// The report of a finished invocation; takes what the store data collected.
fn report(
    plugin: &Plugin,
    result: &Result<Outcome, InvocationError>,
    state: Option<InvocationState>,
    elapsed: Duration,
    fuel_used: u64,
) -> Report {
    let mut report = Report {
        digest: plugin.digest,
        contract: plugin.contract,
        outcome: outcome_label(result),
        duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        fuel_used,
        peak_memory_bytes: 0,
        logs: Vec::new(),
        stdout: String::new(),
        stderr: String::new(),
        usage: Default::default(),
        http_requests: 0,
        kv_writes: 0,
        denials: Vec::new(),
        denials_dropped: 0,
    };
    if let Some(state) = state {
        report.peak_memory_bytes = state.limiter.peak_memory;
        report.stdout = captured(&state.stdout);
        report.stderr = captured(&state.stderr);
        report.logs = state.log.lines;
        report.usage = state.usage;
        report.http_requests = state.http_requests;
        report.denials = state.denials;
        report.denials_dropped = state.denials_dropped;
    }
    report
}

/// What the plugin returned, within the output limits: the number of actions, and the bytes
/// of everything it returns (data, actions, or its error's message). A kept error message
/// is clipped to [`MAX_ERROR_MESSAGE_BYTES`].
fn check_output(guest: GuestResult, limits: &Limits) -> Result<Outcome, InvocationError> {
    let exceeded = |limit, used, max| Err(InvocationError::LimitExceeded(LimitExceeded { limit, used, max }));
    match guest {
        Ok(outcome) => {
            let actions = outcome.actions.len() as u64;
            if actions > limits.actions {
                return exceeded(Limit::Actions, actions, limits.actions);
            }
            let outcome = Outcome::from(outcome);
            let used = outcome.size();
            if used > limits.output_bytes {
                return exceeded(Limit::OutputBytes, used, limits.output_bytes);
            }
            Ok(outcome)
        }
        Err(error) => {
            let used = error.message.len() as u64;
            if used > limits.output_bytes {
                return exceeded(Limit::OutputBytes, used, limits.output_bytes);
            }
            let message = clip(&error.message, MAX_ERROR_MESSAGE_BYTES);
            Err(InvocationError::PluginError { kind: error.kind.into(), message })
        }
    }
}

fn arm_limits(store: &mut Store<InvocationState>, fuel: u64, started: Instant, wall_clock: Duration) {
    // Setting fuel only fails when fuel is disabled in the engine, which `engine_config` enables.
    let _ = store.set_fuel(fuel);
    // Every call into the host costs fuel, so a loop of cheap or refused host calls ends by
    // the fuel limit like any other loop.
    store.call_hook(move |mut store, hook| {
        if !matches!(hook, CallHook::CallingHost) {
            return Ok(());
        }
        let left = store.get_fuel()?;
        if left < HOST_CALL_FUEL {
            let _ = store.set_fuel(0);
            return Err(LimitExceeded { limit: Limit::Fuel, used: fuel + 1, max: fuel }.into());
        }
        store.set_fuel(left - HOST_CALL_FUEL)
    });
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let elapsed = started.elapsed();
        if elapsed >= wall_clock {
            return Err(wall_clock_exceeded(elapsed, wall_clock).into());
        }
        // Yield at every tick so a busy plugin never starves the others on this worker.
        Ok(UpdateDeadline::Yield(1))
    });
}

fn wall_clock_exceeded(elapsed: Duration, limit: Duration) -> LimitExceeded {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    LimitExceeded { limit: Limit::WallClockMs, used: millis(elapsed).max(millis(limit) + 1), max: millis(limit) }
}

/// Turns a trap into the error that names its cause.
fn classify(error: &wasmtime::Error, store: &Store<InvocationState>, fuel: u64) -> InvocationError {
    if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        return InvocationError::LimitExceeded(*limit);
    }
    if let Some(limit) = instance_limit(error, store.data().limits().instances) {
        return InvocationError::LimitExceeded(limit);
    }
    if let Some(limit) = host_buffer_limit(error, store.data().limits().memory_bytes) {
        return InvocationError::LimitExceeded(limit);
    }
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        // Sized so this cannot happen (runtime.rs), but if it does it is the host's
        // condition, never the plugin's failure.
        return InvocationError::Busy { retry_after_ms: BUSY_RETRY_AFTER_MS };
    }
    if matches!(error.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)) {
        let max = store.data().limits().resource_handles;
        return InvocationError::LimitExceeded(LimitExceeded { limit: Limit::ResourceHandles, used: max + 1, max });
    }
    let stack = WASM_STACK_BYTES as u64;
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            InvocationError::LimitExceeded(LimitExceeded { limit: Limit::Fuel, used: fuel + 1, max: fuel })
        }
        Some(Trap::StackOverflow) => {
            InvocationError::LimitExceeded(LimitExceeded { limit: Limit::StackBytes, used: stack + 1, max: stack })
        }
        Some(Trap::UnreachableCodeReached) => match panic_message(&captured(&store.data().stderr)) {
            Some(message) => InvocationError::Panicked { message },
            None => InvocationError::Trapped { message: Trap::UnreachableCodeReached.to_string() },
        },
        Some(trap) => InvocationError::Trapped { message: trap.to_string() },
        // With its wasm backtrace, which a deep stack makes long: clipped like a plugin error.
        None => InvocationError::Trapped { message: clip(&format!("{error:#}"), MAX_ERROR_MESSAGE_BYTES) },
    }
}

/// wasmtime reports the instance limit of a `ResourceLimiter` only as text:
/// "resource limit exceeded: instance count too high at N".
fn instance_limit(error: &wasmtime::Error, max: u64) -> Option<LimitExceeded> {
    let text = error.to_string();
    let used = text.strip_prefix("resource limit exceeded: instance count too high at ")?.trim().parse().ok()?;
    Some(LimitExceeded { limit: Limit::Instances, used, max })
}

/// wasmtime-wasi refuses a random-bytes request over the context's maximum (set to the
/// memory limit in state.rs) before allocating, only as text:
/// "requested len N exceeds limit M".
fn host_buffer_limit(error: &wasmtime::Error, max: u64) -> Option<LimitExceeded> {
    let text = error.root_cause().to_string();
    let rest = text.strip_prefix("requested len ")?;
    let used = rest.split_whitespace().next()?.parse().ok()?;
    Some(LimitExceeded { limit: Limit::MemoryBytes, used, max })
}

/// How long a caller refused as busy should wait: about one short invocation.
pub const BUSY_RETRY_AFTER_MS: u64 = 1_000;

/// The message of a Rust panic as the standard library prints it:
/// `thread '<unnamed>' panicked at src/lib.rs:3:5:\n<message>\nnote: ...`.
fn panic_message(stderr: &str) -> Option<String> {
    let after = &stderr[stderr.find("panicked at ")?..];
    let message: Vec<&str> = after.lines().skip(1).take_while(|line| !line.starts_with("note: ")).collect();
    Some(message.join("\n"))
}

fn captured(pipe: &wasmtime_wasi::p2::pipe::MemoryOutputPipe) -> String {
    String::from_utf8_lossy(&pipe.contents()).into_owned()
}

async fn call_handle(
    pre: &Pre,
    store: &mut Store<InvocationState>,
    event: wit::Event,
) -> wasmtime::Result<GuestResult> {
    match pre {
        Pre::V1_0(pre) => {
            pre.instantiate_async(&mut *store).await?.nexus_plugin_handler().call_handle(store, &event).await
        }
        Pre::Latest(pre) => {
            pre.instantiate_async(&mut *store).await?.nexus_plugin_handler().call_handle(store, &event).await
        }
    }
}

async fn call_describe(pre: &Pre, store: &mut Store<InvocationState>) -> wasmtime::Result<wit::Info> {
    match pre {
        Pre::V1_0(pre) => pre.instantiate_async(&mut *store).await?.nexus_plugin_handler().call_describe(store).await,
        Pre::Latest(pre) => pre.instantiate_async(&mut *store).await?.nexus_plugin_handler().call_describe(store).await,
    }
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn panic_messages_are_cut_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:16:9:\nplugin gave up\non two lines\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("plugin gave up\non two lines"));
        assert_eq!(panic_message("nothing here"), None);
    }
}

"""A small guest SDK for `nexus:plugin@1.0.0` plugins written in Python (componentize-py).

It does three things the generated bindings (`wit_world`) do not:

- `plugin(...)` builds the `Handler` class componentize-py exports. Every failure leaves
  `handle` as the contract's `plugin-error`, never as a trap: a `PluginError` keeps its
  kind, a refused host call becomes `denied`/`internal`/`upstream` (the same table as the
  Rust SDK), and any other exception becomes `internal` with `<Type>: <message>`. The
  traceback goes to stderr, which the host keeps in the invocation report.
- `Payload` reads the event's JSON with `invalid-payload` errors that name the field.
- `log` helpers that are best effort: a line is dropped when `log` is not granted.

It imports only `types` from the bindings, and `log` only when the world has it, so it works
in any narrowed world.
"""

import json
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.types import Action, ErrorKind, Event, Info, Outcome

try:
    from wit_world.imports import log as _log
except ImportError:  # the plugin's world does not import `log`
    _log = None

__all__ = [
    "Action", "ErrorKind", "Event", "Info", "Outcome", "Payload", "PluginError",
    "debug", "info", "warn", "error", "host_call", "json_data", "plugin",
]

_CAPABILITY_NAMES = {
    types.Capability.LOG: "Log",
    types.Capability.CONFIG: "Config",
    types.Capability.SECRETS: "Secrets",
    types.Capability.KV: "Kv",
    types.Capability.HTTP: "Http",
    types.Capability.USAGE: "Usage",
}


class PluginError(Exception):
    """The plugin's own, expected failure: raise it from a handler."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @classmethod
    def invalid_payload(cls, message: str) -> "PluginError":
        return cls(ErrorKind.INVALID_PAYLOAD, message)

    @classmethod
    def invalid_config(cls, message: str) -> "PluginError":
        return cls(ErrorKind.INVALID_CONFIG, message)

    @classmethod
    def internal(cls, message: str) -> "PluginError":
        return cls(ErrorKind.INTERNAL, message)

    @classmethod
    def upstream(cls, message: str) -> "PluginError":
        """A failure of a service the plugin called; the platform may retry the event later."""
        return cls(ErrorKind.UPSTREAM, message)

    @classmethod
    def unsupported_event(cls, event_type: str, handled: List[str]) -> "PluginError":
        """An event type the plugin does not handle, naming the ones it does."""
        return cls(
            ErrorKind.UNSUPPORTED_EVENT,
            f"event type {event_type} is not handled; handled: {', '.join(handled)}",
        )


def _from_host_error(error: Any) -> PluginError:
    """The same mapping as the Rust SDK's `From<HostError> for PluginError`."""
    if isinstance(error, types.HostError_NotGranted):
        name = _CAPABILITY_NAMES.get(error.value, str(error.value))
        return PluginError(ErrorKind.DENIED, f"capability Capability::{name} not granted")
    if isinstance(error, types.HostError_HostNotAllowed):
        return PluginError(ErrorKind.DENIED, f"host {error.value} not allowed")
    if isinstance(error, types.HostError_InvalidArgument):
        return PluginError(ErrorKind.INTERNAL, f"invalid argument: {error.value}")
    if isinstance(error, types.HostError_Transport):
        return PluginError(ErrorKind.UPSTREAM, f"transport: {error.value}")
    return PluginError(ErrorKind.INTERNAL, f"unexpected host error: {error!r}")


def host_call(function: Callable[..., Any], *args: Any) -> Any:
    """Calls a capability function; a refused call raises the matching `PluginError`.

    Calling the binding directly works too (the handler wrapper maps the error the same
    way); use this where the handler wants to catch a refusal itself.
    """
    try:
        return function(*args)
    except Err as refused:
        raise _from_host_error(refused.value) from None


def _write(level_name: str, message: str) -> None:
    if _log is None:
        return
    try:
        _log.write(getattr(_log.Level, level_name), message)
    except Err:
        pass  # best effort: `log` not granted


def debug(message: str) -> None:
    _write("DEBUG", message)


def info(message: str) -> None:
    _write("INFO", message)


def warn(message: str) -> None:
    _write("WARN", message)


def error(message: str) -> None:
    _write("ERROR", message)


class Payload:
    """An event payload that must be a JSON object; accessors name the field on error."""

    def __init__(self, text: str):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise PluginError.invalid_payload(f"payload is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise PluginError.invalid_payload("payload must be a JSON object")
        self.fields: Dict[str, Any] = value

    def _typed(self, name: str, accepts: Callable[[Any], bool], what: str, required: bool) -> Any:
        value = self.fields.get(name)
        if value is None:
            if required:
                raise PluginError.invalid_payload(f"payload field {name} must be {what}")
            return None
        if not accepts(value):
            raise PluginError.invalid_payload(f"payload field {name} must be {what}")
        return value

    def string(self, name: str) -> str:
        return self._typed(name, lambda v: isinstance(v, str), "a string", required=True)

    def optional_string(self, name: str) -> Optional[str]:
        return self._typed(name, lambda v: isinstance(v, str), "a string", required=False)

    def integer(self, name: str) -> int:
        return self._typed(name, _is_integer, "an integer", required=True)

    def optional_integer(self, name: str) -> Optional[int]:
        return self._typed(name, _is_integer, "an integer", required=False)


def _is_integer(value: Any) -> bool:
    # JSON `true` parses as a Python bool, which is an int subclass.
    return isinstance(value, int) and not isinstance(value, bool)


EventHandler = Callable[[Event], Outcome]


def plugin(name: str, version: str, handlers: Dict[str, EventHandler]) -> type:
    """The `Handler` class for componentize-py: one function per event type.

    An event type with no handler is `unsupported-event`.
    """
    event_types: List[str] = sorted(handlers)

    class Handler:
        def describe(self) -> Info:
            return Info(name=name, version=version, event_types=list(event_types))

        def handle(self, event: Event) -> Outcome:
            try:
                handler = handlers.get(event.event_type)
                if handler is None:
                    raise PluginError.unsupported_event(event.event_type, event_types)
                return handler(event)
            except PluginError as failure:
                raise Err(types.PluginError(kind=failure.kind, message=failure.message)) from None
            except Err as refused:
                if isinstance(refused.value, types.PluginError):
                    raise
                failure = _from_host_error(refused.value)
                raise Err(types.PluginError(kind=failure.kind, message=failure.message)) from None
            except BaseException as crash:  # noqa: BLE001 - anything else must not trap
                traceback.print_exc(file=sys.stderr)
                message = f"{type(crash).__name__}: {crash}"
                raise Err(types.PluginError(kind=ErrorKind.INTERNAL, message=message)) from None

    return Handler


def json_data(value: Any) -> str:
    """Compact, key-sorted JSON for `outcome.data` and action payloads."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)

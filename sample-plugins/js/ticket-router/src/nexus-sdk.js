// A small guest SDK for `nexus:plugin@1.0.0` plugins written in JavaScript
// (componentize-js). It imports no contract interface, so it works in any narrowed world;
// the log helpers, which need `log`, are in nexus-log.js.
//
// - `plugin(...)` builds the `handler` export. Every failure leaves `handle` as the
//   contract's `plugin-error`, never as a trap: a `PluginError` keeps its kind, a refused host
//   call becomes `denied`/`internal`/`upstream` (the same table as the Rust SDK), and any
//   other throw becomes `internal` with `<Type>: <message>`. The stack goes to stderr, which
//   the host keeps in the invocation report. (A bare `throw new Error()` would otherwise
//   trap as `unreachable`: componentize-js lowers the thrown value as the plugin-error
//   record and finds no `kind`.)
// - `Payload` reads the event's JSON with `invalid-payload` errors that name the field.

/** The plugin's own, expected failure: throw it from a handler. */
export class PluginError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'PluginError';
    this.kind = kind;
    // componentize-js lowers `payload` of a thrown error as the `err` value.
    this.payload = { kind, message };
  }

  static invalidPayload(message) {
    return new PluginError('invalid-payload', message);
  }

  static invalidConfig(message) {
    return new PluginError('invalid-config', message);
  }

  static internal(message) {
    return new PluginError('internal', message);
  }

  /** A failure of a service the plugin called; the platform may retry the event later. */
  static upstream(message) {
    return new PluginError('upstream', message);
  }

  /** An event type the plugin does not handle, naming the ones it does. */
  static unsupportedEvent(eventType, handled) {
    return new PluginError('unsupported-event', `event type ${eventType} is not handled; handled: ${handled.join(', ')}`);
  }
}

const HOST_ERROR_TAGS = new Set(['not-granted', 'host-not-allowed', 'invalid-argument', 'transport']);

/** A refused host call arrives as an Error whose `payload` is the `host-error` variant. */
function hostError(thrown) {
  const payload = thrown !== null && typeof thrown === 'object' ? thrown.payload : undefined;
  return payload && HOST_ERROR_TAGS.has(payload.tag) ? payload : undefined;
}

/** The same mapping as the Rust SDK's `From<HostError> for PluginError`. */
function fromHostError({ tag, val }) {
  switch (tag) {
    case 'not-granted':
      return new PluginError('denied', `capability Capability::${pascal(val)} not granted`);
    case 'host-not-allowed':
      return new PluginError('denied', `host ${val} not allowed`);
    case 'invalid-argument':
      return new PluginError('internal', `invalid argument: ${val}`);
    default:
      return new PluginError('upstream', `transport: ${val}`);
  }
}

const pascal = (name) => String(name).charAt(0).toUpperCase() + String(name).slice(1);

/** Any thrown value, as the `plugin-error` record componentize-js returns as `err`. */
function toPluginError(thrown) {
  if (thrown instanceof PluginError) return thrown.payload;
  const refused = hostError(thrown);
  if (refused) return fromHostError(refused).payload;
  if (thrown instanceof Error) {
    const message = `${thrown.name}: ${thrown.message}`;
    // SpiderMonkey's `stack` lists the frames only, without the message.
    console.error(`${message}\n${thrown.stack ?? ''}`);
    return { kind: 'internal', message };
  }
  return { kind: 'internal', message: `uncaught ${typeof thrown}: ${String(thrown)}` };
}

/**
 * The `handler` export: one function per event type, each `(event) => outcome`.
 * An event type with no handler is `unsupported-event`.
 */
export function plugin({ name, version, handlers }) {
  const eventTypes = Object.keys(handlers).sort();
  return {
    describe() {
      return { name, version, eventTypes: [...eventTypes] };
    },
    handle(event) {
      try {
        if (!Object.hasOwn(handlers, event.eventType)) {
          throw PluginError.unsupportedEvent(event.eventType, eventTypes);
        }
        return handlers[event.eventType](event);
      } catch (thrown) {
        // Thrown as a plain record: componentize-js lowers it as `err(plugin-error)`.
        throw toPluginError(thrown);
      }
    },
  };
}

/** An event payload that must be a JSON object; accessors name the field on error. */
export class Payload {
  constructor(text) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw PluginError.invalidPayload(`payload is not valid JSON: ${e.message}`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw PluginError.invalidPayload('payload must be a JSON object');
    }
    this.fields = value;
  }

  #typed(name, accepts, what, required) {
    const value = this.fields[name];
    if (value === undefined || value === null) {
      if (required) throw PluginError.invalidPayload(`payload field ${name} must be ${what}`);
      return undefined;
    }
    if (!accepts(value)) throw PluginError.invalidPayload(`payload field ${name} must be ${what}`);
    return value;
  }

  string(name) {
    return this.#typed(name, (v) => typeof v === 'string', 'a string', true);
  }

  optionalString(name) {
    return this.#typed(name, (v) => typeof v === 'string', 'a string', false);
  }

  integer(name) {
    return this.#typed(name, Number.isSafeInteger, 'an integer', true);
  }

  optionalInteger(name) {
    return this.#typed(name, Number.isSafeInteger, 'an integer', false);
  }

  /** An optional string that must be one of `choices`. */
  optionalChoice(name, choices) {
    return this.#typed(name, (v) => choices.includes(v), `one of ${choices.join(', ')}`, false);
  }
}

/** Compact JSON with sorted keys, for `outcome.data` and action payloads. */
export function jsonData(value) {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v,
  );
}

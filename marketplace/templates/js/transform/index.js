// {{name}}: normalizes each `contact.updated` into one contact shape (`transform` template).
//
// The result (`outcome.data`) always has these five keys, `null` where the contact has no
// value. A blank value counts as none, and other payload fields are ignored.
//
// - `email`: the payload's `email` (required), trimmed and lower-cased; it must contain `@`.
// - `first_name`, `last_name`: `name` split at whitespace: the first word, then the other
//   words joined by single spaces (`last_name` is `null` for a one-word name).
// - `phone`: the digits 0-9 of `phone`, nothing else.
// - `country`: `country` trimmed and upper-cased or, when the payload has none, the install's
//   config `default-country`, normalized the same way.
//
// The contact's details are never logged: they are personal data.
import { get as configGet } from 'nexus:plugin/config@1.0.0';

import * as log from './nexus-log.js';
import { Payload, PluginError, jsonData, plugin } from './nexus-sdk.js';

const NAME = '{{name}}';
// Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
const VERSION = '0.1.0';

function onContactUpdated(event) {
  const payload = new Payload(event.payload);
  const email = payload.string('email').trim().toLowerCase();
  if (!email.includes('@')) throw PluginError.invalidPayload('payload field email must be an email address');
  const [firstName, lastName] = splitName(payload.optionalString('name') ?? '');
  const phone = (payload.optionalString('phone') ?? '').replace(/[^0-9]/g, '') || null;
  const country = countryCode(payload.optionalString('country')) ?? countryCode(configGet('default-country'));

  log.info(`normalized the contact of event ${event.id}`);
  // Explicit nulls: JSON.stringify would drop an undefined key.
  const contact = { email, first_name: firstName, last_name: lastName, phone, country };
  return { data: jsonData(contact), actions: [] };
}

/** `" Dana  Katherine Scully"` -> `["Dana", "Katherine Scully"]`; a blank name -> `[null, null]`. */
function splitName(name) {
  const [first = null, ...rest] = name.split(/\s+/).filter(Boolean);
  return [first, rest.join(' ') || null];
}

/** Trimmed and upper-cased; null for an absent (undefined or null) or blank value. */
const countryCode = (text) => text?.trim().toUpperCase() || null;

export const handler = plugin({ name: NAME, version: VERSION, handlers: { 'contact.updated': onContactUpdated } });

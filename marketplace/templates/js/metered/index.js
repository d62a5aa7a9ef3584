// {{name}}: counts the words of each `document.submitted` (`metered` template).
//
// Words are the runs of non-whitespace in the payload's `text` (required, a string). Each
// event adds its count to the install's running total in KV (key `total-words`, decimal text
// such as `1234`), reports that many units on the meter `words` (which the manifest's
// per-word plan bills), and returns data `{"words": <this document>, "total": <all so far>}`.
//
// KV writes are committed only when the event succeeds, and the host holds the install's KV
// for the whole invocation, so concurrent events cannot lose an update. Usage is never rolled
// back, so it is reported last, once the work it bills for has succeeded. A retried event
// counts again.
import * as kv from 'nexus:plugin/kv@1.0.0';
import { report } from 'nexus:plugin/usage@1.0.0';

import * as log from './nexus-log.js';
import { Payload, PluginError, jsonData, plugin } from './nexus-sdk.js';

const NAME = '{{name}}';
// Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
const VERSION = '0.1.0';

const TOTAL_KEY = 'total-words';
const METER = 'words';

function onDocumentSubmitted(event) {
  const text = new Payload(event.payload).string('text');
  const words = text.split(/\s+/).filter(Boolean).length;
  const total = readTotal() + words;
  kv.set(TOTAL_KEY, new TextEncoder().encode(String(total)));
  report(METER, BigInt(words)); // a WIT u64 is a BigInt in JavaScript

  log.info(`event ${event.id}: ${words} words, ${total} in all`);
  return { data: jsonData({ words, total }), actions: [] };
}

function readTotal() {
  const stored = kv.get(TOTAL_KEY);
  // An absent option arrives as undefined (jco) or null; `== null` takes both.
  if (stored == null) return 0;
  const text = new TextDecoder().decode(stored);
  if (!/^[0-9]+$/.test(text)) throw PluginError.internal(`kv ${TOTAL_KEY} does not hold a number`);
  return Number(text);
}

export const handler = plugin({ name: NAME, version: VERSION, handlers: { 'document.submitted': onDocumentSubmitted } });

// {{name}}: posts each `order.created` and `order.paid` to a webhook (`webhook` template).
//
// The request is a POST to the install's secret `webhook-url`, with `content-type:
// application/json` and the body `{"event": <event type>, "id": <event id>, "order": <payload>}`.
// The event id stays the same when the marketplace retries an event, so the receiver can use
// it to drop duplicates.
//
// - A 2xx answer: data `{"delivered": true, "status": <status>}`.
// - Any other status: `upstream` naming the status, so the event may be retried. A transport
//   failure is `upstream` too (the SDK maps it).
// - The secret `webhook-url` not set (or empty): `invalid-config`.
// - A payload that is not a JSON object: `invalid-payload`.
//
// The payload is checked before the secret is read, and nothing is sent on an error. The URL
// is never logged: webhook URLs often carry an access token.
import { secret } from 'nexus:plugin/config@1.0.0';
import { send } from 'nexus:plugin/http@1.0.0';

import * as log from './nexus-log.js';
import { Payload, PluginError, jsonData, plugin } from './nexus-sdk.js';

const NAME = '{{name}}';
// Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
const VERSION = '0.1.0';

function onOrder(event) {
  const order = new Payload(event.payload).fields;
  const url = secret('webhook-url');
  if (!url) throw PluginError.invalidConfig('secret webhook-url is not set');

  const body = jsonData({ event: event.eventType, id: event.id, order });
  const { status } = send({
    method: 'post',
    url,
    headers: [['content-type', 'application/json']],
    body: new TextEncoder().encode(body),
  });
  log.info(`${event.eventType} ${event.id}: the webhook answered ${status}`);
  if (status < 200 || status > 299) throw new PluginError('upstream', `the webhook answered HTTP ${status}`);
  return { data: jsonData({ delivered: true, status }), actions: [] };
}

export const handler = plugin({
  name: NAME,
  version: VERSION,
  handlers: { 'order.created': onOrder, 'order.paid': onOrder },
});

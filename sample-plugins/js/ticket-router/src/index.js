// Ticket router: picks a helpdesk queue for each `ticket.created` by the keyword rules in
// routing.js, counts the tickets sent to each queue in KV, and asks the helpdesk to assign
// the ticket to that queue.
//
// Config: `default-queue` (default `general`) and `urgent-queue` (unset: urgent tickets are
// routed by keyword like the rest). Counters live at `count/<queue>` as decimal text. A
// retried event counts again: the counter is at-least-once.
import { get as configGet } from 'nexus:plugin/config@1.0.0';
import * as kv from 'nexus:plugin/kv@1.0.0';

import * as log from './nexus-log.js';
import { Payload, PluginError, jsonData, plugin } from './nexus-sdk.js';
import { DEFAULT_QUEUE, PRIORITIES, counterKey, decodeCount, encodeCount, isQueueName, route } from './routing.js';

const NAME = 'ticket-router';
// Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
const VERSION = '0.1.0';

function onTicketCreated(event) {
  const payload = new Payload(event.payload);
  const ticket = {
    ticketId: payload.string('ticket_id'),
    subject: payload.string('subject'),
    body: payload.optionalString('body') ?? '',
    priority: payload.optionalChoice('priority', PRIORITIES) ?? 'normal',
  };
  const { queue, matched } = route(ticket, {
    defaultQueue: queueConfig('default-queue') ?? DEFAULT_QUEUE,
    urgentQueue: queueConfig('urgent-queue'),
  });

  const key = counterKey(queue);
  const stored = kv.get(key);
  // An absent option arrives as undefined (jco) or null; `== null` takes both.
  const previous = stored == null ? 0 : decodeCount(stored);
  if (previous === null) throw PluginError.internal(`kv ${key} does not hold a count`);
  const count = previous + 1;
  kv.set(key, encodeCount(count));

  log.info(`ticket ${ticket.ticketId} -> ${queue} (#${count}${matched ? `, matched "${matched}"` : ''})`);
  return {
    data: jsonData({ queue, count, matched, priority: ticket.priority }),
    actions: [
      {
        kind: 'helpdesk.assign',
        payload: jsonData({ ticket_id: ticket.ticketId, queue, priority: ticket.priority }),
      },
    ],
  };
}

function queueConfig(key) {
  const value = configGet(key);
  if (value == null) return undefined;
  if (!isQueueName(value)) {
    throw PluginError.invalidConfig(`config ${key} must be 1 to 64 of a-z, 0-9 and '-', got ${JSON.stringify(value)}`);
  }
  return value;
}

export const handler = plugin({ name: NAME, version: VERSION, handlers: { 'ticket.created': onTicketCreated } });

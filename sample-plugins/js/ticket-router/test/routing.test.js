// The routing rules, run with node's test runner: `npm test`. routing.js imports nothing
// from the contract, so it needs no component build.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { counterKey, decodeCount, encodeCount, isQueueName, route } from '../src/routing.js';

test('the first rule with a whole-word keyword wins', () => {
  assert.deepEqual(route({ subject: 'Refund after the outage?' }), { queue: 'billing', matched: 'refund' });
  assert.deepEqual(route({ subject: 'API', body: 'we were HACKED' }), { queue: 'security', matched: 'hacked' });
  assert.deepEqual(route({ subject: 'login page is not working' }), { queue: 'technical', matched: 'not working' });
});

test('keywords inside other words do not match', () => {
  assert.deepEqual(route({ subject: 'Rapid terror of debugging' }), { queue: 'general', matched: null });
});

test('no match goes to the default queue', () => {
  assert.deepEqual(route({ subject: 'hello' }, { defaultQueue: 'frontline' }), { queue: 'frontline', matched: null });
});

test('urgent tickets go to the urgent queue only when one is configured', () => {
  const ticket = { subject: 'invoice missing', priority: 'urgent' };
  assert.deepEqual(route(ticket, { urgentQueue: 'on-call' }), { queue: 'on-call', matched: 'urgent' });
  assert.deepEqual(route(ticket), { queue: 'billing', matched: 'invoice' });
});

test('counters round-trip as decimal text and refuse anything else', () => {
  assert.equal(counterKey('billing'), 'count/billing');
  assert.equal(decodeCount(encodeCount(41)), 41);
  for (const bad of ['', '-1', '01', '1.5', 'x']) assert.equal(decodeCount(new TextEncoder().encode(bad)), null, bad);
});

test('queue names are short lower-case slugs', () => {
  assert.ok(isQueueName('on-call'));
  for (const bad of ['', 'On-Call', '-x', 'a/b', 'x'.repeat(65)]) assert.ok(!isQueueName(bad), bad);
});

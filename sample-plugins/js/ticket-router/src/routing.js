// The routing rules: pure functions, no host calls, so `node --test` runs them as they are.
//
// A ticket goes to the first queue, in the order of RULES, with a keyword that appears as a
// whole word (or phrase) in its subject or body, ignoring case. No match: the default queue.
// An `urgent` ticket goes to the install's urgent queue instead, when one is configured.

export const RULES = [
  { queue: 'security', keywords: ['hacked', 'phishing', 'breach', 'compromised', 'vulnerability', 'suspicious login'] },
  { queue: 'billing', keywords: ['invoice', 'refund', 'charge', 'charged', 'payment', 'billing', 'subscription', 'receipt'] },
  { queue: 'technical', keywords: ['error', 'bug', 'crash', 'timeout', 'api', 'outage', 'not working', 'broken'] },
  { queue: 'sales', keywords: ['pricing', 'quote', 'demo', 'upgrade', 'enterprise', 'discount'] },
];

export const DEFAULT_QUEUE = 'general';
export const PRIORITIES = ['low', 'normal', 'high', 'urgent'];

/** Queue names, from config too: they become KV keys and helpdesk queue ids. */
const QUEUE_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

export const isQueueName = (name) => QUEUE_NAME.test(name);

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const RULE_PATTERNS = RULES.map(({ queue, keywords }) => ({
  queue,
  pattern: new RegExp(`\\b(${keywords.map(escape).join('|')})\\b`, 'i'),
}));

/**
 * Where a ticket goes: `{ queue, matched }`, `matched` being the keyword (lower case) that
 * chose the queue, `urgent` for the urgent queue, or null for the default queue.
 */
export function route({ subject, body = '', priority = 'normal' }, { defaultQueue = DEFAULT_QUEUE, urgentQueue } = {}) {
  if (priority === 'urgent' && urgentQueue) return { queue: urgentQueue, matched: 'urgent' };
  const text = `${subject}\n${body}`;
  for (const { queue, pattern } of RULE_PATTERNS) {
    const hit = pattern.exec(text);
    if (hit) return { queue, matched: hit[1].toLowerCase() };
  }
  return { queue: defaultQueue, matched: null };
}

/** The KV key of a queue's counter. */
export const counterKey = (queue) => `count/${queue}`;

/** A stored counter (decimal ASCII), or null if the bytes are not one. */
export function decodeCount(bytes) {
  const text = new TextDecoder().decode(bytes);
  return /^(0|[1-9][0-9]{0,15})$/.test(text) ? Number(text) : null;
}

export const encodeCount = (count) => new TextEncoder().encode(String(count));

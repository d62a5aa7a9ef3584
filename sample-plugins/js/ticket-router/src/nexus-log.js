// Log helpers for plugins whose world imports `log`. Best effort: when `log` is not granted
// the host refuses the call and the line is dropped. A log-limit overflow still ends the
// invocation (the call does not return).
import { write } from 'nexus:plugin/log@1.0.0';

function line(level, message) {
  try {
    write(level, message);
  } catch {
    // `log` not granted
  }
}

export const debug = (message) => line('debug', message);
export const info = (message) => line('info', message);
export const warn = (message) => line('warn', message);
export const error = (message) => line('error', message);

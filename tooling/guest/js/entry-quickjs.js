// Written by `wasmon plugin build` (engine quickjs): the component's entry.
// It exports `{{EXPORT}}` of world {{WORLD}} from {{APP_NAME}}, turns an
// uncaught exception into a retryable failure (./failure.js), and refuses a
// Promise: QuickJS runs exports without an event loop, so an async function
// would return before its body ran, reporting success for work never done.
import * as plugin from '{{APP}}';
import { log } from 'wasmon:plugin/log@0.1.0';
import { utf8Encode, utf8Decode } from 'wasmon';
import { failure } from './failure.js';

if (typeof plugin['{{EXPORT}}'] !== 'function') {
  throw new Error('{{APP_NAME}} must export function {{EXPORT}} (world {{WORLD}})');
}

// What QuickJS lacks and plugin authors reach for first.
if (globalThis.console === undefined) {
  const line = (level) => (...args) =>
    log(level, args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '), []);
  globalThis.console = { log: line('info'), info: line('info'), debug: line('debug'), warn: line('warn'), error: line('error') };
}
if (globalThis.TextEncoder === undefined) {
  globalThis.TextEncoder = class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(s = '') { return utf8Encode(String(s)); }
  };
}
if (globalThis.TextDecoder === undefined) {
  globalThis.TextDecoder = class TextDecoder {
    get encoding() { return 'utf-8'; }
    decode(bytes = new Uint8Array(0)) { return utf8Decode(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)); }
  };
}

export function {{EXPORT}}(arg) {
  let result;
  try {
    result = plugin['{{EXPORT}}'](arg);
  } catch (e) {
    throw failure(e);
  }
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
    throw {
      tag: 'permanent',
      val: '{{EXPORT}} returned a Promise, which the quickjs engine cannot run (no event loop): write {{EXPORT}} synchronously (http from \'wasmon\' is synchronous), or set "engine": "starlingmonkey" in wasmon-plugin.json for fetch and async functions',
    };
  }
  return result;
}

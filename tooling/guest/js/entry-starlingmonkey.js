// Written by `wasmon plugin build` (engine starlingmonkey): the component's
// entry. It exports `{{EXPORT}}` of world {{WORLD}} from {{APP_NAME}}, awaits
// it (async functions and fetch work: StarlingMonkey runs an event loop) and
// turns an uncaught exception into a retryable failure (./failure.js).
import * as plugin from '{{APP}}';
import { failure } from './failure.js';

if (typeof plugin['{{EXPORT}}'] !== 'function') {
  throw new Error('{{APP_NAME}} must export function {{EXPORT}} (world {{WORLD}})');
}

export async function {{EXPORT}}(arg) {
  try {
    return await plugin['{{EXPORT}}'](arg);
  } catch (e) {
    throw failure(e);
  }
}

// Written by `wasmon plugin build`: what an exception thrown out of a
// plugin's export becomes. A `failure` ({ tag: 'retryable' | 'permanent',
// val: message }) passes through; anything else becomes a retryable failure
// with its message and where it was thrown, so the agent retries the call and
// its log says why. Left alone, an uncaught exception makes the engine trap,
// and the agent learns nothing but `unreachable`.
export function failure(e) {
  if (e !== null && typeof e === 'object' && (e.tag === 'retryable' || e.tag === 'permanent') && typeof e.val === 'string') {
    return e;
  }
  return { tag: 'retryable', val: `uncaught ${describe(e)}` };
}

function describe(e) {
  if (e instanceof Error) {
    // The first frame outside the SDK: where the plugin's own code threw.
    const frames = typeof e.stack === 'string' ? e.stack.split('\n').map((l) => l.trim()) : [];
    const at = frames.find((l) => l.startsWith('at ') && !l.includes('node_modules/wasmon/'))
      ?? frames.find((l) => /^[^@\s]*@/.test(l) && !l.includes('node_modules/wasmon/'));
    return `${e.name}: ${e.message}${at ? ` (${at})` : ''}`;
  }
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

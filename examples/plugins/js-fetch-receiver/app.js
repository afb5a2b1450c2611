// A receiver that POSTs each notification to config.url with the Web `fetch`
// (the starlingmonkey engine, see wasmon-plugin.json: SpiderMonkey with an
// event loop, so async functions and fetch work; a 12.5 MB component).
import { get } from 'wasmon:plugin/config@0.1.0';

export async function notify(notification) {
  const { url } = JSON.parse(get());
  if (typeof url !== 'string') {
    throw { tag: 'permanent', val: 'config.url: missing (where to POST notifications)' };
  }
  // A host outside allow_hosts, or no answer, rejects with a TypeError: the
  // agent sees a retryable failure, and its log names the denied host.
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(notification),
  });
  if (!response.ok) {
    const retry = response.status === 429 || response.status >= 500;
    throw { tag: retry ? 'retryable' : 'permanent', val: `HTTP ${response.status}` };
  }
}

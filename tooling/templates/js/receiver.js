// {{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit). It POSTs
// each notification as Alertmanager webhook JSON to config.url.
//
// Built by `wasmon plugin build` with the quickjs engine: exports run
// synchronously, so HTTP is the synchronous `http` of the `wasmon` module
// (the build provides it); for fetch and async functions set
// "engine": "starlingmonkey" in wasmon-plugin.json. Imports from the contract
// name its version. Throw `{ tag: 'retryable' | 'permanent', val: message }`
// to fail a call; any other exception is a retryable failure.
import { get } from 'wasmon:plugin/config@0.1.0';
import { http, webhookV4 } from 'wasmon';

export function notify(notification) {
  const config = JSON.parse(get());
  if (typeof config.url !== 'string') {
    throw { tag: 'permanent', val: 'config.url: missing (where to POST notifications)' };
  }
  const response = http.postJson(config.url, webhookV4(notification));
  const failed = response.failure(); // 2xx: delivered; 429/5xx: retry; else give up
  if (failed) throw failed;
}

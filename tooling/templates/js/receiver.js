// {{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit), built by
// `wasmon plugin build` with jco componentize. Imports must name the
// package version. Throw `{ tag: 'retryable' | 'permanent', val: message }`
// to fail a call.
import { log } from 'wasmon:plugin/log@0.1.0';
import { get } from 'wasmon:plugin/config@0.1.0';

export function notify(notification) {
  const config = JSON.parse(get());
  log('info', 'notification', [
    ['receiver', notification.receiver],
    ['alerts', String(notification.alerts.length)],
    ['config', JSON.stringify(config)],
  ]);
}

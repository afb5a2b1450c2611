// A receiver that reports each notification in the agent's log.
//
// The same receiver exists in C, JavaScript and Python under
// examples/plugins/: one `info` line "notification" per call, with the
// fields lang, instance, receiver, status, alerts (the count) and alertnames
// (comma-separated, in order). A notification whose common labels have
// `fail` is refused with a permanent failure.
//
// Build: `wasmon plugin build examples/plugins/js-receiver` (jco componentize).
// Imports name the package version, as jco requires.
import { log } from 'wasmon:plugin/log@0.1.0';
import { instanceName } from 'wasmon:plugin/config@0.1.0';

function label(labels, name) {
  const found = labels.find((l) => l.name === name);
  return found === undefined ? undefined : found.value;
}

export function notify(notification) {
  const fail = label(notification.commonLabels, 'fail');
  if (fail !== undefined) {
    // A thrown value becomes the `err` of the result: here a `failure`.
    throw { tag: 'permanent', val: `asked to fail: ${fail}` };
  }
  const names = notification.alerts.map((a) => label(a.labels, 'alertname') ?? '');
  log('info', 'notification', [
    ['lang', 'js'],
    ['instance', instanceName()],
    ['receiver', notification.receiver],
    ['status', notification.status],
    ['alerts', String(notification.alerts.length)],
    ['alertnames', names.join(',')],
  ]);
}

// A receiver that reports each notification in the agent's log and, when
// its config has a `url`, POSTs it there as Alertmanager webhook JSON.
//
// The same receiver exists in C, JavaScript and Python under
// examples/plugins/: one `info` line "notification" per call, with the
// fields lang, instance, receiver, status, alerts (the count) and alertnames
// (comma-separated, in order). A notification whose common labels have
// `fail` is refused with a permanent failure.
//
// Build: `wasmon plugin build examples/plugins/js-receiver` (the quickjs
// engine: synchronous, with HTTP from the `wasmon` module the build provides).
// Imports from the contract name the package version.
import { log } from 'wasmon:plugin/log@0.1.0';
import { get, instanceName } from 'wasmon:plugin/config@0.1.0';
import { http, webhookV4 } from 'wasmon';

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
  const { url } = JSON.parse(get());
  if (url !== undefined) {
    // No answer (refused, or not in allow_hosts) throws an HttpError, which
    // the agent sees as a retryable failure with its message.
    const failed = http.postJson(url, webhookV4(notification)).failure();
    if (failed) throw failed;
  }
}

// {{name}}: a wasmon health check (world `health-check` of wit/plugin.wit).
// It GETs config.url (or the check's target) and passes on a 2xx answer.
// Built with the quickjs engine: see the receiver template's notes.
import { get } from 'wasmon:plugin/config@0.1.0';
import { http } from 'wasmon';

export function check(request) {
  const config = JSON.parse(get());
  const url = config.url ?? request.target;
  let response;
  try {
    response = http.get(url, { timeoutMs: request.timeoutMs });
  } catch (e) {
    // No answer at all (refused, timed out, not in allow_hosts): a failed check.
    return { ok: false, message: e.message, value: null, samples: [] };
  }
  return { ok: response.ok, message: `${url} answered ${response.status}`, value: response.status, samples: [] };
}

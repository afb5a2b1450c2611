// {{name}}: a wasmon health check (world `health-check` of wit/plugin.wit).
import { log } from 'wasmon:plugin/log@0.1.0';

export function check(request) {
  log('debug', `checking ${request.target}`, []);
  return { ok: request.target !== '', message: `${request.check} has a target`, value: undefined, samples: [] };
}

// {{name}}: a wasmon rollback action (world `rollback-action` of wit/plugin.wit).
import { log } from 'wasmon:plugin/log@0.1.0';

export function rollback(request) {
  log('warn', `rolling back ${request.target}`, []);
  if (request.stableVersion === '') {
    throw { tag: 'permanent', val: 'no stable version to return to' };
  }
  return { message: `${request.target} back to ${request.stableVersion}`, currentVersion: request.stableVersion };
}

// {{name}}: a wasmon rollback action (world `rollback-action` of
// wit/plugin.wit). It asks the deployment API at config.url to go back to
// the stable version: a JSON POST, with `Authorization: Bearer <config.token>`
// when a token is configured. Built with the quickjs engine: see the
// receiver template's notes.
import { get } from 'wasmon:plugin/config@0.1.0';
import { http } from 'wasmon';

export function rollback(request) {
  const config = JSON.parse(get());
  if (typeof config.url !== 'string') {
    throw { tag: 'permanent', val: 'config.url: missing (the deployment API to call)' };
  }
  if (request.stableVersion === '') {
    throw { tag: 'permanent', val: 'no stable version to return to' };
  }
  const headers = config.token ? { authorization: `Bearer ${config.token}` } : {};
  const response = http.postJson(
    config.url,
    {
      rollout: request.rollout,
      target: request.target,
      version: request.stableVersion,
      failedVersion: request.failedVersion,
      reason: request.reason,
    },
    { headers },
  );
  const failed = response.failure();
  if (failed) throw failed;
  return {
    message: `${request.target} back to ${request.stableVersion}: ${config.url} answered ${response.status}`,
    currentVersion: request.stableVersion,
  };
}

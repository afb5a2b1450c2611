// {{name}}: a wasmon rollback action (world `rollback-action` of
// wit/plugin.wit) that POSTs the rollback request as JSON to `config.url` (a
// deploy API, a feature-flag service). In the agent config, give
// `[rollouts.rollback]` `config = { url = "https://deploy.example.com/rollback" }`
// and put the URL's host in its `allow_hosts`.
//
// Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.
// The exported function owns `request`; what it puts in `ret`/`err` must be
// heap-allocated (the generated post-return code frees it).

#include <stdio.h>
#include <stdlib.h>

#include "wasmon_http.h"
#include "wasmon_json.h"

bool exports_rollback_action_rollback(rollback_action_rollback_request_t *request,
                                      rollback_action_rollback_outcome_t *ret,
                                      rollback_action_failure_t *err) {
  size_t len;
  char *json = wasmon_rollback_request_json(request, &len);
  char *url = wasmon_config_string("url");
  bool ok;
  int status = 0;
  if (url == NULL || json == NULL) {
    ok = wasmon_fail(err, false, url == NULL ? "config: `url` (a string) is required" : "out of memory");
  } else {
    // A retryable failure is retried every rollout interval; a permanent one
    // ends the attempt.
    wasmon_http_response_t response;
    wasmon_http_post_json(url, json, len, NULL, &status, &response);
    ok = wasmon_http_check(status, &response, err);
    wasmon_http_response_free(&response);
  }
  if (ok) {
    char message[48];
    snprintf(message, sizeof message, "rolled back: HTTP %d", status);
    rollback_action_string_dup(&ret->message, message);
    // Hand the request's string over instead of copying it.
    ret->current_version.is_some = request->stable_version.len > 0;
    if (ret->current_version.is_some) {
      ret->current_version.val = request->stable_version;
      request->stable_version.ptr = NULL;
      request->stable_version.len = 0;
    }
  }
  rollback_action_rollback_request_free(request);
  free(url);
  free(json);
  return ok;
}

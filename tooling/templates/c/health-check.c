// {{name}}: a wasmon health check (world `health-check` of wit/plugin.wit)
// that GETs `config.url` and passes on a 2xx. In the agent config, give the
// check `config = { url = "http://app:8080/healthz" }` and put the URL's
// host in its `allow_hosts`.
//
// Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.
// The exported function owns `request`; what it puts in `ret`/`err` must be
// heap-allocated (the generated post-return code frees it).

#include <stdio.h>
#include <stdlib.h>

#include "wasmon_http.h"
#include "wasmon_json.h"

bool exports_health_check_check(health_check_check_request_t *request,
                                health_check_check_result_t *ret, health_check_failure_t *err) {
  health_check_check_request_free(request);
  char *url = wasmon_config_string("url");
  if (url == NULL) return wasmon_fail(err, false, "config: `url` (a string) is required");

  int status;
  wasmon_http_response_t response;
  if (wasmon_http_request("GET", url, NULL, NULL, 0, &status, &response)) {
    char message[32];
    snprintf(message, sizeof message, "HTTP %d", status);
    health_check_string_dup(&ret->message, message);
  } else {
    // No answer at all is a failed check too: say why.
    health_check_string_dup(&ret->message, response.error ? response.error : "no answer");
  }
  wasmon_http_response_free(&response);
  free(url);

  ret->ok = status >= 200 && status <= 299;
  ret->value.is_some = status != 0;
  ret->value.val = status;
  ret->samples.ptr = NULL;
  ret->samples.len = 0;
  return true;
}

// {{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit) that POSTs
// every notification, as the Alertmanager webhook v4 JSON, to `config.url`.
// In the agent config, give the instance
// `config = { url = "https://hooks.example.com/alerts" }` and put the URL's
// host in its `allow_hosts`.
//
// Build: `wasmon plugin build` (wit-bindgen c writes receiver.h, and the
// wasmon_http / wasmon_json helpers, into build/gen; zig cc compiles;
// wit-component wraps); check: `wasmon plugin inspect {{name}}.wasm`.
//
// Ownership in wit-bindgen's C ABI: an exported function owns its arguments
// (free them); imports borrow theirs; what an import returns is yours to
// free; an error string put into `err` must be heap-allocated (wasmon_fail
// and wasmon_http_check do that).

#include <stdlib.h>

#include "wasmon_http.h"
#include "wasmon_json.h"

bool exports_receiver_notify(receiver_notification_t *notification, receiver_failure_t *err) {
  size_t len;
  char *json = wasmon_notification_json(notification, &len);
  receiver_notification_free(notification);
  char *url = wasmon_config_string("url");
  bool ok;
  if (url == NULL || json == NULL) {
    ok = wasmon_fail(err, false, url == NULL ? "config: `url` (a string) is required" : "out of memory");
  } else {
    // No answer, a 429 or a 5xx is retryable (the agent backs off and
    // retries); any other non-2xx is permanent.
    int status;
    wasmon_http_response_t response;
    wasmon_http_post_json(url, json, len, NULL, &status, &response);
    ok = wasmon_http_check(status, &response, err);
    wasmon_http_response_free(&response);
  }
  free(url);
  free(json);
  return ok;
}

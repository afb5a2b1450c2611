// {{name}}: a wasmon health check (world `health-check` of wit/plugin.wit).
// Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.
// The exported function owns `request`; what it puts in `ret`/`err` must be
// heap-allocated (the generated post-return code frees it).

#include <string.h>

#include "health_check.h"

bool exports_health_check_check(health_check_check_request_t *request,
                                health_check_check_result_t *ret, health_check_failure_t *err) {
  (void)err;
  health_check_string_t message;
  health_check_string_set(&message, "checking");
  health_check_list_tuple2_string_string_t no_fields = {NULL, 0};
  wasmon_plugin_log_log(WASMON_PLUGIN_LOG_LEVEL_DEBUG, &message, &no_fields);

  ret->ok = request->target.len > 0;
  health_check_string_dup(&ret->message, ret->ok ? "the check has a target" : "no target");
  ret->value.is_some = false;
  ret->samples.ptr = NULL;
  ret->samples.len = 0;
  health_check_check_request_free(request);
  return true;
}

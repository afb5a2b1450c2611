// {{name}}: a wasmon metric check (world `metric-check` of wit/plugin.wit).
// Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.
// The exported function owns `request`; what it puts in `ret`/`err` must be
// heap-allocated (the generated post-return code frees it).

#include <stdio.h>
#include <string.h>

#include "metric_check.h"

bool exports_metric_check_evaluate(metric_check_metric_check_request_t *request,
                                   metric_check_check_result_t *ret, metric_check_failure_t *err) {
  metric_check_string_t expr, query_err;
  metric_check_string_set(&expr, "sum(up)");
  wasmon_plugin_query_list_sample_t samples;
  bool ok = wasmon_plugin_query_instant(&expr, request->time_ms, &samples, &query_err);
  metric_check_metric_check_request_free(request);
  if (!ok) {
    // The query's error string is ours: hand it over as the failure.
    err->tag = WASMON_PLUGIN_TYPES_FAILURE_RETRYABLE;
    err->val.retryable = query_err;
    return false;
  }
  double up = samples.len > 0 ? samples.ptr[0].value : 0.0;
  wasmon_plugin_query_list_sample_free(&samples);

  char message[64];
  snprintf(message, sizeof message, "%g targets up", up);
  ret->ok = up > 0;
  metric_check_string_dup(&ret->message, message);
  ret->value.is_some = true;
  ret->value.val = up;
  ret->samples.ptr = NULL;
  ret->samples.len = 0;
  return true;
}

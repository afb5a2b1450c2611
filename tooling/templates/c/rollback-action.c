// {{name}}: a wasmon rollback action (world `rollback-action` of wit/plugin.wit).
// Build: `wasmon plugin build`; check: `wasmon plugin inspect {{name}}.wasm`.
// The exported function owns `request`; what it puts in `ret`/`err` must be
// heap-allocated (the generated post-return code frees it).

#include <string.h>

#include "rollback_action.h"

bool exports_rollback_action_rollback(rollback_action_rollback_request_t *request,
                                      rollback_action_rollback_outcome_t *ret,
                                      rollback_action_failure_t *err) {
  if (request->stable_version.len == 0) {
    err->tag = WASMON_PLUGIN_TYPES_FAILURE_PERMANENT;
    rollback_action_string_dup(&err->val.permanent, "no stable version to return to");
    rollback_action_rollback_request_free(request);
    return false;
  }
  rollback_action_string_dup(&ret->message, "rolled back to the stable version");
  // Hand the request's string over instead of copying it.
  ret->current_version.is_some = true;
  ret->current_version.val = request->stable_version;
  request->stable_version.ptr = NULL;
  request->stable_version.len = 0;
  rollback_action_rollback_request_free(request);
  return true;
}

// {{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit).
// Build: `wasmon plugin build` (wit-bindgen c writes receiver.h into
// build/gen, zig cc compiles, wit-component wraps); check: `wasmon plugin
// inspect {{name}}.wasm`.
//
// Ownership in wit-bindgen's C ABI: an exported function owns its arguments
// (free them); imports borrow theirs; what an import returns is yours to
// free; an error string put into `err` must be heap-allocated (the generated
// post-return code frees it).

#include <stdio.h>
#include <string.h>

#include "receiver.h"

bool exports_receiver_notify(receiver_notification_t *notification, receiver_failure_t *err) {
  if (notification->alerts.len == 0) {
    err->tag = WASMON_PLUGIN_TYPES_FAILURE_PERMANENT;
    receiver_string_dup(&err->val.permanent, "a notification without alerts");
    receiver_notification_free(notification);
    return false;
  }
  // The instance's `config` table from the agent config, as JSON text.
  receiver_string_t config;
  wasmon_plugin_config_get(&config);

  char count[24];
  snprintf(count, sizeof count, "%zu", notification->alerts.len);
  receiver_tuple2_string_string_t fields[3];
  receiver_string_set(&fields[0].f0, "receiver");
  fields[0].f1 = notification->receiver;
  receiver_string_set(&fields[1].f0, "alerts");
  receiver_string_set(&fields[1].f1, count);
  receiver_string_set(&fields[2].f0, "config");
  fields[2].f1 = config;
  receiver_list_tuple2_string_string_t list = {fields, 3};
  receiver_string_t message;
  receiver_string_set(&message, "notification");
  wasmon_plugin_log_log(WASMON_PLUGIN_LOG_LEVEL_INFO, &message, &list);

  receiver_string_free(&config);
  receiver_notification_free(notification);
  return true;
}

// A receiver that reports each notification in the agent's log.
//
// The same receiver exists in C, JavaScript and Python under
// examples/plugins/: one `info` line "notification" per call, with the
// fields lang, instance, receiver, status, alerts (the count) and alertnames
// (comma-separated, in order). A notification whose common labels have
// `fail` is refused with a permanent failure.
//
// Build: `wasmon plugin build examples/plugins/c-receiver` (wit-bindgen c
// writes receiver.h into build/gen; zig cc compiles; wit-component wraps).
//
// Ownership, as wit-bindgen's C ABI has it: the exported function owns its
// arguments (free them), imports only borrow theirs, and strings an import
// returns are ours to free. An error string set into `err` is freed by the
// generated post-return code, so it must be heap-allocated (string_dup).

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver.h"

// The value of label `name`, or NULL.
static const receiver_string_t *label(const wasmon_plugin_types_list_label_t *labels,
                                      const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < labels->len; i++) {
    const receiver_string_t *k = &labels->ptr[i].name;
    if (k->len == n && memcmp(k->ptr, name, n) == 0) return &labels->ptr[i].value;
  }
  return NULL;
}

static void field(receiver_tuple2_string_string_t *f, const char *key, const uint8_t *value,
                  size_t len) {
  receiver_string_set(&f->f0, key);
  f->f1.ptr = (uint8_t *)value;
  f->f1.len = len;
}

bool exports_receiver_notify(receiver_notification_t *n, receiver_failure_t *err) {
  const receiver_string_t *fail = label(&n->common_labels, "fail");
  if (fail != NULL) {
    static const char prefix[] = "asked to fail: ";
    size_t len = sizeof prefix - 1 + fail->len;
    char *msg = malloc(len);
    memcpy(msg, prefix, sizeof prefix - 1);
    memcpy(msg + sizeof prefix - 1, fail->ptr, fail->len);
    err->tag = WASMON_PLUGIN_TYPES_FAILURE_PERMANENT;
    receiver_string_dup_n(&err->val.permanent, msg, len);
    free(msg);
    receiver_notification_free(n);
    return false;
  }

  // alertnames: every alert's alertname, comma-separated.
  size_t cap = 1;
  for (size_t i = 0; i < n->alerts.len; i++) {
    const receiver_string_t *name = label(&n->alerts.ptr[i].labels, "alertname");
    cap += (name ? name->len : 0) + 1;
  }
  char *names = malloc(cap);
  size_t used = 0;
  for (size_t i = 0; i < n->alerts.len; i++) {
    const receiver_string_t *name = label(&n->alerts.ptr[i].labels, "alertname");
    if (i > 0) names[used++] = ',';
    if (name) {
      memcpy(names + used, name->ptr, name->len);
      used += name->len;
    }
  }
  char count[24];
  int count_len = snprintf(count, sizeof count, "%zu", n->alerts.len);
  const char *status =
      n->status == WASMON_PLUGIN_TYPES_ALERT_STATUS_FIRING ? "firing" : "resolved";

  receiver_string_t instance;
  wasmon_plugin_config_instance_name(&instance);

  receiver_tuple2_string_string_t fields[6];
  field(&fields[0], "lang", (const uint8_t *)"c", 1);
  field(&fields[1], "instance", instance.ptr, instance.len);
  field(&fields[2], "receiver", n->receiver.ptr, n->receiver.len);
  field(&fields[3], "status", (const uint8_t *)status, strlen(status));
  field(&fields[4], "alerts", (const uint8_t *)count, (size_t)count_len);
  field(&fields[5], "alertnames", (const uint8_t *)names, used);
  receiver_list_tuple2_string_string_t list = {fields, 6};
  receiver_string_t message;
  receiver_string_set(&message, "notification");
  wasmon_plugin_log_log(WASMON_PLUGIN_LOG_LEVEL_INFO, &message, &list);

  free(names);
  receiver_string_free(&instance);
  receiver_notification_free(n);
  return true;
}

// wasmon_json: the little JSON a C plugin needs to make HTTP calls: reading
// its instance config (JSON text from the agent) and writing the payloads it
// sends. Shipped inside the wasmon binary next to wasmon_http (see there).
//
// Every returned string is NUL-terminated and malloc'd (free it); NULL means
// absent (or out of memory).

#ifndef WASMON_JSON_H
#define WASMON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wasmon_world.h"

#ifdef __cplusplus
extern "C" {
#endif

// The string value of the top-level key `key` of the instance's config (the
// `config` table of the plugin instance in the agent config, `${ENV}`
// expanded by the agent), unescaped. NULL when the config has no such key
// or its value is not a string.
char *wasmon_config_string(const char *key);

// The same for any JSON object text.
char *wasmon_json_string(const uint8_t *json, size_t len, const char *key);

// `s` as a JSON string: quoted and escaped. *out_len gets its length when
// out_len is not NULL.
char *wasmon_json_quote(const uint8_t *s, size_t len, size_t *out_len);

// The notification as the Alertmanager webhook v4 JSON, what Alertmanager's
// `webhook_config` POSTs (and what the Rust SDK's
// `alertmanager::webhook_v4` writes): version, groupKey, truncatedAlerts,
// status, receiver, groupLabels, commonLabels, commonAnnotations,
// externalURL and alerts (status, labels, annotations, startsAt, endsAt,
// generatorURL, fingerprint); label lists become objects.
char *wasmon_notification_json(const wasmon_plugin_types_notification_t *n, size_t *out_len);

// A rollback request as {"rollout", "target", "failed_version",
// "stable_version", "reason"}.
char *wasmon_rollback_request_json(const wasmon_plugin_types_rollback_request_t *r,
                                   size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif

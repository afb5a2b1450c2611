// wasmon_json: see wasmon_json.h. The reader is a bounds-checked scanner
// that never recurses (nesting is counted), so a hostile config can make it
// return NULL but not crash or overflow the stack; the writers escape the
// way serde_json does and write keys in the order serde_json's default map
// sorts them, so a C plugin's body is the Rust SDK's byte for byte.

#include "wasmon_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef WASMON_WORLD(string_t) world_string_t;

// A growing string; `failed` once memory ran out (then it stays empty-handed).
typedef struct {
  char *ptr;
  size_t len, cap;
  bool failed;
} buf_t;

static void put(buf_t *b, const void *s, size_t n) {
  if (b->failed) return;
  if (b->ptr == NULL || b->len + n + 1 > b->cap) {
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < b->len + n + 1) {
      if (cap > SIZE_MAX / 2) {
        b->failed = true;
        return;
      }
      cap *= 2;
    }
    char *p = realloc(b->ptr, cap);
    if (p == NULL) {
      b->failed = true;
      return;
    }
    b->ptr = p;
    b->cap = cap;
  }
  if (n > 0) memcpy(b->ptr + b->len, s, n);
  b->len += n;
  b->ptr[b->len] = 0;
}

static void put_str(buf_t *b, const char *s) { put(b, s, strlen(s)); }

// The string, or NULL (and nothing to free) when memory ran out.
static char *finish(buf_t *b, size_t *out_len) {
  put(b, "", 0);
  if (b->failed) {
    free(b->ptr);
    return NULL;
  }
  if (out_len != NULL) *out_len = b->len;
  return b->ptr;
}

static void quote(buf_t *b, const uint8_t *s, size_t n) {
  put(b, "\"", 1);
  size_t plain = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    const char *escape = NULL;
    char code[8];
    switch (c) {
      case '"': escape = "\\\""; break;
      case '\\': escape = "\\\\"; break;
      case '\n': escape = "\\n"; break;
      case '\r': escape = "\\r"; break;
      case '\t': escape = "\\t"; break;
      case '\b': escape = "\\b"; break;
      case '\f': escape = "\\f"; break;
      default:
        if (c < 0x20) {
          snprintf(code, sizeof code, "\\u%04x", c);
          escape = code;
        }
    }
    if (escape == NULL) continue;
    put(b, s + plain, i - plain);
    put_str(b, escape);
    plain = i + 1;
  }
  put(b, s + plain, n - plain);
  put(b, "\"", 1);
}

char *wasmon_json_quote(const uint8_t *s, size_t len, size_t *out_len) {
  buf_t b = {0};
  quote(&b, s, len);
  return finish(&b, out_len);
}

static void key(buf_t *b, const char *name, bool first) {
  if (!first) put(b, ",", 1);
  quote(b, (const uint8_t *)name, strlen(name));
  put(b, ":", 1);
}

static void string_field(buf_t *b, const char *name, const world_string_t *value, bool first) {
  key(b, name, first);
  quote(b, value->ptr, value->len);
}

static void labels_field(buf_t *b, const char *name, const wasmon_plugin_types_list_label_t *l,
                         bool first) {
  key(b, name, first);
  put(b, "{", 1);
  for (size_t i = 0; i < l->len; i++) {
    if (i > 0) put(b, ",", 1);
    quote(b, l->ptr[i].name.ptr, l->ptr[i].name.len);
    put(b, ":", 1);
    quote(b, l->ptr[i].value.ptr, l->ptr[i].value.len);
  }
  put(b, "}", 1);
}

static void status_field(buf_t *b, wasmon_plugin_types_alert_status_t status, bool first) {
  key(b, "status", first);
  put_str(b, status == WASMON_PLUGIN_TYPES_ALERT_STATUS_FIRING ? "\"firing\"" : "\"resolved\"");
}

char *wasmon_notification_json(const wasmon_plugin_types_notification_t *n, size_t *out_len) {
  buf_t b = {0};
  put(&b, "{", 1);
  key(&b, "alerts", true);
  put(&b, "[", 1);
  for (size_t i = 0; i < n->alerts.len; i++) {
    const wasmon_plugin_types_alert_t *a = &n->alerts.ptr[i];
    put(&b, i > 0 ? ",{" : "{", i > 0 ? 2 : 1);
    labels_field(&b, "annotations", &a->annotations, true);
    string_field(&b, "endsAt", &a->ends_at, false);
    string_field(&b, "fingerprint", &a->fingerprint, false);
    string_field(&b, "generatorURL", &a->generator_url, false);
    labels_field(&b, "labels", &a->labels, false);
    string_field(&b, "startsAt", &a->starts_at, false);
    status_field(&b, a->status, false);
    put(&b, "}", 1);
  }
  put(&b, "]", 1);
  labels_field(&b, "commonAnnotations", &n->common_annotations, false);
  labels_field(&b, "commonLabels", &n->common_labels, false);
  string_field(&b, "externalURL", &n->external_url, false);
  string_field(&b, "groupKey", &n->group_key, false);
  labels_field(&b, "groupLabels", &n->group_labels, false);
  string_field(&b, "receiver", &n->receiver, false);
  status_field(&b, n->status, false);
  char count[16];
  snprintf(count, sizeof count, "%u", (unsigned)n->truncated_alerts);
  key(&b, "truncatedAlerts", false);
  put_str(&b, count);
  key(&b, "version", false);
  put_str(&b, "\"4\"}");
  return finish(&b, out_len);
}

char *wasmon_rollback_request_json(const wasmon_plugin_types_rollback_request_t *r,
                                   size_t *out_len) {
  buf_t b = {0};
  put(&b, "{", 1);
  string_field(&b, "rollout", &r->rollout, true);
  string_field(&b, "target", &r->target, false);
  string_field(&b, "failed_version", &r->failed_version, false);
  string_field(&b, "stable_version", &r->stable_version, false);
  string_field(&b, "reason", &r->reason, false);
  put(&b, "}", 1);
  return finish(&b, out_len);
}

// Reading.

typedef struct {
  const uint8_t *p, *end;
} scan_t;

static void ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const uint8_t *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t c = p[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

static void put_utf8(buf_t *b, uint32_t c) {
  uint8_t u[4];
  size_t n;
  if (c < 0x80) {
    u[0] = (uint8_t)c;
    n = 1;
  } else if (c < 0x800) {
    u[0] = (uint8_t)(0xC0 | (c >> 6));
    u[1] = (uint8_t)(0x80 | (c & 0x3F));
    n = 2;
  } else if (c < 0x10000) {
    u[0] = (uint8_t)(0xE0 | (c >> 12));
    u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    u[2] = (uint8_t)(0x80 | (c & 0x3F));
    n = 3;
  } else {
    u[0] = (uint8_t)(0xF0 | (c >> 18));
    u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    u[3] = (uint8_t)(0x80 | (c & 0x3F));
    n = 4;
  }
  put(b, u, n);
}

// Reads the string at s->p (a '"'), appending its text to `out` unless NULL.
// False when it is malformed or unterminated.
static bool string(scan_t *s, buf_t *out) {
  s->p++;
  while (s->p < s->end) {
    uint8_t c = *s->p++;
    if (c == '"') return true;
    if (c < 0x20) return false;
    if (c != '\\') {
      if (out != NULL) put(out, &c, 1);
      continue;
    }
    if (s->p >= s->end) return false;
    uint8_t e = *s->p++;
    uint32_t cp;
    switch (e) {
      case '"': case '\\': case '/': cp = e; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        if (s->end - s->p < 4) return false;
        int h = hex4(s->p);
        if (h < 0) return false;
        s->p += 4;
        cp = (uint32_t)h;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          int low = s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u' ? hex4(s->p + 2) : -1;
          if (low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
            s->p += 6;
          } else {
            cp = 0xFFFD;
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD;
        }
        break;
      }
      default: return false;
    }
    if (out != NULL) put_utf8(out, cp);
  }
  return false;
}

// Skips one value. Containers are followed by counting their nesting, not
// by recursion; scalars run to the next delimiter. Lenient about what is
// inside, strict about bounds.
static bool skip(scan_t *s) {
  size_t depth = 0;
  do {
    ws(s);
    if (s->p >= s->end) return false;
    uint8_t c = *s->p;
    if (c == '"') {
      if (!string(s, NULL)) return false;
    } else if (c == '{' || c == '[') {
      depth++;
      s->p++;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return false;
      depth--;
      s->p++;
    } else if (c == ',' || c == ':') {
      if (depth == 0) return false;
      s->p++;
    } else {
      const uint8_t *start = s->p;
      while (s->p < s->end && *s->p != 0 && strchr(",:]}{[\" \t\r\n", *s->p) == NULL) s->p++;
      if (s->p == start) return false;
    }
  } while (depth > 0);
  return true;
}

char *wasmon_json_string(const uint8_t *json, size_t len, const char *name) {
  if (json == NULL || name == NULL) return NULL;
  scan_t s = {json, json + len};
  size_t name_len = strlen(name);
  ws(&s);
  if (s.p >= s.end || *s.p != '{') return NULL;
  s.p++;
  for (;;) {
    ws(&s);
    if (s.p >= s.end || *s.p != '"') return NULL;  // also an empty object
    buf_t k = {0};
    bool ok = string(&s, &k);
    bool match = ok && !k.failed && k.len == name_len && memcmp(k.ptr ? k.ptr : "", name, name_len) == 0;
    free(k.ptr);
    if (!ok) return NULL;
    ws(&s);
    if (s.p >= s.end || *s.p != ':') return NULL;
    s.p++;
    ws(&s);
    if (match && s.p < s.end && *s.p == '"') {
      buf_t value = {0};
      if (!string(&s, &value)) {
        free(value.ptr);
        return NULL;
      }
      return finish(&value, NULL);
    }
    if (!skip(&s)) return NULL;
    ws(&s);
    if (s.p >= s.end || *s.p != ',') return NULL;
    s.p++;
  }
}

char *wasmon_config_string(const char *name) {
  world_string_t config;
  wasmon_plugin_config_get(&config);
  char *value = wasmon_json_string(config.ptr, config.len, name);
  WASMON_WORLD(string_free)(&config);
  return value;
}

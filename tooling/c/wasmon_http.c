// wasmon_http: see wasmon_http.h. The same steps, error texts and rules as
// the Rust SDK's `wasmon_sdk::http` (sdk/src/http.rs), so a plugin behaves
// the same whatever language it is written in.
//
// Ownership in wit-bindgen's C ABI: handles passed as `own` are consumed by
// the import, everything an import returns is ours to free or drop, and a
// child resource (a body's stream) must be dropped before its parent is
// finished.

#include "wasmon_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef WASMON_WORLD(string_t) world_string_t;
typedef WASMON_WORLD(list_u8_t) world_bytes_t;

// The largest write `blocking-write-and-flush` accepts at once.
#define WRITE_CHUNK 4096
// How much of a response body a failure message quotes.
#define QUOTED_BODY 512
#define READ_CHUNK (64 * 1024)

static const char USER_AGENT[] = "wasmon-c/" WASMON_VERSION;

// printf into a fresh heap string; NULL when out of memory.
static char *vformat(const char *format, va_list args) {
  va_list again;
  va_copy(again, args);
  int n = vsnprintf(NULL, 0, format, args);
  char *s = n < 0 ? NULL : malloc((size_t)n + 1);
  if (s != NULL) vsnprintf(s, (size_t)n + 1, format, again);
  va_end(again);
  return s;
}

static char *format(const char *format, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *format, ...) {
  va_list args;
  va_start(args, format);
  char *s = vformat(format, args);
  va_end(args);
  return s;
}

// The length of the valid UTF-8 sequence at s[0..n), or 0.
static size_t utf8_sequence(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  size_t len;
  uint32_t min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  uint32_t cp = c & (0x3F >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// `message` made valid UTF-8, each invalid byte replaced by U+FFFD: the host
// refuses (traps on) a string that is not, and a failure quotes what
// servers send.
static char *utf8_lossy(char *message) {
  if (message == NULL) return NULL;
  const uint8_t *s = (const uint8_t *)message;
  size_t n = strlen(message), bad = 0;
  for (size_t i = 0; i < n;) {
    size_t len = utf8_sequence(s + i, n - i);
    if (len == 0) bad++;
    i += len != 0 ? len : 1;
  }
  if (bad == 0) return message;
  char *out = malloc(n + 2 * bad + 1);
  if (out == NULL) {
    free(message);
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    size_t len = utf8_sequence(s + i, n - i);
    if (len == 0) {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    } else {
      memcpy(out + o, s + i, len);
      o += len;
      i += len;
    }
  }
  out[o] = 0;
  free(message);
  return out;
}

bool wasmon_fail(wasmon_plugin_types_failure_t *err, bool retryable, const char *format, ...) {
  va_list args;
  va_start(args, format);
  char *message = utf8_lossy(vformat(format, args));
  va_end(args);
  // The generated post-return code frees the string: it must be ours, on
  // the heap (an empty one when memory ran out).
  world_string_t s = {(uint8_t *)message, message != NULL ? strlen(message) : 0};
  if (retryable) {
    err->tag = WASMON_PLUGIN_TYPES_FAILURE_RETRYABLE;
    err->val.retryable = s;
  } else {
    err->tag = WASMON_PLUGIN_TYPES_FAILURE_PERMANENT;
    err->val.permanent = s;
  }
  return false;
}

// wasi:http error codes as WIT spells them, by tag.
static const char *const ERROR_CODES[] = {
    "DNS-timeout",
    "DNS-error",
    "destination-not-found",
    "destination-unavailable",
    "destination-IP-prohibited",
    "destination-IP-unroutable",
    "connection-refused",
    "connection-terminated",
    "connection-timeout",
    "connection-read-timeout",
    "connection-write-timeout",
    "connection-limit-reached",
    "TLS-protocol-error",
    "TLS-certificate-error",
    "TLS-alert-received",
    "HTTP-request-denied",
    "HTTP-request-length-required",
    "HTTP-request-body-size",
    "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid",
    "HTTP-request-URI-too-long",
    "HTTP-request-header-section-size",
    "HTTP-request-header-size",
    "HTTP-request-trailer-section-size",
    "HTTP-request-trailer-size",
    "HTTP-response-incomplete",
    "HTTP-response-header-section-size",
    "HTTP-response-header-size",
    "HTTP-response-body-size",
    "HTTP-response-trailer-section-size",
    "HTTP-response-trailer-size",
    "HTTP-response-transfer-coding",
    "HTTP-response-content-coding",
    "HTTP-response-timeout",
    "HTTP-upgrade-failed",
    "HTTP-protocol-error",
    "loop-detected",
    "configuration-error",
    "internal-error",
};

// "what: code" for an error code (which this frees).
static char *error_code_message(const char *what, wasi_http_types_error_code_t *code) {
  char *message;
  size_t n = sizeof ERROR_CODES / sizeof ERROR_CODES[0];
  const char *name = code->tag < n ? ERROR_CODES[code->tag] : "unknown-error";
  if (code->tag == WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR && code->val.internal_error.is_some) {
    message = format("%s: %s (%.*s)", what, name, (int)code->val.internal_error.val.len,
                     (const char *)code->val.internal_error.val.ptr);
  } else {
    message = format("%s: %s", what, name);
  }
  wasi_http_types_error_code_free(code);
  return message;
}

// What a stream error says (dropping the error resource it carries).
static char *stream_error_message(const char *what, wasi_io_streams_stream_error_t *e) {
  if (e->tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED) return format("%s: stream closed", what);
  wasi_io_error_own_error_t error = e->val.last_operation_failed;
  wasi_io_error_borrow_error_t borrowed = wasi_io_error_borrow_error(error);
  wasi_http_types_error_code_t code;
  char *message;
  if (wasi_http_types_http_error_code(borrowed, &code)) {
    message = error_code_message(what, &code);
  } else {
    world_string_t debug;
    wasi_io_error_method_error_to_debug_string(borrowed, &debug);
    message = format("%s: %.*s", what, (int)debug.len, (const char *)debug.ptr);
    WASMON_WORLD(string_free)(&debug);
  }
  wasi_io_error_error_drop_own(error);
  return message;
}

static bool ascii_equal(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

static bool name_is(const char *name, const char *lower) {
  size_t n = strlen(lower);
  return strlen(name) == n && ascii_equal(name, lower, n);
}

// A URL split the way wasi:http wants it.
typedef struct {
  bool https;
  char *authority;
  char *path_with_query;
} target_t;

// Splits `url`; returns NULL, or why it cannot (a heap string).
static char *parse_url(const char *url, target_t *t) {
  const char *sep = strstr(url, "://");
  if (sep == NULL) return format("not an absolute URL (expected http:// or https://)");
  size_t scheme = (size_t)(sep - url);
  if (scheme == 4 && ascii_equal(url, "http", 4)) {
    t->https = false;
  } else if (scheme == 5 && ascii_equal(url, "https", 5)) {
    t->https = true;
  } else {
    return format("unsupported scheme \"%.*s\"", (int)scheme, url);
  }
  const char *rest = sep + 3;
  size_t end = strcspn(rest, "#");
  size_t host = strcspn(rest, "/?#");
  if (host > end) host = end;
  if (host == 0) return format("no host in URL");
  if (memchr(rest, '@', host) != NULL) {
    return format("credentials in the URL are not supported; send a header");
  }
  t->authority = format("%.*s", (int)host, rest);
  const char *path = rest + host;
  size_t path_len = end - host;
  if (path_len == 0) {
    t->path_with_query = format("/");
  } else if (path[0] == '?') {
    t->path_with_query = format("/%.*s", (int)path_len, path);
  } else {
    t->path_with_query = format("%.*s", (int)path_len, path);
  }
  if (t->authority == NULL || t->path_with_query == NULL) return format("out of memory");
  return NULL;
}

static void method_of(const char *name, wasi_http_types_method_t *m) {
  static const char *const NAMES[] = {"get",     "head",    "post",  "put",  "delete",
                                      "connect", "options", "trace", "patch"};
  for (uint8_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
    if (name_is(name, NAMES[i])) {
      m->tag = i;
      return;
    }
  }
  m->tag = WASI_HTTP_TYPES_METHOD_OTHER;
  m->val.other.ptr = (uint8_t *)name;
  m->val.other.len = strlen(name);
}

static bool carries_body(const char *method) {
  return name_is(method, "post") || name_is(method, "put") || name_is(method, "patch");
}

// The request's header fields: the caller's (names lowercased, any
// Content-Length dropped) and the body's Content-Length. Without it the host
// streams the body chunked. A method that carries a body says 0 for an
// empty one, as curl and Go do. NULL when out of memory.
static wasi_http_types_tuple2_field_name_field_value_t *request_headers(
    const char *method, const char *const *headers, size_t len, char *length, size_t *count) {
  size_t pairs = 0;
  while (headers != NULL && headers[2 * pairs] != NULL && headers[2 * pairs + 1] != NULL) pairs++;
  wasi_http_types_tuple2_field_name_field_value_t *fields = calloc(pairs + 1, sizeof *fields);
  if (fields == NULL) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < pairs; i++) {
    const char *name = headers[2 * i], *value = headers[2 * i + 1];
    if (name_is(name, "content-length")) continue;
    size_t name_len = strlen(name);
    uint8_t *lower = malloc(name_len + 1);
    if (lower == NULL) {
      for (size_t j = 0; j < n; j++) free(fields[j].f0.ptr);
      free(fields);
      return NULL;
    }
    for (size_t j = 0; j < name_len; j++) {
      char c = name[j];
      lower[j] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    fields[n].f0.ptr = lower;
    fields[n].f0.len = name_len;
    fields[n].f1.ptr = (uint8_t *)value;
    fields[n].f1.len = strlen(value);
    n++;
  }
  if (len > 0 || carries_body(method)) {
    snprintf(length, 24, "%zu", len);
    uint8_t *name = (uint8_t *)strdup("content-length");
    if (name == NULL) {
      for (size_t j = 0; j < n; j++) free(fields[j].f0.ptr);
      free(fields);
      return NULL;
    }
    fields[n].f0.ptr = name;
    fields[n].f0.len = strlen("content-length");
    fields[n].f1.ptr = (uint8_t *)length;
    fields[n].f1.len = strlen(length);
    n++;
  }
  *count = n;
  return fields;
}

// Writes the whole body and finishes it (which consumes `body`). NULL, or
// what went wrong.
static char *write_body(wasi_http_types_own_outgoing_body_t body, const uint8_t *bytes,
                        size_t len) {
  wasi_http_types_own_output_stream_t stream;
  if (!wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body),
                                                  &stream)) {
    wasi_http_types_outgoing_body_drop_own(body);
    return format("request body stream already taken");
  }
  char *failed = NULL;
  for (size_t at = 0; at < len && failed == NULL; at += WRITE_CHUNK) {
    world_bytes_t chunk = {(uint8_t *)bytes + at, len - at < WRITE_CHUNK ? len - at : WRITE_CHUNK};
    wasi_io_streams_stream_error_t e;
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
            wasi_io_streams_borrow_output_stream(stream), &chunk, &e)) {
      failed = stream_error_message("writing the request body", &e);
      if (failed == NULL) failed = format("writing the request body");
    }
  }
  // The stream is a child of the body: it goes before the body is finished.
  wasi_io_streams_output_stream_drop_own(stream);
  if (failed != NULL) {
    // Dropped unfinished: the host knows the body is incomplete.
    wasi_http_types_outgoing_body_drop_own(body);
    return failed;
  }
  wasi_http_types_error_code_t code;
  if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &code)) {
    return error_code_message("finishing the request body", &code);
  }
  return NULL;
}

// Blocks until the response head arrives. Returns true with *out, or false
// with *code set (the caller frees it) or, without a code, *taken.
static bool wait(wasi_http_types_own_future_incoming_response_t future,
                 wasi_http_types_own_incoming_response_t *out, wasi_http_types_error_code_t *code,
                 bool *taken) {
  wasi_http_types_borrow_future_incoming_response_t f =
      wasi_http_types_borrow_future_incoming_response(future);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t result;
  while (!wasi_http_types_method_future_incoming_response_get(f, &result)) {
    wasi_http_types_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(f);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
    wasi_io_poll_pollable_drop_own(ready);
  }
  *taken = result.is_err;
  if (result.is_err) return false;
  if (result.val.ok.is_err) {
    *code = result.val.ok.val.err;
    return false;
  }
  *out = result.val.ok.val.ok;
  return true;
}

// Reads a response body to its end into response->body. NULL, or what went wrong.
static char *read_body(wasi_http_types_own_incoming_response_t incoming,
                       wasmon_http_response_t *response) {
  wasi_http_types_own_incoming_body_t body;
  if (!wasi_http_types_method_incoming_response_consume(
          wasi_http_types_borrow_incoming_response(incoming), &body)) {
    return format("response body already taken");
  }
  wasi_http_types_own_input_stream_t stream;
  if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body),
                                                   &stream)) {
    wasi_http_types_incoming_body_drop_own(body);
    return format("response body stream already taken");
  }
  char *failed = NULL;
  size_t len = 0, cap = 4096;
  uint8_t *all = malloc(cap);
  if (all == NULL) failed = format("out of memory");
  while (failed == NULL) {
    world_bytes_t chunk;
    wasi_io_streams_stream_error_t e;
    if (!wasi_io_streams_method_input_stream_blocking_read(
            wasi_io_streams_borrow_input_stream(stream), READ_CHUNK, &chunk, &e)) {
      if (e.tag != WASI_IO_STREAMS_STREAM_ERROR_CLOSED) {
        failed = stream_error_message("reading the response body", &e);
        if (failed == NULL) failed = format("reading the response body");
      }
      break;
    }
    // Doubling: a long body costs O(n) copies, not one per chunk.
    size_t need = len + chunk.len + 1;
    if (need > cap) {
      while (cap < need && cap <= SIZE_MAX / 2) cap *= 2;
      uint8_t *grown = cap >= need ? realloc(all, cap) : NULL;
      if (grown == NULL) {
        failed = format("out of memory reading the response body");
      } else {
        all = grown;
      }
    }
    if (failed == NULL && chunk.len > 0) {
      memcpy(all + len, chunk.ptr, chunk.len);
      len += chunk.len;
    }
    WASMON_WORLD(list_u8_free)(&chunk);
  }
  wasi_io_streams_input_stream_drop_own(stream);
  wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(body));
  if (failed != NULL) {
    free(all);
    return failed;
  }
  all[len] = 0;
  response->body = all;
  response->len = len;
  return NULL;
}

// Records a failure in *response; `message` is a heap string (or NULL when
// memory ran out, then `fallback` stands in).
static bool failed(wasmon_http_response_t *response, bool retryable, char *message,
                   const char *fallback) {
  response->error = message != NULL ? message : strdup(fallback);
  response->retryable = retryable;
  return false;
}

bool wasmon_http_request(const char *method, const char *url, const char *const *headers,
                         const void *body, size_t len, int *status,
                         wasmon_http_response_t *response) {
  memset(response, 0, sizeof *response);
  *status = 0;
  if (method == NULL || url == NULL) {
    return failed(response, false, format("no method or URL"), "no method or URL");
  }
  char upper[16] = {0};
  for (size_t i = 0; i < sizeof upper - 1 && method[i] != 0; i++) {
    char c = method[i];
    upper[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  char *what = format("%s %s", upper, url);
  if (what == NULL) return failed(response, true, NULL, "out of memory");

  target_t target = {false, NULL, NULL};
  char *bad = parse_url(url, &target);
  if (bad != NULL) {
    char *message = format("%s: %s", what, bad);
    free(bad);
    free(target.authority);
    free(target.path_with_query);
    free(what);
    return failed(response, false, message, "invalid URL");
  }

  char length[24];
  size_t count = 0;
  wasi_http_types_tuple2_field_name_field_value_t *fields =
      request_headers(method, headers, len, length, &count);
  bool ok = false;
  char *message = NULL;
  bool retryable = false;
  if (fields == NULL) {
    message = format("%s: out of memory", what);
    retryable = true;
    goto done;
  }
  wasi_http_types_list_tuple2_field_name_field_value_t list = {fields, count};
  wasi_http_types_own_fields_t header_fields;
  wasi_http_types_header_error_t header_error;
  bool built = wasi_http_types_static_fields_from_list(&list, &header_fields, &header_error);
  for (size_t i = 0; i < count; i++) free(fields[i].f0.ptr);
  free(fields);
  if (!built) {
    message = format("%s: invalid header (%s)", what,
                     header_error.tag == WASI_HTTP_TYPES_HEADER_ERROR_FORBIDDEN ? "forbidden"
                                                                                : "invalid syntax");
    goto done;
  }

  wasi_http_types_own_outgoing_request_t request =
      wasi_http_types_constructor_outgoing_request(header_fields);
  wasi_http_types_borrow_outgoing_request_t r = wasi_http_types_borrow_outgoing_request(request);
  wasi_http_types_method_t m;
  method_of(method, &m);
  wasi_http_types_scheme_t scheme = {
      target.https ? WASI_HTTP_TYPES_SCHEME_HTTPS : WASI_HTTP_TYPES_SCHEME_HTTP, {{0}}};
  world_string_t authority = {(uint8_t *)target.authority, strlen(target.authority)};
  world_string_t path = {(uint8_t *)target.path_with_query, strlen(target.path_with_query)};
  const char *invalid = NULL;
  if (!wasi_http_types_method_outgoing_request_set_method(r, &m)) {
    invalid = "method";
  } else if (!wasi_http_types_method_outgoing_request_set_scheme(r, &scheme)) {
    invalid = "scheme";
  } else if (!wasi_http_types_method_outgoing_request_set_authority(r, &authority)) {
    invalid = "host";
  } else if (!wasi_http_types_method_outgoing_request_set_path_with_query(r, &path)) {
    invalid = "path";
  }
  wasi_http_types_own_outgoing_body_t outgoing;
  if (invalid == NULL && !wasi_http_types_method_outgoing_request_body(r, &outgoing)) {
    invalid = "body (already taken)";
  }
  if (invalid != NULL) {
    wasi_http_types_outgoing_request_drop_own(request);
    message = format("%s: invalid %s", what, invalid);
    goto done;
  }

  // Hand the request over before writing its body: the host may only start
  // draining the body once the request is under way, and a body bigger than
  // its buffer would block forever otherwise.
  wasi_http_types_own_future_incoming_response_t future;
  wasi_http_types_error_code_t code;
  if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
    wasi_http_types_outgoing_body_drop_own(outgoing);
    message = error_code_message(what, &code);
    retryable = true;
    goto done;
  }
  char *write_failed = write_body(outgoing, body, len);
  wasi_http_types_own_incoming_response_t incoming;
  bool taken = false;
  bool answered = wait(future, &incoming, &code, &taken);
  if (!answered) {
    // A body that cannot be written usually means the request failed; the
    // response says why, more precisely than the stream.
    message = taken ? format("%s: internal-error (response already taken)", what)
                    : error_code_message(what, &code);
    retryable = true;
  } else if (write_failed != NULL) {
    message = format("%s: %s", what, write_failed);
    retryable = true;
    wasi_http_types_incoming_response_drop_own(incoming);
  } else {
    *status = wasi_http_types_method_incoming_response_status(
        wasi_http_types_borrow_incoming_response(incoming));
    char *read_failed = read_body(incoming, response);
    wasi_http_types_incoming_response_drop_own(incoming);
    if (read_failed != NULL) {
      *status = 0;
      message = format("%s: %s", what, read_failed);
      free(read_failed);
      retryable = true;
    } else {
      ok = true;
    }
  }
  free(write_failed);
  wasi_http_types_future_incoming_response_drop_own(future);

done:
  free(target.authority);
  free(target.path_with_query);
  free(what);
  if (!ok) return failed(response, retryable, message, "out of memory");
  return true;
}

bool wasmon_http_post_json(const char *url, const char *json, size_t len,
                           const char *const *headers, int *status,
                           wasmon_http_response_t *response) {
  size_t pairs = 0;
  bool has_type = false, has_agent = false;
  while (headers != NULL && headers[2 * pairs] != NULL && headers[2 * pairs + 1] != NULL) {
    has_type = has_type || name_is(headers[2 * pairs], "content-type");
    has_agent = has_agent || name_is(headers[2 * pairs], "user-agent");
    pairs++;
  }
  const char **all = calloc(2 * pairs + 5, sizeof *all);
  if (all == NULL) {
    memset(response, 0, sizeof *response);
    *status = 0;
    return failed(response, true, NULL, "out of memory");
  }
  size_t n = 0;
  for (size_t i = 0; i < 2 * pairs; i++) all[n++] = headers[i];
  if (!has_type) {
    all[n++] = "content-type";
    all[n++] = "application/json";
  }
  if (!has_agent) {
    all[n++] = "user-agent";
    all[n++] = USER_AGENT;
  }
  all[n] = NULL;
  bool ok = wasmon_http_request("POST", url, all, json, len, status, response);
  free(all);
  return ok;
}

bool wasmon_http_check(int status, const wasmon_http_response_t *response,
                       wasmon_plugin_types_failure_t *err) {
  if (status == 0) {
    return wasmon_fail(err, response->error == NULL || response->retryable, "%s",
                       response->error != NULL ? response->error : "no response");
  }
  if (status >= 200 && status <= 299) return true;
  bool retryable = status == 429 || (status >= 500 && status <= 599);
  // The start of the body, trimmed, cut at a character boundary.
  const uint8_t *b = response->body;
  size_t start = 0, end = b != NULL ? response->len : 0;
  while (start < end && (b[start] == ' ' || (b[start] >= '\t' && b[start] <= '\r'))) start++;
  while (end > start && (b[end - 1] == ' ' || (b[end - 1] >= '\t' && b[end - 1] <= '\r'))) end--;
  if (end - start > QUOTED_BODY) {
    end = start + QUOTED_BODY;
    while (end > start && (b[end] & 0xC0) == 0x80) end--;
  }
  if (end == start) return wasmon_fail(err, retryable, "HTTP %d", status);
  return wasmon_fail(err, retryable, "HTTP %d: %.*s", status, (int)(end - start),
                     (const char *)b + start);
}

void wasmon_http_response_free(wasmon_http_response_t *response) {
  free(response->body);
  free(response->error);
  memset(response, 0, sizeof *response);
}

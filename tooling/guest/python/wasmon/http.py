"""Outbound HTTP for wasmon plugins, over `wasi:http`.

    from wasmon import http

    r = http.post_json(url, {"text": "disk full"}, headers={"Authorization": "Bearer " + token})
    if r.status >= 300:
        ...

Every request goes through the agent, which lets it out only to the hosts in
the plugin instance's `allow_hosts`; any other host fails with
`HttpError` whose `code` is `"HTTP-request-denied"`. The host does TLS for
`https://` URLs. Bodies are sent with a Content-Length.

The standard library's `http.client` and `urllib.request` do not work in a
plugin: they need `ssl` and sockets that a WebAssembly component does not
have. Use this module instead.
"""

import json as _json
from urllib.parse import urlsplit as _urlsplit

from componentize_py_types import Err as _Err
from wit_world.imports import http_types as _t
from wit_world.imports import outgoing_handler as _handler
from wit_world.imports import streams as _streams
from wit_world.imports import types as _types

__all__ = ["HttpError", "Response", "request", "get", "post", "post_json"]

# The most a response body may be before the request fails (the instance's
# memory_limit bounds the plugin anyway; this names the problem first).
MAX_BODY = 16 * 1024 * 1024

_METHODS = {
    "GET": _t.Method_Get,
    "HEAD": _t.Method_Head,
    "POST": _t.Method_Post,
    "PUT": _t.Method_Put,
    "DELETE": _t.Method_Delete,
    "OPTIONS": _t.Method_Options,
    "PATCH": _t.Method_Patch,
}


class HttpError(Exception):
    """A request that got no HTTP response: denied by the agent's allow-list,
    refused, timed out, a bad URL or header. `code` is the wasi:http error
    code (`"HTTP-request-denied"`, `"connection-refused"`, ...) or `None`."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class Response:
    """A response: `status` (int), `headers` (list of (name, value) pairs,
    names lowercase), `body` (bytes)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self):
        return 200 <= self.status < 300

    def header(self, name):
        """The first value of header `name` (any case), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return _json.loads(self.body)

    def raise_for_status(self):
        """The Alertmanager rule for this status: nothing for 2xx, else raises
        the failure to return from the call: retryable for 429 and 5xx,
        permanent for anything else, with the start of the body (services
        say there why they refuse)."""
        if self.ok:
            return
        body = self.text().strip()[:200]
        message = "HTTP %d%s" % (self.status, ": " + body if body else "")
        if self.status == 429 or 500 <= self.status <= 599:
            raise _Err(_types.Failure_Retryable(message))
        raise _Err(_types.Failure_Permanent(message))

    def __repr__(self):
        return "Response(status=%d, %d bytes)" % (self.status, len(self.body))


def get(url, headers=None, timeout=None):
    return request("GET", url, None, headers, timeout)


def post(url, body, headers=None, timeout=None):
    return request("POST", url, body, headers, timeout)


def post_json(url, obj, headers=None, timeout=None):
    """POSTs `obj` as JSON (Content-Type: application/json)."""
    merged = {"content-type": "application/json"}
    for k, v in (headers or {}).items():
        merged[k.lower()] = v
    return request("POST", url, _json.dumps(obj).encode("utf-8"), merged, timeout)


def request(method, url, body=None, headers=None, timeout=None):
    """Sends one request and reads the whole response.

    `body` is bytes or str (UTF-8) or None; `headers` a dict or a list of
    (name, value) pairs; `timeout` seconds for connecting and for the first
    response byte (none when None or 0). Raises `HttpError` when no response arrives; an HTTP
    error status is a `Response`, not an exception."""
    method = method.upper()
    scheme, authority, path = _split(url)
    where = "%s %s" % (method, url)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is not None and not isinstance(body, (bytes, bytearray)):
        raise TypeError("%s: body must be bytes, str or None, not %s" % (where, type(body).__name__))

    entries = []
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for name, value in items:
        if name.lower() == "content-length":
            continue  # set from the body below
        if isinstance(value, str):
            value = value.encode("utf-8")
        entries.append((name.lower(), bytes(value)))
    if body is not None:
        entries.append(("content-length", str(len(body)).encode()))
    try:
        fields = _t.Fields.from_list(entries)
    except _Err as e:
        raise HttpError("%s: a header was refused (%s): the host sets host, connection, "
                        "transfer-encoding and the like itself" % (where, _tag(e.value)),
                        "header-error") from None

    req = _t.OutgoingRequest(fields)
    m = _METHODS.get(method)
    req.set_method(m() if m is not None else _t.Method_Other(method))
    req.set_scheme(_t.Scheme_Https() if scheme == "https" else _t.Scheme_Http())
    req.set_authority(authority)
    req.set_path_with_query(path)
    outgoing = req.body()

    options = None
    if timeout:
        options = _t.RequestOptions()
        nanos = int(timeout * 1e9)
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)

    future = _handler.handle(req, options)
    write_error = None
    try:
        with outgoing.write() as stream:
            if body:
                view = memoryview(bytes(body))
                for i in range(0, len(view), 4096):
                    stream.blocking_write_and_flush(bytes(view[i:i + 4096]))
        _t.OutgoingBody.finish(outgoing, None)
    except _Err as e:
        # The host may have failed the request already (denied, refused):
        # the response future says why, better than the stream does.
        write_error = e

    with future:
        while True:
            got = future.get()
            if got is not None:
                break
            with future.subscribe() as ready:
                ready.block()
    if isinstance(got, _Err) or isinstance(got.value, _Err):
        code = got.value.value if not isinstance(got, _Err) else None
        raise HttpError("%s: %s" % (where, _describe(code, authority)), _tag(code)) from None
    if write_error is not None:
        raise HttpError("%s: sending the body failed (%s)" % (where, _tag(write_error.value))) from None

    with got.value.value as response:
        status = response.status()
        with response.headers() as fields:
            pairs = [(k.lower(), v.decode("latin-1")) for k, v in fields.entries()]
        incoming = response.consume()
        chunks = []
        size = 0
        with incoming.stream() as stream:
            while True:
                try:
                    chunk = stream.blocking_read(65536)
                except _Err as e:
                    if isinstance(e.value, _streams.StreamError_Closed):
                        break
                    raise HttpError("%s: reading the response failed (%s)" % (where, _tag(e.value))) from None
                size += len(chunk)
                if size > MAX_BODY:
                    raise HttpError("%s: response body over %d bytes" % (where, MAX_BODY))
                chunks.append(chunk)
        _t.IncomingBody.finish(incoming)
    return Response(status, pairs, b"".join(chunks))


def _split(url):
    if not isinstance(url, str):
        raise TypeError("url must be a str, not %s" % type(url).__name__)
    parts = _urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HttpError("%s: only http:// and https:// URLs are supported" % url, "HTTP-request-URI-invalid")
    if not parts.netloc or "@" in parts.netloc:
        raise HttpError("%s: the URL needs a host (and no user:password@; send credentials in a header)" % url,
                        "HTTP-request-URI-invalid")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.netloc, path


def _tag(value):
    """The WIT case name of a binding value: `ErrorCode_HttpRequestDenied` ->
    `HTTP-request-denied` is not recoverable from the class name, so the
    table below keeps the ones worth naming."""
    if value is None:
        return None
    name = type(value).__name__
    return _CODES.get(name, name.split("_", 1)[-1])


_CODES = {
    "ErrorCode_HttpRequestDenied": "HTTP-request-denied",
    "ErrorCode_ConnectionRefused": "connection-refused",
    "ErrorCode_ConnectionTimeout": "connection-timeout",
    "ErrorCode_ConnectionTerminated": "connection-terminated",
    "ErrorCode_DnsError": "DNS-error",
    "ErrorCode_DnsTimeout": "DNS-timeout",
    "ErrorCode_DestinationNotFound": "destination-not-found",
    "ErrorCode_DestinationUnavailable": "destination-unavailable",
    "ErrorCode_TlsCertificateError": "TLS-certificate-error",
    "ErrorCode_TlsProtocolError": "TLS-protocol-error",
    "ErrorCode_HttpResponseTimeout": "HTTP-response-timeout",
    "ErrorCode_HttpRequestUriInvalid": "HTTP-request-URI-invalid",
    "ErrorCode_HttpProtocolError": "HTTP-protocol-error",
    "ErrorCode_InternalError": "internal-error",
    "HeaderError_Forbidden": "forbidden",
    "HeaderError_InvalidSyntax": "invalid-syntax",
    "StreamError_Closed": "closed",
    "StreamError_LastOperationFailed": "last-operation-failed",
}


def _describe(code, authority):
    tag = _tag(code)
    if tag == "HTTP-request-denied":
        return "HTTP-request-denied: %s is not in this plugin instance's allow_hosts" % authority
    if code is not None and getattr(code, "value", None) is not None:
        return "%s (%s)" % (tag, code.value)
    return tag or "the request failed"

//! Who may call the API and the UI: HTTP basic auth against bcrypt hashes
//! (Prometheus' web config `basic_auth_users`) and bearer tokens. With none
//! configured everything is open, as before; with any, every path except the
//! health and readiness probes needs credentials, and a request without them
//! gets 401 with `WWW-Authenticate` (so a browser prompts for the UI).
//!
//! The settings are read from the running config on every request, so a
//! reload adds or removes users without a restart.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::Lifecycle;
use crate::config::WebConfig;

/// Paths that stay open: orchestrators probe them without credentials.
const OPEN_PATHS: [&str; 2] = ["/-/healthy", "/-/ready"];

/// Successful bcrypt checks are remembered (by a digest of user, password and
/// hash) because bcrypt costs ~50-100 ms per check by design and the UI makes
/// several calls per page. Bounded; cleared when full.
const VERIFIED_CACHE: usize = 1024;

pub struct AuthState {
    lifecycle: Arc<dyn Lifecycle>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// The middleware's state: `from_fn_with_state(auth::state(lifecycle), auth::check)`.
pub fn state(lifecycle: Arc<dyn Lifecycle>) -> Arc<AuthState> {
    Arc::new(AuthState {
        lifecycle,
        verified: Mutex::new(HashSet::new()),
    })
}

fn enabled(web: &WebConfig) -> bool {
    !web.basic_auth_users.is_empty()
        || !web.bearer_tokens.is_empty()
        || web.bearer_token_file.is_some()
}

pub async fn check(State(st): State<Arc<AuthState>>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let config = st.lifecycle.config();
    let web = &config.web;
    if !enabled(web) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ok = match given.as_deref().and_then(|h| h.split_once(' ')) {
        Some((scheme, creds)) if scheme.eq_ignore_ascii_case("basic") => {
            basic_ok(&st, web, creds.trim()).await
        }
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            bearer_ok(&config, token.trim())
        }
        _ => false,
    };
    if ok {
        return next.run(req).await;
    }
    tracing::debug!(path = %req.uri().path(), with_credentials = given.is_some(), "API request refused: unauthorized");
    unauthorized(web)
}

fn unauthorized(web: &WebConfig) -> Response {
    let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    let h = resp.headers_mut();
    if !web.basic_auth_users.is_empty() {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"wasmon\", charset=\"UTF-8\""),
        );
    }
    if !web.bearer_tokens.is_empty() || web.bearer_token_file.is_some() {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wasmon\""),
        );
    }
    resp
}

async fn basic_ok(st: &AuthState, web: &WebConfig, creds: &str) -> bool {
    use base64::Engine as _;
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(creds) else {
        return false;
    };
    let Ok(raw) = String::from_utf8(raw) else {
        return false;
    };
    let Some((user, password)) = raw.split_once(':') else {
        return false;
    };
    let Some(hash) = web.basic_auth_users.get(user) else {
        return false;
    };
    let key: [u8; 32] = Sha256::new()
        .chain_update(user)
        .chain_update([0])
        .chain_update(password)
        .chain_update([0])
        .chain_update(hash.expose())
        .finalize()
        .into();
    if st.verified.lock().contains(&key) {
        return true;
    }
    let (password, hash) = (password.to_string(), hash.expose().to_string());
    // bcrypt is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    if ok {
        let mut v = st.verified.lock();
        if v.len() >= VERIFIED_CACHE {
            v.clear();
        }
        v.insert(key);
    }
    ok
}

fn bearer_ok(config: &crate::config::Config, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    // Compare digests, not the tokens, so the comparison time says nothing
    // about how much of a token matched.
    let digest = |s: &str| -> [u8; 32] { Sha256::digest(s.as_bytes()).into() };
    let want = digest(token);
    if config
        .web
        .bearer_tokens
        .iter()
        .any(|t| digest(t.expose()) == want)
    {
        return true;
    }
    let Some(file) = &config.web.bearer_token_file else {
        return false;
    };
    match std::fs::read_to_string(config.resolve(file)) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .any(|l| !l.is_empty() && digest(l) == want),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "reading web.bearer_token_file");
            false
        }
    }
}

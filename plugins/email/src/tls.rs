//! TLS for SMTP (STARTTLS and implicit TLS on 465) with rustls' no-std
//! "unbuffered" API and the pure-Rust RustCrypto provider: a
//! `wasm32-unknown-unknown` guest has no `std::time` or OS randomness, so
//! the time comes from the host's clock import and the randomness from
//! `wasi:random`.
//!
//! Certificates are verified against the Mozilla roots (webpki-roots) or,
//! when the config gives `tls_config.ca`, against those PEM certificates
//! only, for the name in `tls_config.server_name` or the smarthost's host.

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::{ClientConfig, RootCertStore};
use wasmon_sdk::receiver::Failure;

/// OS randomness for the RustCrypto primitives (getrandom's custom hook).
fn wasi_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    let bytes = wasi::random::random::get_random_bytes(buf.len() as u64);
    buf.copy_from_slice(&bytes[..buf.len()]);
    Ok(())
}

getrandom::register_custom_getrandom!(wasi_random);

/// The host's clock, for certificate validity.
#[derive(Debug)]
struct HostClock;

impl rustls::time_provider::TimeProvider for HostClock {
    fn current_time(&self) -> Option<UnixTime> {
        let ms = u64::try_from(wasmon_sdk::now_ms()).ok()?;
        Some(UnixTime::since_unix_epoch(
            std::time::Duration::from_millis(ms),
        ))
    }
}

/// The client config: RustCrypto provider, TLS 1.2 and 1.3, `ca` (PEM) as
/// the only roots when given, else the Mozilla roots.
pub fn config(ca: Option<&str>) -> Result<Arc<ClientConfig>, Failure> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| {
                    Failure::permanent(format!("email: tls_config.ca: bad PEM: {e:?}"))
                })?;
                roots.add(cert).map_err(|e| {
                    Failure::permanent(format!("email: tls_config.ca: bad certificate: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(Failure::permanent(
                    "email: tls_config.ca holds no PEM certificate",
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_details(
        Arc::new(rustls_rustcrypto::provider()),
        Arc::new(HostClock),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| Failure::permanent(format!("email: TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The byte transport under TLS (the TCP streams).
pub trait Io {
    /// Reads at least one byte; an error when the peer closed.
    fn read_some(&mut self) -> Result<Vec<u8>, Failure>;
    /// Writes and flushes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure>;
}

/// A TLS session over an [`Io`].
pub struct Session {
    conn: UnbufferedClientConnection,
    incoming: Vec<u8>,
    used: usize,
    outgoing: Vec<u8>,
    /// Decrypted bytes not yet handed out.
    plaintext: Vec<u8>,
    server: String,
}

/// What the caller wants from a [`Session::drive`] round.
#[derive(PartialEq)]
enum Goal<'a> {
    Handshake,
    Read,
    Write(&'a [u8]),
}

impl Session {
    /// Starts a session for `name` and runs the handshake.
    pub fn connect(
        config: Arc<ClientConfig>,
        name: &str,
        server: &str,
        io: &mut dyn Io,
    ) -> Result<Session, Failure> {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_string()).map_err(|e| {
            Failure::permanent(format!("smtp {server}: bad TLS server name {name:?}: {e}"))
        })?;
        let conn = UnbufferedClientConnection::new(config, server_name)
            .map_err(|e| Failure::permanent(format!("smtp {server}: TLS: {e}")))?;
        let mut session = Session {
            conn,
            incoming: vec![0; 16 * 1024 + 512],
            used: 0,
            outgoing: vec![0; 16 * 1024 + 512],
            plaintext: Vec::new(),
            server: server.to_string(),
        };
        session.drive(io, Goal::Handshake)?;
        Ok(session)
    }

    /// Reads decrypted bytes (at least one).
    pub fn read(&mut self, io: &mut dyn Io) -> Result<Vec<u8>, Failure> {
        if self.plaintext.is_empty() {
            self.drive(io, Goal::Read)?;
        }
        Ok(std::mem::take(&mut self.plaintext))
    }

    /// Encrypts and sends `bytes`.
    pub fn write(&mut self, io: &mut dyn Io, bytes: &[u8]) -> Result<(), Failure> {
        for chunk in bytes.chunks(8192) {
            self.drive(io, Goal::Write(chunk))?;
        }
        Ok(())
    }

    /// Runs the state machine until `goal` is reached. TLS errors
    /// (certificates, protocol) are permanent: retrying will not fix them.
    fn drive(&mut self, io: &mut dyn Io, goal: Goal) -> Result<(), Failure> {
        loop {
            let mut need_input = false;
            let mut done = false;
            let status = self
                .conn
                .process_tls_records(&mut self.incoming[..self.used]);
            let discard = status.discard;
            let state = status
                .state
                .map_err(|e| Failure::permanent(format!("smtp {}: TLS: {e}", self.server)))?;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(|e| {
                            Failure::permanent(format!("smtp {}: TLS: {e}", self.server))
                        })?;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    done = goal == Goal::Read;
                }
                ConnectionState::EncodeTlsData(mut encode) => loop {
                    match encode.encode(&mut self.outgoing) {
                        Ok(n) => {
                            io.write_all(&self.outgoing[..n])?;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => self.outgoing.resize(required_size, 0),
                        Err(e) => {
                            return Err(Failure::permanent(format!(
                                "smtp {}: TLS: {e}",
                                self.server
                            )))
                        }
                    }
                },
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::BlockedHandshake => need_input = true,
                ConnectionState::WriteTraffic(mut traffic) => match goal {
                    Goal::Handshake => done = true,
                    Goal::Read => need_input = true,
                    Goal::Write(bytes) => loop {
                        match traffic.encrypt(bytes, &mut self.outgoing) {
                            Ok(n) => {
                                io.write_all(&self.outgoing[..n])?;
                                done = true;
                                break;
                            }
                            Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) => self.outgoing.resize(required_size, 0),
                            Err(e) => {
                                return Err(Failure::permanent(format!(
                                    "smtp {}: TLS: {e}",
                                    self.server
                                )))
                            }
                        }
                    },
                },
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(Failure::retryable(format!(
                        "smtp {}: TLS connection closed by the server",
                        self.server
                    )))
                }
                _ => {
                    return Err(Failure::permanent(format!(
                        "smtp {}: TLS: unexpected state",
                        self.server
                    )))
                }
            }
            if discard > 0 {
                self.incoming.copy_within(discard..self.used, 0);
                self.used -= discard;
            }
            if done {
                return Ok(());
            }
            if need_input {
                let bytes = io.read_some()?;
                if self.used + bytes.len() > self.incoming.len() {
                    self.incoming.resize(self.used + bytes.len(), 0);
                }
                self.incoming[self.used..self.used + bytes.len()].copy_from_slice(&bytes);
                self.used += bytes.len();
            }
        }
    }
}

//! A small SMTP client (RFC 5321) over `wasi:sockets` TCP: EHLO (HELO
//! fallback), AUTH PLAIN / LOGIN (RFC 4954), MAIL, RCPT, DATA with
//! dot-stuffing, QUIT. Replies may span several lines (`250-...`).
//!
//! Failures follow the reply codes: 4xx (and I/O errors, and the connection
//! dropping) are retryable, 5xx and protocol surprises are permanent, and
//! both quote the server's text.

use wasi::io::streams::{InputStream, OutputStream, StreamError};
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::ip_name_lookup::resolve_addresses;
use wasi::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasi::sockets::tcp::TcpSocket;
use wasi::sockets::tcp_create_socket::create_tcp_socket;
use wasmon_sdk::mail::base64;

use crate::tls::{self, Io};
use wasmon_sdk::receiver::Failure;

/// The largest write `blocking-write-and-flush` accepts at once.
const WRITE_CHUNK: usize = 4096;

/// One SMTP reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

/// A connected TCP socket's streams.
pub struct Tcp {
    // Dropped in field order: the streams before their socket.
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
    server: String,
}

impl tls::Io for Tcp {
    fn read_some(&mut self) -> Result<Vec<u8>, Failure> {
        match self.input.blocking_read(16 * 1024) {
            Ok(bytes) => Ok(bytes),
            Err(StreamError::Closed) => Err(Failure::retryable(format!(
                "smtp {}: connection closed by the server",
                self.server
            ))),
            Err(e) => Err(io_failure(&self.server, "read", e)),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        for chunk in bytes.chunks(WRITE_CHUNK) {
            self.output
                .blocking_write_and_flush(chunk)
                .map_err(|e| io_failure(&self.server, "write", e))?;
        }
        Ok(())
    }
}

/// An open SMTP connection, maybe under TLS.
pub struct Client {
    // The TLS session before the socket it runs on.
    tls: Option<tls::Session>,
    tcp: Tcp,
    buffer: Vec<u8>,
    server: String,
    /// The EHLO keywords (upper case) with their parameters.
    pub extensions: Vec<(String, String)>,
}

fn io_failure(server: &str, what: &str, e: impl std::fmt::Debug) -> Failure {
    Failure::retryable(format!("smtp {server}: {what}: {e:?}"))
}

fn socket_error(code: ErrorCode) -> String {
    match code {
        ErrorCode::AccessDenied => {
            "access denied (the address is not in the instance's allow_hosts)".to_string()
        }
        ErrorCode::ConnectionRefused => "connection refused".to_string(),
        ErrorCode::Timeout => "timed out".to_string(),
        ErrorCode::NameUnresolvable => "name does not resolve".to_string(),
        other => format!("{other:?}"),
    }
}

/// The addresses `host` stands for: itself if it is an IP literal, else
/// what the host's resolver says.
fn resolve(host: &str, server: &str) -> Result<Vec<IpAddress>, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(vec![match ip {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                IpAddress::Ipv4((o[0], o[1], o[2], o[3]))
            }
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddress::Ipv6((s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]))
            }
        }]);
    }
    let network = instance_network();
    let denied = |code: ErrorCode| {
        let message = format!("smtp {server}: resolving {host:?}: {}", socket_error(code));
        match code {
            ErrorCode::AccessDenied | ErrorCode::NameUnresolvable => Failure::permanent(message),
            _ => Failure::retryable(message),
        }
    };
    let stream = resolve_addresses(&network, bare).map_err(denied)?;
    let mut out = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(ip)) => out.push(ip),
            Ok(None) => break,
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(code) => return Err(denied(code)),
        }
    }
    if out.is_empty() {
        return Err(denied(ErrorCode::NameUnresolvable));
    }
    Ok(out)
}

impl Client {
    /// Connects to `host:port` (trying each address the name resolves to),
    /// starts TLS at once when `implicit_tls` is given (SMTPS, port 465)
    /// and reads the greeting.
    pub fn connect(
        host: &str,
        port: u16,
        implicit_tls: Option<(std::sync::Arc<rustls::ClientConfig>, &str)>,
    ) -> Result<Client, Failure> {
        let server = format!("{host}:{port}");
        let network = instance_network();
        let mut last = None;
        for ip in resolve(host, &server)? {
            let (family, address) = match ip {
                IpAddress::Ipv4(address) => (
                    IpAddressFamily::Ipv4,
                    IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
                ),
                IpAddress::Ipv6(address) => (
                    IpAddressFamily::Ipv6,
                    IpSocketAddress::Ipv6(Ipv6SocketAddress {
                        port,
                        address,
                        flow_info: 0,
                        scope_id: 0,
                    }),
                ),
            };
            let socket = create_tcp_socket(family)
                .map_err(|c| io_failure(&server, "creating a socket", c))?;
            if let Err(code) = socket.start_connect(&network, address) {
                last = Some(code);
                continue;
            }
            let streams = loop {
                match socket.finish_connect() {
                    Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
                    other => break other,
                }
            };
            match streams {
                Ok((input, output)) => {
                    let mut tcp = Tcp {
                        input,
                        output,
                        _socket: socket,
                        server: server.clone(),
                    };
                    let tls = match implicit_tls {
                        Some((config, name)) => {
                            Some(tls::Session::connect(config, name, &server, &mut tcp)?)
                        }
                        None => None,
                    };
                    let mut client = Client {
                        tls,
                        tcp,
                        buffer: Vec::new(),
                        server,
                        extensions: Vec::new(),
                    };
                    client.expect("greeting", &[220])?;
                    return Ok(client);
                }
                Err(code) => last = Some(code),
            }
        }
        let code = last.unwrap_or(ErrorCode::Unknown);
        let message = format!("smtp {server}: connect: {}", socket_error(code));
        Err(if code == ErrorCode::AccessDenied {
            Failure::permanent(message)
        } else {
            Failure::retryable(message)
        })
    }

    fn read_line(&mut self) -> Result<String, Failure> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.buffer.len() > 64 * 1024 {
                return Err(Failure::permanent(format!(
                    "smtp {}: reply line too long",
                    self.server
                )));
            }
            let bytes = match &mut self.tls {
                Some(session) => session.read(&mut self.tcp)?,
                None => self.tcp.read_some()?,
            };
            self.buffer.extend_from_slice(&bytes);
        }
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> Result<Reply, Failure> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(Failure::permanent(format!(
                    "smtp {}: malformed reply {line:?}",
                    self.server
                )));
            };
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Reads a reply and turns any code not in `ok` into a failure naming
    /// `what`.
    pub fn expect(&mut self, what: &str, ok: &[u16]) -> Result<Reply, Failure> {
        let reply = self.reply()?;
        if ok.contains(&reply.code) {
            return Ok(reply);
        }
        let message = format!(
            "smtp {}: {what}: {} {}",
            self.server,
            reply.code,
            reply.text()
        );
        Err(if (400..500).contains(&reply.code) {
            Failure::retryable(message)
        } else {
            Failure::permanent(message)
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match &mut self.tls {
            Some(session) => session.write(&mut self.tcp, bytes),
            None => self.tcp.write_all(bytes),
        }
    }

    /// Whether the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// STARTTLS (RFC 3207): the command, the handshake for `name`, and a
    /// fresh EHLO as `hello` (the extensions before TLS are forgotten).
    pub fn starttls(
        &mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: &str,
        hello: &str,
    ) -> Result<(), Failure> {
        self.command("STARTTLS", "STARTTLS", &[220])?;
        if !self.buffer.is_empty() {
            // Bytes after the 220 were sent before TLS: an injection attempt.
            return Err(Failure::permanent(format!(
                "smtp {}: data after the STARTTLS reply",
                self.server
            )));
        }
        self.tls = Some(tls::Session::connect(
            config,
            name,
            &self.server,
            &mut self.tcp,
        )?);
        self.extensions.clear();
        self.hello(hello)
    }

    /// Sends `line` + CRLF and expects a code in `ok`. `what` names the
    /// command in failures (the line itself may hold credentials).
    pub fn command(&mut self, line: &str, what: &str, ok: &[u16]) -> Result<Reply, Failure> {
        self.write(format!("{line}\r\n").as_bytes())?;
        self.expect(what, ok)
    }

    /// EHLO, falling back to HELO when the server refuses EHLO; records
    /// the extensions.
    pub fn hello(&mut self, name: &str) -> Result<(), Failure> {
        let reply = match self.command(&format!("EHLO {name}"), "EHLO", &[250]) {
            Ok(reply) => reply,
            Err(Failure::Permanent(_)) => {
                self.command(&format!("HELO {name}"), "HELO", &[250])?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.extensions = reply
            .lines
            .iter()
            .skip(1)
            .map(|l| match l.split_once(' ') {
                Some((k, v)) => (k.to_ascii_uppercase(), v.to_string()),
                None => (l.to_ascii_uppercase(), String::new()),
            })
            .collect();
        Ok(())
    }

    /// The parameters of extension `name`, if the server offers it.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// AUTH with the first mechanism of PLAIN, LOGIN that the server offers.
    pub fn auth(&mut self, identity: &str, username: &str, password: &str) -> Result<(), Failure> {
        let offered: Vec<String> = self
            .extension("AUTH")
            .unwrap_or("")
            .split_whitespace()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        if offered.iter().any(|m| m == "PLAIN") {
            let token = base64(format!("{identity}\0{username}\0{password}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", &[235])?;
            return Ok(());
        }
        if offered.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN", "AUTH LOGIN", &[334])?;
            self.command(&base64(username.as_bytes()), "AUTH LOGIN username", &[334])?;
            self.command(&base64(password.as_bytes()), "AUTH LOGIN password", &[235])?;
            return Ok(());
        }
        Err(Failure::permanent(format!(
            "smtp {}: auth_username is set but the server offers no supported AUTH mechanism (PLAIN, LOGIN){}",
            self.server,
            if offered.is_empty() {
                String::new()
            } else {
                format!("; it offers {}", offered.join(" "))
            }
        )))
    }

    /// MAIL FROM, RCPT TO each of `to`, DATA with `message` (CRLF lines).
    pub fn send(&mut self, from: &str, to: &[String], message: &str) -> Result<(), Failure> {
        self.command(&format!("MAIL FROM:<{from}>"), "MAIL FROM", &[250])?;
        for rcpt in to {
            self.command(
                &format!("RCPT TO:<{rcpt}>"),
                &format!("RCPT TO <{rcpt}>"),
                &[250, 251],
            )?;
        }
        self.command("DATA", "DATA", &[354])?;
        self.write(dot_stuff(message).as_bytes())?;
        self.command(".", "end of DATA", &[250])?;
        Ok(())
    }

    /// QUIT; the mail is already accepted, so errors are ignored.
    pub fn quit(mut self) {
        let _ = self.command("QUIT", "QUIT", &[221]);
    }
}

/// The DATA payload: CRLF line endings, lines starting with "." doubled
/// (RFC 5321 4.5.2), ending with CRLF.
pub fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    for line in message.replace("\r\n", "\n").split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // split leaves an empty last piece after a final newline.
    if message.ends_with('\n') {
        out.truncate(out.len() - 2);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_stuffing() {
        assert_eq!(super::dot_stuff("a\r\n.b\r\n..\r\n"), "a\r\n..b\r\n...\r\n");
        assert_eq!(super::dot_stuff("a\nb"), "a\r\nb\r\n");
    }
}

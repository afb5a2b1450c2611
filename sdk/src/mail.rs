//! RFC 5322 messages with a MIME text/plain body, or a
//! multipart/alternative one with an HTML part (as Alertmanager sends
//! its email), for receivers that send email (through SMTP over
//! `wasi:sockets`).
//!
//! ```ignore
//! let text = mail::Message::new()
//!     .header("From", "wasmon <wasmon@example.com>")
//!     .header("To", "ops@example.com")
//!     .header("Subject", "[FIRING:1] Disk full")
//!     .header("Date", &mail::date(wasmon_sdk::now_ms()))
//!     .text_body("...")
//!     .to_string();
//! ```
//!
//! Header values that are not ASCII are written as RFC 2047 encoded words;
//! the body is 7bit when it is ASCII with short lines, quoted-printable
//! otherwise; every line ends with CRLF. SMTP dot-stuffing is the SMTP
//! client's job, not this module's.

use std::fmt;

/// A message being built: headers in order, then a text body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    headers: Vec<(String, String)>,
    body: String,
    html: Option<String>,
}

impl Message {
    /// An empty message.
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds a header (kept in the order added). Line breaks in `value` are
    /// replaced by spaces: a header cannot inject another one.
    pub fn header(mut self, name: &str, value: &str) -> Message {
        let value = value.replace(['\r', '\n'], " ");
        self.headers.push((name.to_string(), value));
        self
    }

    /// Sets the plain-text body (UTF-8).
    pub fn text_body(mut self, body: &str) -> Message {
        self.body = body.to_string();
        self
    }

    /// Adds an HTML body: the message becomes multipart/alternative, with
    /// the text part first when the text body is not empty, then the HTML
    /// one, both quoted-printable (Alertmanager's layout).
    pub fn html_body(mut self, html: &str) -> Message {
        self.html = Some(html.to_string());
        self
    }

    /// The value of the first header `name` (case-insensitive), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Message {
    /// The message as sent: headers (with MIME-Version, Content-Type and
    /// Content-Transfer-Encoding added), a blank line, the body; CRLF
    /// line endings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.headers {
            write!(f, "{name}: {}\r\n", encode_header_value(value))?;
        }
        let body = self.body.replace("\r\n", "\n");
        if let Some(html) = &self.html {
            let html = html.replace("\r\n", "\n");
            // A boundary that no line of either part can contain: it is
            // made of the parts' hash, and a part's quoted-printable lines
            // could only contain it by containing the hash of themselves.
            let digest = crate::sha256::hex(format!("{body}\0{html}").as_bytes());
            let boundary = format!("wasmon-{}", &digest[..32]);
            f.write_str("MIME-Version: 1.0\r\n")?;
            write!(
                f,
                "Content-Type: multipart/alternative; boundary={boundary}\r\n\r\n"
            )?;
            let parts = [("text/plain", &body), ("text/html", &html)];
            for (kind, text) in parts.into_iter().filter(|(_, t)| !t.is_empty()) {
                write!(f, "--{boundary}\r\n")?;
                write!(f, "Content-Type: {kind}; charset=UTF-8\r\n")?;
                f.write_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n")?;
                for line in text.split('\n') {
                    f.write_str(&quoted_printable(line))?;
                    f.write_str("\r\n")?;
                }
            }
            return write!(f, "--{boundary}--\r\n");
        }
        let plain = body.is_ascii() && body.lines().all(|l| l.len() <= 998);
        f.write_str("MIME-Version: 1.0\r\n")?;
        f.write_str("Content-Type: text/plain; charset=UTF-8\r\n")?;
        if plain {
            f.write_str("Content-Transfer-Encoding: 7bit\r\n\r\n")?;
            for line in body.lines() {
                write!(f, "{line}\r\n")?;
            }
        } else {
            f.write_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n")?;
            for line in body.lines() {
                f.write_str(&quoted_printable(line))?;
                f.write_str("\r\n")?;
            }
        }
        Ok(())
    }
}

/// A header value as written: as is when ASCII, else RFC 2047 `B` encoded
/// words (UTF-8) of at most 45 bytes each, folded onto continuation lines.
pub fn encode_header_value(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// One line encoded as quoted-printable (RFC 2045), soft-broken at 76.
pub fn quoted_printable(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut width = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let last = i + 1 == bytes.len();
        let literal = (b == b' ' || b == b'\t') && !last || (b.is_ascii_graphic() && b != b'=');
        let piece = if literal {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if width + piece.len() > 75 {
            out.push_str("=\r\n");
            width = 0;
        }
        width += piece.len();
        out.push_str(&piece);
    }
    out
}

/// Standard base64 with padding (RFC 4648), as SMTP AUTH and encoded words
/// use it.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, white space ignored).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\r' | b'\n' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// An RFC 5322 date for `ms` milliseconds since the epoch, in UTC:
/// `Wed, 25 Nov 2026 08:00:00 +0000`.
pub fn date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The address part of a mailbox: `a@b` from `Name <a@b>` or `a@b`.
pub fn address(mailbox: &str) -> &str {
    let m = mailbox.trim();
    match (m.rfind('<'), m.rfind('>')) {
        (Some(start), Some(end)) if start < end => m[start + 1..end].trim(),
        _ => m,
    }
}

/// A `Message-ID` value: `<id@domain>` with the domain of `from`'s
/// address (or `wasmon` when it has none) and `id` from `ms` and `seed`
/// (e.g. the group key): unique per notification and time.
pub fn message_id(ms: i64, seed: &str, from: &str) -> String {
    let domain = address(from)
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or("wasmon");
    let hash = crate::sha256::hex(format!("{ms}\n{seed}").as_bytes());
    format!("<{ms}.{}@{domain}>", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2026-11-25T08:00:00Z
        assert_eq!(date(1_795_593_600_000), "Wed, 25 Nov 2026 08:00:00 +0000");
        assert_eq!(
            date(951_782_400_000 + 3_723_000),
            "Tue, 29 Feb 2000 01:02:03 +0000"
        );
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"\0user\0pass"), "AHVzZXIAcGFzcw==");
        assert_eq!(base64_decode("AHVzZXIAcGFzcw==").unwrap(), b"\0user\0pass");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
    }

    #[test]
    fn message_text() {
        let m = Message::new()
            .header("From", "a@b.c")
            .header("Subject", "x\r\nBcc: evil@x")
            .text_body("line 1\nline 2\n");
        assert_eq!(m.get("subject"), Some("x  Bcc: evil@x"));
        assert_eq!(
            m.to_string(),
            "From: a@b.c\r\nSubject: x  Bcc: evil@x\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
             line 1\r\nline 2\r\n"
        );
        let m = Message::new()
            .header("Subject", "Über")
            .text_body("grün = ok ");
        let s = m.to_string();
        assert!(s.starts_with("Subject: =?UTF-8?B?w5xiZXI=?=\r\n"), "{s}");
        assert!(
            s.ends_with("quoted-printable\r\n\r\ngr=C3=BCn =3D ok=20\r\n"),
            "{s}"
        );
    }

    #[test]
    fn addresses_and_ids() {
        assert_eq!(address("Ops <ops@example.com>"), "ops@example.com");
        assert_eq!(address(" ops@example.com "), "ops@example.com");
        let id = message_id(5, "k", "W <w@example.org>");
        assert!(
            id.starts_with("<5.") && id.ends_with("@example.org>"),
            "{id}"
        );
        assert_ne!(id, message_id(6, "k", "w@example.org"));
    }

    #[test]
    fn html_is_multipart_alternative() {
        let m = Message::new()
            .header("Subject", "s")
            .text_body("plain")
            .html_body("<p>a=b</p>\n<b>x</b>")
            .to_string();
        let boundary = m
            .split("boundary=")
            .nth(1)
            .and_then(|r| r.split("\r\n").next())
            .unwrap()
            .to_string();
        assert!(boundary.starts_with("wasmon-"), "{m}");
        let want = format!(
            "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary={boundary}\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nplain\r\n\
             --{boundary}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>a=3Db</p>\r\n<b>x</b>\r\n\
             --{boundary}--\r\n"
        );
        assert_eq!(m, want);
        let only_html = Message::new().html_body("<p/>").to_string();
        assert!(!only_html.contains("text/plain"), "{only_html}");
    }
}

//! The log writer: every line passes [`syncoord_wire::redact`] on its way
//! out, and the HTTP client's raw byte dumps are never written at all.
//!
//! Why: at `trace`, ureq's protocol crate hex-dumps every request and
//! answer it sends and reads, 16 bytes a line (target `ureq_proto::util`),
//! so a signed call's JWT or Exchange passphrase is spread over lines no
//! text rule can recognise; and `debug` prints a request's headers. The
//! dumps are dropped whatever the filter says; every other line, at
//! every level, has its secrets replaced.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Log targets whose events are raw wire bytes: dropped.
const RAW_DUMP_TARGETS: &[&str] = &["ureq_proto::util"];

/// Wraps a [`MakeWriter`] (stderr) so that no secret reaches it.
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = Line<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            out: Some(self.0.make_writer()),
            bridged: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let raw = RAW_DUMP_TARGETS.iter().any(|t| is_within(meta.target(), t));
        Line {
            out: (!raw).then(|| self.0.make_writer_for(meta)),
            // A `log` record (ureq's are) comes with the bridge's own
            // metadata, target `log`: its real target is known only from
            // the formatted line.
            bridged: meta.target() == "log",
        }
    }
}

/// Whether `target` is `module` or inside it.
fn is_within(target: &str, module: &str) -> bool {
    target
        .strip_prefix(module)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// One event's writer: its text redacted (the formatter hands over a
/// whole line per write), or nothing at all for a raw dump.
pub struct Line<W> {
    out: Option<W>,
    /// From the `log` bridge: a raw dump is recognised by the target the
    /// formatter wrote (`ureq_proto::util: ` or `"target":"ureq_proto::util"`).
    bridged: bool,
}

impl<W: Write> Write for Line<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(out) = &mut self.out else {
            return Ok(buf.len());
        };
        let text = String::from_utf8_lossy(buf);
        if self.bridged
            && RAW_DUMP_TARGETS.iter().any(|t| {
                text.contains(&format!(" {t}: ")) || text.contains(&format!("\"target\":\"{t}\""))
            })
        {
            return Ok(buf.len());
        }
        out.write_all(syncoord_wire::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What the subscriber `serve` uses writes at `trace`, JSON and text.
    #[test]
    fn no_secret_reaches_the_log_at_any_level_and_raw_dumps_are_dropped() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJvcmcva2V5In0.c2lnbmF0dXJlLWJ5dGVz";
        for json in [false, true] {
            let buffer = Buffer::default();
            let out = buffer.clone();
            let builder = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(Redacting(move || out.clone()));
            let emit = || {
                // What ureq-proto's dumps look like (hex, then the bytes).
                tracing::trace!(target: "ureq_proto::util", "4765 7420 2f61 7069 2f76 3320 4854 5450 Get /api/v3 HTTP");
                tracing::trace!(target: "ureq_proto::util", "6579 4a68 6247 6369 4f69 4a46 557a 4931 eyJhbGciOiJFUzI1");
                tracing::debug!(target: "ureq_proto::client", "Request {{ method: GET, headers: {{\"authorization\": \"Bearer {jwt}\", \"cb-access-passphrase\": \"open sesame\"}} }}");
                tracing::info!(headers = ?[("X-Syncoord-Token", "tok-abc")], "a header dump");
                tracing::warn!("kept: listening on 127.0.0.1:8787");
            };
            if json {
                tracing::subscriber::with_default(builder.json().finish(), emit);
            } else {
                tracing::subscriber::with_default(builder.finish(), emit);
            }
            let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            for secret in [
                "eyJhbGci",
                "c2lnbmF0dXJl",
                "open sesame",
                "tok-abc",
                "4765 7420",
            ] {
                assert!(
                    !logged.contains(secret),
                    "json={json}: `{secret}` in {logged}"
                );
            }
            assert!(logged.contains("kept: listening"), "{logged}");
            assert_eq!(logged.matches("[redacted]").count(), 3, "{logged}");
        }
    }
}

//! Prometheus metrics of a service: the text exposition format, and a tiny HTTP endpoint that serves it.
//!
//! The endpoint is a plain thread on a `std` listener, so a service needs no HTTP framework for one
//! route: `GET /metrics` answers the exposition that `render` builds at that moment (from the
//! service's own counters); any other path is a 404. It binds where it is told, loopback unless the
//! user asks otherwise.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Builds one exposition: families, each with its help, type and samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family; its samples follow with [`Exposition::sample`].
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    /// One sample; label values are escaped as the format requires.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.text, " {}", number(value));
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// Serves `GET /metrics` on `address` from a background thread; the address it bound (port 0 picks one).
pub fn serve(
    address: SocketAddr,
    render: impl Fn() -> String + Send + Sync + 'static,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    let render = Arc::new(render);
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // One scrape at a time is plenty; a slow client cannot hold the thread long.
                let _ = answer(stream, render.as_ref());
            }
        })?;
    Ok(bound)
}

fn answer(stream: TcpStream, render: &(impl Fn() -> String + ?Sized)) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers (bounded) so the client sees a clean response.
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = if request_line.starts_with("GET ")
        && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "only /metrics here\n".to_string(),
        )
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn exposition_has_help_type_and_escaped_labels() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "things")
            .sample("x_total", &[("code", "a\"b")], 3.0)
            .sample("x_total", &[], f64::NAN);
        e.single("y", Kind::Gauge, "one", 1.5);
        assert_eq!(
            e.finish(),
            "# HELP x_total things\n# TYPE x_total counter\nx_total{code=\"a\\\"b\"} 3\nx_total NaN\n\
             # HELP y one\n# TYPE y gauge\ny 1.5\n"
        );
    }

    #[test]
    fn the_endpoint_serves_the_current_exposition_and_nothing_else() {
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = count.clone();
        let address = serve("127.0.0.1:0".parse().unwrap(), move || {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("scrapes {n}\n")
        })
        .unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(address).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        assert!(get("/metrics").ends_with("scrapes 0\n"));
        assert!(get("/metrics").ends_with("scrapes 1\n"));
        assert!(get("/other").starts_with("HTTP/1.1 404"));
    }
}

//! The gateway client verbs (`ipmigw power|chassis|mc|sensors|sel|fru|raw
//! ... TARGET...`, `bmcs`, `whoami`): one mTLS connection (HTTP/2) to the
//! gateway, every target concurrently over it; output like ipmitool (each
//! line prefixed with the target when there are several), one JSON
//! document (`--json`) or JSON Lines (`--json-lines`).
//!
//! Settings: flags (after the verb, or before it: the older spelling),
//! else `IPMIGW_GATEWAY`/`IPMIGW_CERT`/`IPMIGW_KEY`/`IPMIGW_CA`, else
//! `~/.config/ipmigw/client.toml`. Never prints a key or a secret.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use super::out::outln;
use super::{CliError, EXIT_BMC, EXIT_CONNECTION, EXIT_DENIED};
use crate::ops::codec::OpVerb;
use crate::ops::error::{ApiError, ErrorKind};
use crate::ops::Op;
use crate::policy::glob::BmcPattern;

/// Where the gateway is and who we are: the options of every verb that
/// talks to the gateway (and of `bridge`), shown only there.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Gateway URL, e.g. https://gw.example:8443.
    #[arg(
        long,
        env = "IPMIGW_GATEWAY",
        help_heading = "Gateway",
        value_name = "URL"
    )]
    gateway: Option<String>,
    /// Client certificate (PEM).
    #[arg(
        long,
        env = "IPMIGW_CERT",
        help_heading = "Gateway",
        value_name = "FILE"
    )]
    cert: Option<PathBuf>,
    /// Client key (PEM; must not be readable by others).
    #[arg(
        long,
        env = "IPMIGW_KEY",
        help_heading = "Gateway",
        value_name = "FILE"
    )]
    key: Option<PathBuf>,
    /// CA that signed the gateway's certificate (PEM).
    #[arg(long, env = "IPMIGW_CA", help_heading = "Gateway", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Give up on the gateway after this many seconds (connect, TLS and
    /// each whole request).
    #[arg(long, env = "IPMIGW_TIMEOUT", default_value_t = 30, value_name = "SECONDS",
          help_heading = "Gateway",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
}

/// The client options given before the verb (`ipmigw --json power status
/// node01`, the older spelling): accepted, not shown; a verb's own options
/// are shown in its help.
#[derive(Debug, Clone, Default, Args)]
pub struct Before {
    #[arg(long = "gateway", hide = true)]
    gateway: Option<String>,
    #[arg(long = "cert", hide = true)]
    cert: Option<PathBuf>,
    #[arg(long = "key", hide = true)]
    key: Option<PathBuf>,
    #[arg(long = "ca", hide = true)]
    ca: Option<PathBuf>,
    #[arg(long = "timeout", hide = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: Option<u64>,
    #[arg(long = "json", hide = true)]
    pub(crate) json: bool,
}

impl Before {
    /// The gateway options given before the verb, by flag name.
    pub(crate) fn gateway_flags(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let given = [
            ("--gateway", self.gateway.is_some()),
            ("--cert", self.cert.is_some()),
            ("--key", self.key.is_some()),
            ("--ca", self.ca.is_some()),
            ("--timeout", self.timeout.is_some()),
        ];
        out.extend(given.iter().filter(|(_, g)| *g).map(|(f, _)| *f));
        out
    }

    /// `opts` with what was given before the verb: the command line wins
    /// over the environment, which only the verb's own options read.
    pub(crate) fn apply(&self, mut opts: ClientOpts) -> ClientOpts {
        opts.gateway = self.gateway.clone().or(opts.gateway);
        opts.cert = self.cert.clone().or(opts.cert);
        opts.key = self.key.clone().or(opts.key);
        opts.ca = self.ca.clone().or(opts.ca);
        opts.timeout = self.timeout.unwrap_or(opts.timeout);
        opts
    }
}

/// Client verbs: the operations (shared with `ipmigw bmc`, see
/// `ops::codec`) on named BMCs, and two about the caller.
#[derive(Debug, Subcommand)]
pub enum ClientVerb {
    #[command(flatten)]
    Op(OpVerb<Targets, Target>),
    /// The BMCs you may act on.
    Bmcs(Plain),
    /// Who the gateway thinks you are: user, roles, certificate, source.
    Whoami(Plain),
}

/// A verb about the caller: JSON or text, and the gateway options.
#[derive(Debug, Clone, Args)]
pub struct Plain {
    /// JSON output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gateway: ClientOpts,
}

/// Targets: names, globs (`node0*`), or `--all`.
#[derive(Debug, Clone, Args)]
pub struct Targets {
    /// BMC names or globs (quote globs: 'node0*').
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// Every BMC you may act on.
    #[arg(long)]
    all: bool,
    /// JSON output: the answer for one named target; for several (or a
    /// glob, or --all) one object keyed by target, a failed target as
    /// {"error":{...}}.
    #[arg(long, conflicts_with = "json_lines")]
    json: bool,
    /// JSON Lines: one {"target":...,"answer":...} (or "error") per target.
    #[arg(long)]
    json_lines: bool,
    #[command(flatten)]
    gateway: ClientOpts,
}

/// The one BMC of a raw request.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The BMC.
    #[arg(value_name = "TARGET")]
    target: String,
    /// JSON output: {"completion_code":N,"data":"hex"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gateway: ClientOpts,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// ipmitool-like text, each line prefixed with the target when there
    /// are several.
    Text,
    /// One JSON document.
    Json,
    /// One JSON object per target and line.
    JsonLines,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    gateway: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

struct Settings {
    host: String,
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    timeout: std::time::Duration,
}

fn settings(o: &ClientOpts) -> Result<Settings, CliError> {
    let file_path =
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/ipmigw/client.toml"));
    let file: ClientFile = match file_path.as_ref().filter(|p| p.exists()) {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("{}: {e}", p.display())))?;
            toml::from_str(&text)
                .map_err(|e| CliError::usage(format!("{}: {}", p.display(), e.message())))?
        }
        None => ClientFile::default(),
    };
    let missing = |what: &str, var: &str| {
        CliError::usage(format!("no {what}: pass --{what}, set {var}, or put {what} = \"...\" in ~/.config/ipmigw/client.toml"))
    };
    let url = o
        .gateway
        .clone()
        .or(file.gateway)
        .ok_or_else(|| missing("gateway", "IPMIGW_GATEWAY"))?;
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| CliError::usage(format!("gateway {url:?}: expected https://HOST:PORT")))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse()
                .map_err(|_| CliError::usage(format!("gateway {url:?}: bad port")))?,
        ),
        _ => (rest.to_string(), 443),
    };
    Ok(Settings {
        timeout: std::time::Duration::from_secs(o.timeout),
        host,
        port,
        cert: o
            .cert
            .clone()
            .or(file.cert)
            .ok_or_else(|| missing("cert", "IPMIGW_CERT"))?,
        key: o
            .key
            .clone()
            .or(file.key)
            .ok_or_else(|| missing("key", "IPMIGW_KEY"))?,
        ca: o
            .ca
            .clone()
            .or(file.ca)
            .ok_or_else(|| missing("ca", "IPMIGW_CA"))?,
    })
}

fn tls_config(s: &Settings) -> Result<rustls::ClientConfig, CliError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| CliError::usage(format!("{}: {e}", p.display())));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut BufReader::new(&read(&s.ca)?[..])) {
        let c = c.map_err(|e| CliError::usage(format!("{}: {e}", s.ca.display())))?;
        roots
            .add(c)
            .map_err(|e| CliError::usage(format!("{}: {e}", s.ca.display())))?;
    }
    let chain: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(&read(&s.cert)?[..]))
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CliError::usage(format!(
            "{}: expected a PEM certificate",
            s.cert.display()
        )));
    }
    let key_bytes =
        crate::secret::read_private_file(&s.key, "client key").map_err(CliError::usage)?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_bytes.expose()))
        .ok()
        .flatten()
        .ok_or_else(|| {
            CliError::usage(format!("{}: expected a PEM private key", s.key.display()))
        })?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| CliError::usage(e.to_string()))?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| CliError::usage(format!("{}: {e}", s.key.display())))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

fn conn_error(what: impl std::fmt::Display) -> CliError {
    CliError {
        code: EXIT_CONNECTION,
        message: what.to_string(),
    }
}

/// The HTTP/2 connection to the gateway, opened again when the gateway
/// closed it (idle timeout, restart) before a request went out on it.
#[derive(Clone)]
pub(crate) struct Gateway {
    inner: Arc<Dialer>,
    authority: String,
}

struct Dialer {
    settings: Settings,
    tls: Arc<rustls::ClientConfig>,
    conn: tokio::sync::Mutex<Conn>,
}

/// One HTTP/2 connection: where requests go, and how it ended. With TLS
/// 1.3 the gateway judges the client certificate after the client's
/// handshake is done, so a refusal (alert) ends the connection under the
/// first request: only the connection's own task sees why.
#[derive(Clone)]
struct Conn {
    send: SendRequest<Full<Bytes>>,
    /// `Some` once the connection has ended: the TLS alert that ended it.
    ended: tokio::sync::watch::Receiver<Option<Option<rustls::AlertDescription>>>,
}

impl Conn {
    /// The certificate refusal that ended this connection, if that is what
    /// happened (waits briefly for the connection's task to finish).
    async fn refusal(&self, s: &Settings) -> Option<CliError> {
        let mut ended = self.ended.clone();
        let done = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            ended.wait_for(Option::is_some),
        );
        let alert = match done.await {
            Ok(Ok(v)) => (*v)?,
            _ => None,
        };
        alert.and_then(|a| alert_error(s, a))
    }
}

/// The first TLS alert in an error's chain of causes.
fn alert_in(e: &(dyn std::error::Error + 'static)) -> Option<rustls::AlertDescription> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::AlertReceived(a)) = err.downcast_ref::<rustls::Error>() {
            return Some(*a);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(a) = io.get_ref().and_then(|i| alert_in(i)) {
                return Some(a);
            }
        }
        // After the handshake, tokio-rustls hands over the alert as text.
        if let Some(a) = alert_named(&err.to_string()) {
            return Some(a);
        }
        cur = err.source();
    }
    None
}

/// The alert in rustls's "received fatal alert: NAME", for the alerts the
/// gateway sends.
fn alert_named(text: &str) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    let name = text.strip_prefix("received fatal alert: ")?;
    [
        A::AccessDenied,
        A::CertificateRevoked,
        A::CertificateExpired,
        A::BadCertificate,
        A::UnknownCA,
        A::CertificateUnknown,
        A::UnsupportedCertificate,
        A::CertificateRequired,
        A::DecryptError,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
}

async fn dial(s: &Settings, tls: Arc<rustls::ClientConfig>) -> Result<Conn, CliError> {
    let server_name = rustls::pki_types::ServerName::try_from(s.host.clone())
        .map_err(|_| CliError::usage(format!("gateway host {:?} is not a valid name", s.host)))?;
    let dialing = async {
        let tcp = tokio::net::TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| conn_error(format!("cannot connect to {}:{}: {e}", s.host, s.port)))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_error(s, &e))?;
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| conn_error(format!("HTTP/2 with the gateway: {e}")))
    };
    let (send, conn) = tokio::time::timeout(s.timeout, dialing)
        .await
        .map_err(|_| {
            conn_error(format!(
                "no answer from the gateway at {}:{} within {} s (--timeout)",
                s.host,
                s.port,
                s.timeout.as_secs()
            ))
        })??;
    let (tell, ended) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let alert = conn.await.err().and_then(|e| alert_in(&e));
        let _ = tell.send(Some(alert));
    });
    Ok(Conn { send, ended })
}

/// A TLS failure, named: the gateway refuses connections over its limits
/// with the `access_denied` alert before the handshake.
fn tls_error(s: &Settings, e: &std::io::Error) -> CliError {
    alert_in(e)
        .and_then(|a| alert_error(s, a))
        .unwrap_or_else(|| conn_error(format!("TLS with {}:{}: {e}", s.host, s.port)))
}

fn cert_refused(s: &Settings, why: &str) -> CliError {
    conn_error(format!(
        "the gateway at {}:{} refused the client certificate {}: {why}",
        s.host,
        s.port,
        s.cert.display()
    ))
}

/// What a refusing alert from the gateway means, for the alerts it sends.
fn alert_error(s: &Settings, alert: rustls::AlertDescription) -> Option<CliError> {
    use rustls::AlertDescription as A;
    match alert {
        A::AccessDenied => Some(CliError {
            code: EXIT_DENIED,
            message: format!(
                "the gateway at {}:{} refused the connection: rate limited (too many connections or handshakes from this address or certificate); retry later",
                s.host, s.port
            ),
        }),
        A::CertificateRevoked => Some(cert_refused(s, "it is revoked")),
        A::CertificateExpired => Some(cert_refused(s, "it has expired or is not valid yet")),
        A::UnsupportedCertificate => Some(cert_refused(s, "it is not for client authentication")),
        A::CertificateRequired => Some(cert_refused(s, "no client certificate was sent")),
        // DecryptError: a CA of the same name as the gateway's signed it.
        A::UnknownCA | A::DecryptError | A::BadCertificate | A::CertificateUnknown => Some(
            cert_refused(s, "it is not issued by the CA the gateway trusts"),
        ),
        _ => None,
    }
}

pub(crate) async fn connect(o: &ClientOpts) -> Result<Gateway, CliError> {
    let s = settings(o)?;
    let tls = Arc::new(tls_config(&s)?);
    let conn = dial(&s, tls.clone()).await?;
    Ok(Gateway {
        authority: format!("{}:{}", s.host, s.port),
        inner: Arc::new(Dialer {
            settings: s,
            tls,
            conn: tokio::sync::Mutex::new(conn),
        }),
    })
}

/// A failed exchange, and whether the request may have reached the gateway.
struct Lost {
    error: CliError,
    maybe_sent: bool,
}

impl Dialer {
    /// Sends `req`; when the connection turns out closed before the request
    /// left (the gateway closes idle connections), dials again and sends it
    /// once more. A request that may have left is never sent twice.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Lost> {
        let unsent = |error| Lost {
            error,
            maybe_sent: false,
        };
        let conn = self.conn.lock().await.clone();
        let mut send = conn.send.clone();
        let req = match send.ready().await {
            Ok(()) => match send.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(req) => req,
                    None => {
                        return Err(self
                            .lost(&conn, format!("gateway request: {}", e.into_error()))
                            .await)
                    }
                },
            },
            Err(_) => req,
        };
        let fresh = dial(&self.settings, self.tls.clone())
            .await
            .map_err(unsent)?;
        *self.conn.lock().await = fresh.clone();
        let mut send = fresh.send.clone();
        if let Err(e) = send.ready().await {
            let error = match fresh.refusal(&self.settings).await {
                Some(refused) => refused,
                None => conn_error(format!("gateway connection: {e}")),
            };
            return Err(unsent(error));
        }
        match send.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => Err(self.lost(&fresh, format!("gateway request: {e}")).await),
        }
    }

    /// A request that failed on `conn`: refused certificates never reached
    /// the gateway's policy, so nothing was carried out; anything else may
    /// have been.
    async fn lost(&self, conn: &Conn, why: String) -> Lost {
        match conn.refusal(&self.settings).await {
            Some(error) => Lost {
                error,
                maybe_sent: false,
            },
            None => Lost {
                error: conn_error(why),
                maybe_sent: true,
            },
        }
    }
}

/// A fresh id the gateway records with the request, so that a request whose
/// answer was lost can be found in the trail.
fn client_request_id() -> String {
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("c-{}", hex::encode(b))
}

/// A gateway answer that is not a success, as the CLI reports it. When
/// the outcome is unknown, the message says how to find it in the trail.
pub(crate) fn failure(status: StatusCode, body: &[u8]) -> CliError {
    let e = ApiError::from_answer(status.as_u16(), body);
    let mut message = e.to_string();
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    if let (ErrorKind::OutcomeUnknown, Some(id)) = (e.kind, v["error"]["request_id"].as_str()) {
        message.push_str(&format!(
            ". Check the target's state, or the audit trail: `ipmigw audit query --request-id {id}`"
        ));
    }
    CliError {
        code: e.exit_code(),
        message,
    }
}

impl Gateway {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        text: bool,
    ) -> Result<Vec<u8>, CliError> {
        let (status, bytes) = self.call_raw(method, path, body, text).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(failure(status, &bytes))
        }
    }

    /// One request; any HTTP status is an answer (connection trouble is not).
    /// A request that changes state and gets no answer is reported as
    /// "outcome unknown", with how to find out.
    pub(crate) async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        text: bool,
    ) -> Result<(StatusCode, Vec<u8>), CliError> {
        let id = client_request_id();
        let changes = method != Method::GET;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header("x-client-request-id", &id)
            .header(
                "accept",
                if text {
                    "text/plain"
                } else {
                    "application/json"
                },
            );
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| CliError::usage(e.to_string()))?;
        let timeout = self.inner.settings.timeout;
        let exchange = async {
            let resp = self.inner.send(req).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Lost {
                    error: conn_error(format!("gateway answer: {e}")),
                    maybe_sent: true,
                })?
                .to_bytes();
            Ok::<_, Lost>((status, bytes.to_vec()))
        };
        let outcome_unknown = |why: String| {
            conn_error(format!(
                "{why}: the request may or may not have been carried out (outcome unknown). Check the target's state (e.g. `ipmigw power status TARGET`), or the audit trail: `ipmigw audit query --request-id {id}`"
            ))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(l)) if l.maybe_sent && changes => Err(outcome_unknown(l.error.message)),
            Ok(Err(l)) => Err(l.error),
            Err(_) => {
                let why = format!(
                    "no answer from the gateway within {} s (--timeout)",
                    timeout.as_secs()
                );
                Err(if changes {
                    outcome_unknown(why)
                } else {
                    conn_error(why)
                })
            }
        }
    }

    /// One request for one target of several: its body, or why not
    /// (with the API's code when the gateway answered).
    async fn call_answer(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        text: bool,
    ) -> Result<Vec<u8>, Failed> {
        match self.call_raw(method, path, body, text).await {
            Ok((status, bytes)) if status.is_success() => Ok(bytes),
            Ok((status, bytes)) => Err(Failed {
                error: failure(status, &bytes),
                api_code: Some(ApiError::from_answer(status.as_u16(), &bytes).kind.code()),
            }),
            Err(error) => Err(Failed {
                error,
                api_code: None,
            }),
        }
    }

    /// Dials the gateway afresh in place of the current connection (the
    /// bridge reconnects in the background while the gateway is away).
    pub(crate) async fn redial(&self) -> Result<(), CliError> {
        let fresh = dial(&self.inner.settings, self.inner.tls.clone()).await?;
        *self.inner.conn.lock().await = fresh;
        Ok(())
    }

    /// The BMCs the gateway lets this user act on (`GET /v1/bmcs`).
    pub(crate) async fn visible(&self) -> Result<Vec<String>, CliError> {
        let b = self.call(Method::GET, "/v1/bmcs", None, false).await?;
        let v: Value =
            serde_json::from_slice(&b).map_err(|e| conn_error(format!("gateway answer: {e}")))?;
        Ok(v["bmcs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

async fn resolve_targets(g: &Gateway, t: &Targets) -> Result<Vec<String>, CliError> {
    if !t.all && t.targets.is_empty() {
        return Err(CliError::usage(
            "no TARGET: name one or more BMCs, a glob such as 'node0*', or --all",
        ));
    }
    if t.all && !t.targets.is_empty() {
        return Err(CliError::usage(format!(
            "--all and TARGETs ({}) together: give one or the other",
            t.targets.join(" ")
        )));
    }
    if !t.all && !t.targets.iter().any(|x| x.contains('*')) {
        // A name given twice is one target: a state change runs once.
        let mut names: Vec<String> = Vec::new();
        for n in &t.targets {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        return Ok(names);
    }
    let visible = g.visible().await?;
    if t.all {
        return Ok(visible);
    }
    let mut out = Vec::new();
    for pat in &t.targets {
        let p = BmcPattern::parse(pat).map_err(CliError::usage)?;
        let hits: Vec<&String> = visible.iter().filter(|n| p.matches(n)).collect();
        if hits.is_empty() {
            return Err(CliError::usage(format!(
                "{pat:?} matches no BMC you may act on"
            )));
        }
        out.extend(
            hits.into_iter()
                .filter(|h| !out.contains(*h))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    Ok(out)
}

/// Runs a client verb, with the client options given before it; the exit
/// code is the first failing target's.
pub async fn run(before: Before, verb: ClientVerb) -> Result<(), CliError> {
    let verb = match verb {
        ClientVerb::Op(v) => v,
        ClientVerb::Bmcs(p) => {
            let g = connect(&before.apply(p.gateway)).await?;
            return list_bmcs(&g, p.json || before.json).await;
        }
        ClientVerb::Whoami(p) => {
            let g = connect(&before.apply(p.gateway)).await?;
            return whoami(&g, p.json || before.json).await;
        }
    };
    // Bad input is refused before anything goes to the gateway.
    let op = verb.op().map_err(|e| CliError::usage(e.message))?;
    if let Some(t) = verb.one() {
        let g = connect(&before.apply(t.gateway.clone())).await?;
        return run_raw(&g, &t.target, &op, t.json || before.json).await;
    }
    let targets = verb.many().expect("every verb but raw names targets");
    let format = match (targets.json || before.json, targets.json_lines) {
        (_, true) => Format::JsonLines,
        (true, false) => Format::Json,
        (false, false) => Format::Text,
    };
    let g = connect(&before.apply(targets.gateway.clone())).await?;
    let names = resolve_targets(&g, targets).await?;
    let outcomes = run_on_many(&g, &op, &names, format != Format::Text).await;
    let one = targets.names_one();
    report(outcomes, format, one)
}

impl Targets {
    /// True when the command line names exactly one BMC (no glob, no
    /// --all): its JSON answer is printed bare. Decided by what was typed,
    /// never by how many BMCs a glob matched, so that a script's JSON
    /// has one shape.
    fn names_one(&self) -> bool {
        !self.all && self.targets.len() == 1 && !self.targets[0].contains('*')
    }
}

async fn list_bmcs(g: &Gateway, json: bool) -> Result<(), CliError> {
    let list = g.visible().await?;
    if json {
        outln!("{}", json!({ "bmcs": list }));
    } else {
        for b in list {
            outln!("{b}");
        }
    }
    Ok(())
}

async fn whoami(g: &Gateway, json: bool) -> Result<(), CliError> {
    let b = g.call(Method::GET, "/v1/whoami", None, false).await?;
    let v: Value =
        serde_json::from_slice(&b).map_err(|e| conn_error(format!("gateway answer: {e}")))?;
    if json {
        outln!("{v}");
        return Ok(());
    }
    let roles: Vec<&str> = v["roles"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let field = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    outln!("user: {}", field("user"));
    outln!(
        "roles: {}",
        if roles.is_empty() {
            "-".to_string()
        } else {
            roles.join(", ")
        }
    );
    outln!("certificate sha256: {}", field("certificate_sha256"));
    outln!("source: {}", field("source"));
    Ok(())
}

/// A raw request: its completion code decides the exit status.
async fn run_raw(g: &Gateway, target: &str, op: &Op, json: bool) -> Result<(), CliError> {
    let (method, what, body) = op.to_http();
    let path = format!("/v1/bmcs/{}/{what}", encode(target));
    let b = g.call(method, &path, body, false).await?;
    let v: Value = serde_json::from_slice(&b).unwrap_or_default();
    if json {
        outln!("{v}");
        return Ok(());
    }
    let cc = v["completion_code"].as_u64().unwrap_or(0);
    let data = hex::decode(v["data"].as_str().unwrap_or("").as_bytes()).unwrap_or_default();
    if cc != 0 {
        return Err(CliError {
            code: EXIT_BMC,
            message: format!("{target}: completion code 0x{cc:02x}"),
        });
    }
    outln!("{}", crate::ops::text::raw_bytes(&data));
    Ok(())
}

/// Why one target failed: as the CLI reports it, and the API's code when
/// the gateway answered.
struct Failed {
    error: CliError,
    api_code: Option<&'static str>,
}

impl Failed {
    /// `{"code","message","exit"}` (`code` when the gateway answered).
    fn to_json(&self) -> Value {
        let mut e = json!({"message": self.error.message, "exit": self.error.code});
        if let Some(c) = self.api_code {
            e["code"] = json!(c);
        }
        e
    }
}

/// One target's answer (the body as the gateway sent it) or failure.
type Outcome = (String, Result<Vec<u8>, Failed>);

/// One operation on several BMCs at once, over one connection; the
/// outcomes in the order of `names`.
async fn run_on_many(g: &Gateway, op: &Op, names: &[String], json: bool) -> Vec<Outcome> {
    let (method, what, body) = op.to_http();
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let (g, method, body) = (g.clone(), method.clone(), body.clone());
            let path = format!("/v1/bmcs/{}/{what}", encode(name));
            tokio::spawn(async move { g.call_answer(method, &path, body, !json).await })
        })
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for (name, t) in names.iter().zip(tasks) {
        let r = t.await.unwrap_or_else(|e| {
            Err(Failed {
                error: conn_error(e),
                api_code: None,
            })
        });
        out.push((name.clone(), r));
    }
    out
}

/// Prints the outcomes; the error is the first failed target's.
fn report(outcomes: Vec<Outcome>, format: Format, one: bool) -> Result<(), CliError> {
    let several = outcomes.len() > 1;
    // One named target's JSON answer is printed as the gateway sent it.
    let bare = format == Format::Json && one;
    let mut doc = serde_json::Map::new();
    let mut first_error: Option<CliError> = None;
    for (name, r) in &outcomes {
        match r {
            Ok(body) if format == Format::Text => print_text(name, body, several),
            Ok(body) if bare => outln!("{}", String::from_utf8_lossy(body).trim_end()),
            Ok(body) => {
                let v: Value = serde_json::from_slice(body).unwrap_or_default();
                emit_json(&mut doc, name, "answer", v, format);
            }
            Err(f) => {
                if several {
                    super::say(&format!("{name}: {}", f.error.message));
                }
                if format != Format::Text && !bare {
                    emit_json(&mut doc, name, "error", f.to_json(), format);
                }
                first_error.get_or_insert(CliError {
                    code: f.error.code,
                    message: format!("{name}: {}", f.error.message),
                });
            }
        }
    }
    if format == Format::Json && !bare {
        outln!("{}", Value::Object(doc));
    }
    match first_error {
        Some(mut e) if several => {
            e.message = "some targets failed (see above)".into();
            Err(e)
        }
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A JSON Lines line (`{"target":NAME,"answer"|"error":...}`) now, or an
/// entry of the one document printed last (the answer itself, or
/// `{"error":...}`).
fn emit_json(
    doc: &mut serde_json::Map<String, Value>,
    name: &str,
    kind: &str,
    value: Value,
    format: Format,
) {
    if format == Format::JsonLines {
        let mut line = serde_json::Map::new();
        line.insert("target".into(), json!(name));
        line.insert(kind.into(), value);
        outln!("{}", Value::Object(line));
    } else if kind == "answer" {
        doc.insert(name.to_string(), value);
    } else {
        doc.insert(name.to_string(), json!({ kind: value }));
    }
}

fn print_text(name: &str, body: &[u8], prefix: bool) {
    let text = String::from_utf8_lossy(body);
    for line in text.trim_end().lines() {
        if prefix {
            outln!("{name}: {line}");
        } else {
            outln!("{line}");
        }
    }
}

/// BMC names are letters, digits, '-', '_', '.': anything else is escaped.
pub(crate) fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A console WebSocket to the gateway (HTTP/1.1 upgrade over mTLS).
pub(crate) type ConsoleSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens the console WebSocket at `path` with the options' gateway and
/// identity: the socket, or the gateway's refusal as the other verbs
/// report it (3 denied, 4 BMC error, 2 connection).
pub(crate) async fn console_socket(o: &ClientOpts, path: &str) -> Result<ConsoleSocket, CliError> {
    let s = settings(o)?;
    let tls = tls_config(&s)?;
    upgrade(&s, tls, path).await.map_err(|(_, e)| e)
}

impl Gateway {
    /// [`console_socket`] with this connection's settings (the bridge);
    /// a refusal also gives the gateway's HTTP status.
    pub(crate) async fn console_socket(
        &self,
        path: &str,
    ) -> Result<ConsoleSocket, (Option<u16>, CliError)> {
        upgrade(&self.inner.settings, (*self.inner.tls).clone(), path).await
    }
}

/// Largest frame taken from the gateway (it sends at most 64 KiB of
/// scrollback in one frame).
const MAX_CONSOLE_FRAME: usize = 1024 * 1024;

async fn upgrade(
    s: &Settings,
    mut tls: rustls::ClientConfig,
    path: &str,
) -> Result<ConsoleSocket, (Option<u16>, CliError)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error as WsError;
    // WebSocket upgrades are HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = rustls::pki_types::ServerName::try_from(s.host.clone()).map_err(|_| {
        let e = CliError::usage(format!("gateway host {:?} is not a valid name", s.host));
        (None, e)
    })?;
    let host = if s.host.contains(':') {
        format!("[{}]", s.host)
    } else {
        s.host.clone()
    };
    let req = format!("wss://{host}:{}{path}", s.port)
        .into_client_request()
        .map_err(|e| (None, CliError::usage(format!("console request: {e}"))))?;
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        max_message_size: Some(MAX_CONSOLE_FRAME),
        max_frame_size: Some(MAX_CONSOLE_FRAME),
        ..Default::default()
    };
    let dialing = async {
        let tcp = tokio::net::TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| {
                let e = conn_error(format!("cannot connect to {}:{}: {e}", s.host, s.port));
                (None, e)
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(server_name, tcp)
            .await
            .map_err(|e| (None, tls_error(s, &e)))?;
        match tokio_tungstenite::client_async_with_config(req, tls, Some(cfg)).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(r)) => {
                let body = r.body().clone().unwrap_or_default();
                Err((Some(r.status().as_u16()), failure(r.status(), &body)))
            }
            Err(e) => Err((None, conn_error(format!("console upgrade: {e}")))),
        }
    };
    tokio::time::timeout(s.timeout, dialing)
        .await
        .map_err(|_| {
            let e = conn_error(format!(
                "no answer from the gateway at {}:{} within {} s (--timeout)",
                s.host,
                s.port,
                s.timeout.as_secs()
            ));
            (None, e)
        })?
}

//! The Prometheus routes: `GET /metrics` (the gateway's own metrics, for
//! users granted `metrics.read`) and `GET /metrics/bmc?target=NAME` (one
//! BMC's sensors under ipmi_exporter's names). A BMC scrape is an ordinary
//! sensor read: the same visibility check, policy (`sensor.read`,
//! `sdr.read`), one audit record per scrape and the warm pool session; only
//! its answer is rendered differently, and a read that fails or outlasts
//! Prometheus's scrape timeout still answers 200 with `ipmi_up 0`, as the
//! exporter does, so that alert rules on `ipmi_up` fire.
//!
//! Never renders a BMC's metrics for a caller who may not read its
//! sensors, and never tells an invisible BMC from an unknown one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

use super::{fail, not_found, refuse, route_refusal, run, Answer, Caller};
use crate::gateway::Shared;
use crate::metrics::bmc::{self as bmc_metrics, Scrape};
use crate::metrics::CONTENT_TYPE;
use crate::ops::error::{ApiError, ErrorKind};
use crate::ops::scrape::Collectors;
use crate::ops::Op;
use crate::policy::Request as PolicyRequest;

/// Longest a BMC scrape waits when Prometheus sends no timeout (its own
/// default scrape timeout).
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time kept back from Prometheus's timeout to render and send the answer.
const SCRAPE_MARGIN: Duration = Duration::from_millis(250);

/// What a scrape request names: its `target` and Prometheus's timeout.
#[derive(Debug, Default)]
pub struct ScrapeAsk {
    target: Option<String>,
    timeout: Option<Duration>,
}

impl ScrapeAsk {
    /// Reads the query and the `X-Prometheus-Scrape-Timeout-Seconds` header.
    pub fn of<B>(req: &Request<B>) -> ScrapeAsk {
        let target = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("target="))
                .map(str::to_string)
        });
        let timeout = req
            .headers()
            .get("x-prometheus-scrape-timeout-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(300.0)));
        ScrapeAsk { target, timeout }
    }
}

fn exposition(body: String) -> Answer {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

/// Whether policy grants `user` `metrics.read` on any BMC they can see
/// (gateway metrics belong to no BMC; a grant anywhere is the grant).
fn may_read_metrics(shared: &Shared, caller: &Caller<'_>) -> bool {
    let rt = shared.runtime();
    let user = caller.user();
    let source = Some(caller.conn.source);
    rt.policy.visible_bmcs(user, source).iter().any(|bmc| {
        rt.policy
            .decide(&PolicyRequest {
                user,
                source,
                bmc,
                command: "metrics.read",
                state_changing: false,
            })
            .is_allow()
    })
}

/// `GET /metrics`.
pub(super) async fn gateway(shared: &Shared, caller: &Caller<'_>, route: &str) -> Answer {
    if !may_read_metrics(shared, caller) {
        let e = ApiError::new(ErrorKind::Denied, "metrics.read is not granted");
        let answer = fail(&e, Some(&caller.id));
        let r = route_refusal(caller, route, "-", e.kind, answer);
        return refuse(shared, caller, r).await;
    }
    exposition(shared.metrics.render(shared.audit.is_available()))
}

/// The collectors `caller` may run on `target`: each one whose reads
/// policy would allow (a scraper granted only sensor reads gets the sensor
/// collector alone). This only chooses: the scrape's own decision, over
/// every chosen name, is the one recorded.
fn allowed_collectors(
    shared: &Shared,
    caller: &Caller<'_>,
    target: &str,
    budget: Duration,
) -> Collectors {
    let rt = shared.runtime();
    let allows = |command: &str| {
        rt.policy
            .decide(&PolicyRequest {
                user: caller.user(),
                source: Some(caller.conn.source),
                bmc: target,
                command,
                state_changing: false,
            })
            .is_allow()
    };
    Collectors {
        ipmi: true,
        bmc: allows("mc.info"),
        chassis: allows("chassis.status"),
        sel: allows("sel.read"),
        budget_ms: budget.as_millis() as u64,
    }
}

/// `GET /metrics/bmc?target=NAME`.
pub(super) async fn bmc(
    shared: &std::sync::Arc<Shared>,
    caller: &Caller<'_>,
    route: &str,
) -> Answer {
    let Some(target) = caller.scrape.target.as_deref() else {
        let e = ApiError::new(ErrorKind::BadRequest, "target=NAME is required");
        let answer = fail(&e, Some(&caller.id));
        let r = route_refusal(caller, route, "-", e.kind, answer);
        return refuse(shared, caller, r).await;
    };
    let visible =
        (shared.runtime().policy).is_visible(caller.user(), target, Some(caller.conn.source));
    if !visible {
        let r = route_refusal(caller, route, target, ErrorKind::NotFound, not_found());
        return refuse(shared, caller, r).await;
    }
    let started = Instant::now();
    let budget = caller
        .scrape
        .timeout
        .unwrap_or(DEFAULT_SCRAPE_TIMEOUT)
        .saturating_sub(SCRAPE_MARGIN);
    let collectors = allowed_collectors(shared, caller, target, budget);
    // The operation stops its collectors at the budget; this outer limit
    // (a little later) only covers a wait for the pool or the audit trail.
    let op = Op::Scrape(collectors);
    let answer = tokio::time::timeout(
        budget + SCRAPE_MARGIN / 2,
        run(shared, caller, target, op, false),
    )
    .await;
    let json = match answer {
        Ok(a) if a.status() == StatusCode::OK => json_of(a).await,
        // Refusals (policy, rate limits, audit) are answers to the caller,
        // not facts about the BMC.
        Ok(a) if !matches!(a.status().as_u16(), 502 | 504) => return a,
        _ => serde_json::Value::Null,
    };
    let scrape = Scrape::from_json(
        &collectors.enabled(),
        &json,
        started.elapsed().as_secs_f64(),
    );
    let finished = scrape
        .collectors
        .iter()
        .filter(|c| scrape_finished(&json, c))
        .count();
    shared.metrics.bmc_scrape(match finished {
        0 => "failed",
        n if n == scrape.collectors.len() => "ok",
        _ => "partial",
    });
    exposition(bmc_metrics::render(&scrape))
}

fn scrape_finished(json: &serde_json::Value, collector: &str) -> bool {
    !json[collector].is_null()
}

/// The JSON of an operation's answer.
async fn json_of(answer: Answer) -> serde_json::Value {
    let body = match answer.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    serde_json::from_slice(&body).unwrap_or_default()
}

//! The socket side of a scan: sends the probes of `ipmi::probe` to one BMC
//! over its own UDP socket, waits for the matching answer with bounded
//! retries, and fills [`Observations`]. Order matters: checks that look
//! like failed logins to a BMC with a lockout (the RAKP name probe) come
//! last, so that they cannot hide the answers of the others.
//!
//! Never does: send a password (the suite-0 proof needs none; the RAKP
//! probe stops at RAKP 2), keep a RAKP 2 auth code, or wait without bound.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::net::UdpSocket;

use super::findings::{Observations, Suite0Proof};
use crate::ipmi::probe::{self, SuiteRecord};
use crate::ipmi::wire::rakp::{AlgorithmTriple, RmcpPlusStatus};

/// Names the RAKP probe asks about: the vendor defaults.
pub const WELL_KNOWN_NAMES: [&str; 5] = ["ADMIN", "admin", "root", "Administrator", "USERID"];

/// Most chunks of the cipher suite list read (16 bytes each).
const MAX_SUITE_CHUNKS: u8 = 8;

/// How a scan talks to each BMC.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Wait for each answer.
    pub timeout: Duration,
    /// Re-sends after the first try.
    pub retries: u32,
    /// Run the suite-0 login proof.
    pub prove: bool,
    /// Probe RAKP 2 exposure for these names.
    pub rakp_names: Vec<String>,
}

/// One BMC's link: its socket and the scan's packet counter.
pub struct Link<'a> {
    sock: UdpSocket,
    settings: &'a ProbeSettings,
    sent: &'a AtomicU64,
    /// One probe at a time per BMC: what it sent and how it ended.
    pub log: Vec<ProbeLog>,
}

/// One probe as the audit trail records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeLog {
    /// What was asked (never a secret).
    pub probe: String,
    /// Datagrams sent.
    pub sent: u32,
    /// Answered, and how.
    pub outcome: String,
}

impl<'a> Link<'a> {
    /// A socket connected to `addr`.
    pub async fn open(
        addr: SocketAddr,
        settings: &'a ProbeSettings,
        sent: &'a AtomicU64,
    ) -> std::io::Result<Link<'a>> {
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap_or(addr);
        let sock = UdpSocket::bind(local).await?;
        sock.connect(addr).await?;
        Ok(Link {
            sock,
            settings,
            sent,
            log: Vec::new(),
        })
    }

    /// Sends `req` and returns the first answer `parse` accepts, re-sending
    /// on silence up to the retry limit. Answers that do not parse (late
    /// copies of earlier answers) are skipped.
    pub async fn exchange<T>(
        &mut self,
        what: &str,
        req: &[u8],
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let mut buf = [0u8; 1024];
        let mut sent = 0;
        for _ in 0..=self.settings.retries {
            if self.sock.send(req).await.is_err() {
                break;
            }
            sent += 1;
            self.sent.fetch_add(1, Relaxed);
            let deadline = tokio::time::Instant::now() + self.settings.timeout;
            // Bounded: each pass waits until the one deadline at most.
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.sock.recv(&mut buf)).await
            {
                if let Some(v) = parse(&buf[..n]) {
                    self.log.push(ProbeLog {
                        probe: what.into(),
                        sent,
                        outcome: "answered".into(),
                    });
                    return Some(v);
                }
            }
        }
        self.log.push(ProbeLog {
            probe: what.into(),
            sent,
            outcome: "no answer".into(),
        });
        None
    }
}

/// Runs the unauthenticated checks but the RAKP name probe; `None` when
/// the BMC does not answer auth caps at all (the round-trip time
/// otherwise).
pub async fn unauthenticated(link: &mut Link<'_>, obs: &mut Observations) -> Option<Duration> {
    let start = Instant::now();
    let caps = link
        .exchange("get channel auth caps", &probe::auth_caps_request(1), |d| {
            probe::parse_auth_caps(d).ok()
        })
        .await?;
    let rtt = start.elapsed();
    obs.auth_caps = Some(caps);
    suites(link, obs).await;
    suite_zero(link, obs).await;
    Some(rtt)
}

async fn suites(link: &mut Link<'_>, obs: &mut Observations) {
    let mut stream = Vec::new();
    for index in 0..MAX_SUITE_CHUNKS {
        let req = probe::cipher_suites_request(index, 2 + index);
        let Some(chunk) = link
            .exchange("get channel cipher suites", &req, |d| {
                probe::parse_cipher_suites_chunk(d).ok()
            })
            .await
        else {
            if index == 0 {
                return;
            }
            break;
        };
        let last = chunk.len() < 16;
        stream.extend_from_slice(&chunk);
        if last {
            break;
        }
    }
    obs.suites_hex = hex::encode(&stream);
    obs.suites = Some(probe::suite_records(&stream));
}

fn console_sid() -> u32 {
    rand::thread_rng().next_u32() | 1
}

const ZERO: AlgorithmTriple = AlgorithmTriple {
    auth: 0,
    integrity: 0,
    confidentiality: 0,
};

/// Opens a session with `algs`; the BMC's session ID when accepted, the
/// status otherwise.
async fn open(link: &mut Link<'_>, what: &str, algs: AlgorithmTriple) -> Option<Result<u32, u8>> {
    let sid = console_sid();
    let r = link
        .exchange(what, &probe::open_session_request(sid, algs), |d| {
            probe::parse_open_session(d)
                .ok()
                .filter(|r| r.console_sid.is_none_or(|c| c == sid))
        })
        .await?;
    Some(match r.accepted {
        Some(a) if r.status.is_ok() => Ok(a.bmc_sid),
        _ => Err(r.status.0),
    })
}

async fn suite_zero(link: &mut Link<'_>, obs: &mut Observations) {
    let Some(answer) = open(link, "open session suite 0", ZERO).await else {
        return;
    };
    obs.suite0_status = Some(answer.err().unwrap_or(0));
    let Ok(bmc_sid) = answer else { return };
    if !link.settings.prove {
        return;
    }
    // A name the BMC knows: the first well-known one it takes (with
    // suite 0 no password is ever proven, so none is sent).
    let mut proof = None;
    let mut sid = Some(bmc_sid);
    for name in link.settings.rakp_names.clone() {
        let Some(s) = sid.take() else {
            sid = open(link, "open session suite 0", ZERO)
                .await
                .and_then(Result::ok);
            if sid.is_none() {
                break;
            }
            continue;
        };
        let r2 = link
            .exchange(
                &format!("suite 0 RAKP 1 as {name}"),
                &probe::rakp1_request(s, [0x5A; 16], name.as_bytes()),
                |d| probe::parse_rakp2(d).ok(),
            )
            .await;
        match r2 {
            Some(r2) if r2.status.is_ok() => {
                proof = Some(prove_command(link, s, &name).await);
                break;
            }
            _ => {
                sid = open(link, "open session suite 0", ZERO)
                    .await
                    .and_then(Result::ok)
            }
        }
    }
    obs.suite0_proof = proof;
}

/// RAKP 3 without a code, then Get Device ID in the suite-0 session.
async fn prove_command(link: &mut Link<'_>, bmc_sid: u32, name: &str) -> Suite0Proof {
    let mut proof = Suite0Proof {
        user: name.into(),
        rakp: None,
        command_cc: None,
        answer_hex: String::new(),
    };
    let r4 = link
        .exchange(
            "suite 0 RAKP 3 (no auth code)",
            &probe::rakp3_request(bmc_sid, RmcpPlusStatus::OK),
            |d| probe::parse_rakp4(d).ok(),
        )
        .await;
    let Some(r4) = r4 else { return proof };
    proof.rakp = Some((0, r4.0));
    if !r4.is_ok() {
        return proof;
    }
    let req = probe::suite0_device_id_request(bmc_sid, 1, 9);
    if let Some(r) = link
        .exchange("suite 0 get device id", &req, |d| {
            probe::parse_suite0_answer(d).ok()
        })
        .await
    {
        proof.command_cc = Some(r.completion_code.0);
        proof.answer_hex = hex::encode(&r.data);
    }
    proof
}

/// The suite the RAKP probe uses: one the BMC lists with an HMAC
/// authentication algorithm (17 or 3 preferred), else 3.
fn rakp_suite(suites: Option<&Vec<SuiteRecord>>) -> (u8, AlgorithmTriple) {
    let listed = suites.into_iter().flatten();
    let pick = listed
        .filter(|r| matches!(r.auth, 1 | 3))
        .max_by_key(|r| (matches!(r.id, 17 | 3), r.auth));
    match pick {
        Some(r) => (
            r.id,
            AlgorithmTriple {
                auth: r.auth,
                integrity: r.integrity,
                confidentiality: r.confidentiality,
            },
        ),
        None => (
            3,
            AlgorithmTriple {
                auth: 1,
                integrity: 1,
                confidentiality: 1,
            },
        ),
    }
}

/// The RAKP 2 exposure probe: a RAKP 1 for each well-known name. Unknown
/// names count as failed logins on a BMC with a lockout, so this runs
/// after every check that needs a login.
pub async fn rakp_names(link: &mut Link<'_>, obs: &mut Observations) {
    let (id, algs) = rakp_suite(obs.suites.as_ref());
    obs.rakp_suite = Some(id);
    for name in link.settings.rakp_names.clone() {
        let sid = match open(link, &format!("open session suite {id}"), algs).await {
            Some(Ok(sid)) => sid,
            Some(Err(status)) => {
                // Often a lockout the scan's own failed logins started:
                // said, so that a missing finding is not read as clean.
                obs.notes.push(format!(
                    "RAKP probe for {name}: Open Session refused with status {status:#04x}"
                ));
                continue;
            }
            None => continue,
        };
        let req = probe::rakp1_request(sid, [0xA5; 16], name.as_bytes());
        let r2 = link
            .exchange(&format!("RAKP 1 as {name}"), &req, |d| {
                probe::parse_rakp2(d).ok()
            })
            .await;
        if let Some(r2) = r2.filter(|r| r.status.is_ok() && r.auth_code_len > 0) {
            obs.rakp_exposed.push(name.clone());
            // Frees the BMC's slot at once ("RAKP 2 did not verify"):
            // no answer is due.
            let abort = probe::rakp3_request(sid, RmcpPlusStatus::INVALID_INTEGRITY_CHECK);
            if link.sock.send(&abort).await.is_ok() {
                link.sent.fetch_add(1, Relaxed);
            }
            let _ = r2;
        }
    }
}

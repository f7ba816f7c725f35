//! The BMC pool: one warm session per BMC (the engine's `BmcClient`),
//! opened on first use and kept across requests and config reloads (unless
//! that BMC's settings changed). Sending needs an audit [`Receipt`]: no
//! request reaches a BMC unless its record is durable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::settings::BmcSpec;
use crate::audit::{AuditWriter, BmcSessionRecord, Event, Receipt};
use crate::bmc::{BmcClient, BmcConfig, BmcError, RawResponse, Transact};
use crate::ipmi::cmd::name::classify;
use crate::ipmi::cmd::RawRequest;
use crate::ops::{Answer, Op};

struct Slot {
    spec: BmcSpec,
    client: tokio::sync::Mutex<Option<BmcClient>>,
    /// Held for the whole of a multi-step read and for every raw request:
    /// a reservation (SDR, SEL) taken by one is cancelled by the next
    /// reservation on the BMC, so they must not interleave, and a raw
    /// Reserve from a caller must not break someone's sensor walk.
    exclusive: tokio::sync::Mutex<()>,
}

impl Slot {
    /// Sends Close Session, if a session is open, and records the logout.
    async fn close(&self, audit: &AuditWriter, why: &str) {
        if let Some(c) = self.client.lock().await.take() {
            let suite = c.suite();
            c.close().await;
            session_event(audit, &self.spec.name, "logout", suite, Some(why.into())).await;
        }
    }
}

/// Every configured BMC's session.
pub struct BmcPool {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    queue: usize,
    audit: AuditWriter,
}

/// Records a `bmc_session` event (never a secret: reasons are error texts
/// that name addresses and statuses only).
async fn session_event(
    audit: &AuditWriter,
    bmc: &str,
    action: &str,
    cipher_suite: Option<u8>,
    reason: Option<String>,
) {
    let rec = BmcSessionRecord {
        bmc: bmc.into(),
        action: action.into(),
        cipher_suite,
        reason,
    };
    if let Err(e) = audit.append(Event::BmcSession(rec)).await {
        tracing::error!(error = %e, bmc, "bmc_session record not written");
    }
}

impl std::fmt::Debug for BmcPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcPool").finish_non_exhaustive()
    }
}

/// The wire side of one operation: a session, and the command names the
/// operation may send. Only made from a receipt that allows the request.
struct Gated<'a> {
    client: &'a BmcClient,
    allowed: &'a [String],
}

impl Transact for Gated<'_> {
    async fn transact(&self, req: RawRequest) -> Result<RawResponse, BmcError> {
        let name = classify(req.netfn, req.cmd, &req.data).name;
        if !self.allowed.iter().any(|a| a == name.as_str()) {
            return Err(BmcError::Protocol {
                addr: self.client.addr(),
                what: "operation",
                why: format!("{name} is outside what was audited and allowed"),
            });
        }
        self.client.request(req).await
    }
    fn addr(&self) -> SocketAddr {
        self.client.addr()
    }
}

impl BmcPool {
    /// A pool for `specs`; sessions open on first use.
    pub fn new(specs: Vec<BmcSpec>, queue: usize, audit: AuditWriter) -> BmcPool {
        let pool = BmcPool {
            slots: Mutex::new(HashMap::new()),
            queue,
            audit,
        };
        pool.reconfigure(specs);
        pool
    }

    /// Applies a new BMC list: unchanged BMCs keep their session; changed
    /// and removed ones are closed.
    pub fn reconfigure(&self, specs: Vec<BmcSpec>) {
        let mut slots = self.slots.lock().expect("pool lock");
        let mut next = HashMap::new();
        for spec in specs {
            let slot = match slots.remove(&spec.name) {
                Some(s) if s.spec == spec => s,
                _ => Arc::new(Slot {
                    spec: spec.clone(),
                    client: tokio::sync::Mutex::new(None),
                    exclusive: tokio::sync::Mutex::new(()),
                }),
            };
            next.insert(spec.name.clone(), slot);
        }
        let gone: Vec<Arc<Slot>> = slots.drain().map(|(_, s)| s).collect();
        *slots = next;
        drop(slots);
        let audit = self.audit.clone();
        tokio::spawn(async move {
            for s in gone {
                s.close(&audit, "configuration changed").await;
            }
        });
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, BmcError> {
        let slot = self.slots.lock().expect("pool lock").get(name).cloned();
        slot.ok_or_else(|| BmcError::Protocol {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            what: "pool",
            why: format!("no BMC named {name}"),
        })
    }

    async fn client(&self, slot: &Slot) -> Result<BmcClient, BmcError> {
        let name = slot.spec.name.as_str();
        // One login at a time per BMC; later callers wait for it.
        let mut guard = slot.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let mut cfg = BmcConfig::new(slot.spec.addr, slot.spec.console());
        cfg.timeout = slot.spec.timeout;
        cfg.retries = slot.spec.retries;
        cfg.queue_depth = self.queue;
        let c = match BmcClient::connect(cfg).await {
            Ok(c) => c,
            Err(e) => {
                session_event(&self.audit, name, "failure", None, Some(e.to_string())).await;
                return Err(e);
            }
        };
        session_event(&self.audit, name, "login", c.suite(), None).await;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Runs an operation on BMC `name`, with the receipt of its audit record;
    /// it may send only commands named in `allowed` (what policy decided).
    pub async fn run(
        &self,
        receipt: &Receipt,
        name: &str,
        op: &Op,
        allowed: &[String],
    ) -> Result<Answer, BmcError> {
        if !receipt.allows() {
            return Err(BmcError::Protocol {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                what: "pool",
                why: "the audit record of this request is a denial".into(),
            });
        }
        let slot = self.slot(name)?;
        let _exclusive = match op {
            Op::Sensors | Op::Sel | Op::Fru | Op::Raw(_) => Some(slot.exclusive.lock().await),
            _ => None,
        };
        let client = self.client(&slot).await?;
        let gated = Gated {
            client: &client,
            allowed,
        };
        let r = op.run(&gated).await;
        if let Err(BmcError::Closed(_)) = &r {
            // The session task ended; the next request logs in again.
            slot.client.lock().await.take();
        }
        r
    }

    /// Closes every session (shutdown).
    pub async fn close_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .expect("pool lock")
            .values()
            .cloned()
            .collect();
        let mut tasks = Vec::new();
        for s in slots {
            let audit = self.audit.clone();
            tasks.push(tokio::spawn(
                async move { s.close(&audit, "shutdown").await },
            ));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

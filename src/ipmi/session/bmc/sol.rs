//! The BMC's side of Serial over LAN (IPMI v2.0 §15, §24, §26): one SOL
//! payload instance, held by at most one session; Activate Payload (0x80
//! "already active" for a second one), Deactivate Payload (from any
//! session, as a console clearing a payload a dead client left must be
//! able to), Get Payload Activation Status and Instance Info, the SOL configuration
//! parameters a console reads, and the SOL packets of the holding session
//! through a [`SolLink`].
//!
//! The host behind the serial line is the endpoint owner's: it writes the
//! host's output with [`Endpoint::sol_write`], reads keystrokes with
//! [`Endpoint::sol_read`], sends [`Endpoint::poll_sol_transmit`]'s
//! datagrams to the console, and hears of activations and breaks through
//! [`Endpoint::poll_sol_activity`].
//!
//! Never does: take a SOL packet from a session that does not hold the
//! payload, or one that failed its MAC or window; outlive the holding
//! session; deliver a re-sent keystroke twice.

use std::time::{Duration, Instant};

use super::{Active, AppCommand, Endpoint, Outgoing, Stage, LAN_CHANNEL};
use crate::ipmi::cmd::registry::{id, CommandId};
use crate::ipmi::cmd::sol::{
    activate_cc, deactivate_cc, param, ActivatePayload, ActivatedPayload, PayloadActivationStatus,
    PayloadInstanceInfo, SolRetry, PAYLOAD_TYPE_SOL,
};
use crate::ipmi::crypto::integrity::{open, seal};
use crate::ipmi::crypto::ConfidentialityAlgorithm;
use crate::ipmi::session::console::SessionRng;
use crate::ipmi::session::sol::{LinkConfig, LinkStats, SolLink};
use crate::ipmi::wire::message::{CompletionCode, Request};
use crate::ipmi::wire::session::{PayloadKind, RmcpPlusPacket};
use crate::ipmi::wire::sol::{Control, SolPacket};

/// Activity records kept for the owner, at most.
pub const MAX_EVENTS: usize = 64;
/// Revision byte of SOL configuration answers.
const PARAM_REVISION: u8 = 0x11;

/// How the endpoint's SOL payload behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolSettings {
    /// The UDP port named in the Activate answer: the port the endpoint
    /// listens on (consoles refuse any other).
    pub port: u16,
    /// Largest SOL payload taken from a console (header included).
    pub inbound_size: u16,
    /// Largest SOL payload sent (header included).
    pub outbound_size: u16,
    /// Retry count and interval, also reported as parameter 4.
    pub retry: SolRetry,
    /// Host output waiting to be sent, at most.
    pub send_capacity: usize,
    /// Keystrokes waiting for the host, at most.
    pub receive_capacity: usize,
    /// When set, an Activate Payload that passes the endpoint's own checks
    /// goes to the owner as a [`Received::Command`](super::Received): the
    /// owner answers it with [`Endpoint::sol_accept`] or refuses it with
    /// [`Endpoint::answer`]. A front end (the bridge) first asks whoever
    /// holds the real console.
    pub owner_decides: bool,
}

impl SolSettings {
    /// 255-byte payloads, 7 retries 500 ms apart, 64 KiB of host output.
    pub fn new(port: u16) -> SolSettings {
        SolSettings {
            port,
            inbound_size: 255,
            outbound_size: 255,
            retry: SolRetry {
                count: 7,
                interval: Duration::from_millis(500),
            },
            send_capacity: 64 * 1024,
            receive_capacity: 4096,
            owner_decides: false,
        }
    }
}

/// What happened to the payload, for the endpoint's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolActivity {
    /// A session activated the payload.
    Activated {
        /// The BMC session ID that holds it.
        session: u32,
    },
    /// The console asked for a break on the serial line.
    Break,
    /// The payload is no longer active.
    Deactivated,
}

/// The active payload.
pub(super) struct Payload {
    pub(super) owner: u32,
    console_sid: u32,
    pub(super) link: SolLink,
}

/// True for the commands the endpoint answers itself when SOL is on.
pub(super) fn is_sol_command(cmd: CommandId) -> bool {
    matches!(
        cmd,
        id::ACTIVATE_PAYLOAD
            | id::DEACTIVATE_PAYLOAD
            | id::GET_PAYLOAD_ACTIVATION_STATUS
            | id::GET_PAYLOAD_INSTANCE_INFO
            | id::GET_SOL_CONFIGURATION_PARAMETERS
    )
}

impl Endpoint {
    /// The BMC session ID holding the SOL payload, if any.
    pub fn sol_owner(&self) -> Option<u32> {
        self.sol.as_ref().map(|p| p.owner)
    }

    /// Queues the host's output for the console; returns how much fit
    /// (nothing while no session holds the payload: the line is not
    /// buffered for a console that is not there).
    pub fn sol_write(&mut self, now: Instant, bytes: &[u8]) -> usize {
        let Some(p) = self.sol.as_mut() else {
            return 0;
        };
        let n = p.link.write(bytes);
        self.sol_flush(now);
        n
    }

    /// Host output [`sol_write`](Self::sol_write) takes now.
    pub fn sol_room(&self) -> usize {
        self.sol.as_ref().map_or(0, |p| p.link.room())
    }

    /// Keystrokes for the host, in order, each once.
    pub fn sol_read(&mut self) -> Vec<u8> {
        self.sol.as_mut().map(|p| p.link.read()).unwrap_or_default()
    }

    /// Link counters of the active payload.
    pub fn sol_link_stats(&self) -> Option<LinkStats> {
        self.sol.as_ref().map(|p| p.link.stats())
    }

    /// The next SOL datagram for the console holding the payload.
    pub fn poll_sol_transmit(&mut self) -> Option<Outgoing> {
        self.sol_out.pop_front()
    }

    /// The next activity record.
    pub fn poll_sol_activity(&mut self) -> Option<SolActivity> {
        self.sol_events.pop_front()
    }

    /// Deactivates the payload from the BMC's side (SOL turned off, the
    /// console taken elsewhere): the holding console gets a last packet
    /// saying SOL is inactive.
    pub fn sol_deactivate(&mut self) {
        let Some(mut p) = self.sol.take() else {
            return;
        };
        p.link.discard_unsent();
        let last = p.link.final_packet(Control(Control::SOL_INACTIVE));
        self.seal_for(&p, &last);
        self.sol_activity(SolActivity::Deactivated);
    }

    // === inside the endpoint ===

    /// Drops the payload when its session is gone.
    pub(super) fn sol_owner_gone(&mut self) {
        let gone = self
            .sol
            .as_ref()
            .is_some_and(|p| !self.sessions.contains_key(&p.owner));
        if gone {
            self.sol = None;
            self.sol_activity(SolActivity::Deactivated);
        }
    }

    /// Re-sends or gives up host output, as due.
    pub(super) fn sol_timeout(&mut self, now: Instant) {
        if let Some(p) = self.sol.as_mut() {
            // A console that never acknowledges loses that output, as on
            // a real BMC; the link goes on with the next packet.
            let _ = p.link.handle_timeout(now);
        }
        self.sol_flush(now);
    }

    /// Seals whatever the link has to send.
    pub(super) fn sol_flush(&mut self, now: Instant) {
        let Some(p) = self.sol.as_mut() else {
            return;
        };
        let Some(Stage::Active(a)) = self.sessions.get_mut(&p.owner).map(|s| &mut s.stage) else {
            return;
        };
        while let Some(packet) = p.link.poll_packet(now) {
            let out = seal_sol(&mut *self.rng, a, p.console_sid, &packet);
            self.sol_out.push_back(out);
        }
    }

    /// One SOL datagram from a console.
    pub(super) fn sol_datagram(&mut self, now: Instant, pkt: &RmcpPlusPacket<'_>) {
        let bmc_sid = pkt.header.session_id;
        let Some(session) = self.sessions.get_mut(&bmc_sid) else {
            self.stats.unknown_session += 1;
            return;
        };
        let Stage::Active(a) = &mut session.stage else {
            self.stats.unknown_session += 1;
            return;
        };
        let Ok(verified) = open(&a.keys, pkt) else {
            self.stats.bad_integrity += 1;
            return;
        };
        if a.window.accept(verified.header().seq).is_err() {
            self.stats.out_of_window += 1;
            return;
        }
        session.last_activity = now;
        a.rakp_replay = None;
        let holder = self.sol.as_mut().filter(|p| p.owner == bmc_sid);
        let (Some(p), Ok(packet)) = (holder, SolPacket::parse(verified.plaintext())) else {
            self.stats.sol_refused += 1;
            return;
        };
        self.stats.sol_packets += 1;
        let arrived = p.link.receive(now, &packet);
        let fresh = packet.seq != 0 && !arrived.duplicate;
        if fresh && packet.control.has(Control::FLUSH_INBOUND) {
            p.link.discard_unsent();
        }
        if fresh && packet.control.has(Control::GENERATE_BREAK) {
            self.sol_activity(SolActivity::Break);
        }
        self.sol_flush(now);
    }

    /// The payload commands, in `a` (the session asking, out of the table).
    pub(super) fn sol_command(
        &mut self,
        bmc_sid: u32,
        console_sid: u32,
        a: &mut Active,
        req: &Request,
    ) -> (CompletionCode, Vec<u8>) {
        let Some(cfg) = self.cfg.sol else {
            return (CompletionCode::INVALID_COMMAND, vec![]);
        };
        match CommandId::new(req.netfn, req.cmd) {
            id::ACTIVATE_PAYLOAD => self.sol_activate(&cfg, bmc_sid, console_sid, a, &req.data),
            id::DEACTIVATE_PAYLOAD => self.sol_deactivate_command(bmc_sid, &req.data),
            id::GET_PAYLOAD_ACTIVATION_STATUS => match req.data.first() {
                Some(&PAYLOAD_TYPE_SOL) => {
                    let st = PayloadActivationStatus {
                        capacity: 1,
                        active: u16::from(self.sol.is_some()),
                    };
                    (CompletionCode::OK, st.to_bytes())
                }
                Some(_) => (CompletionCode::INVALID_DATA_FIELD, vec![]),
                None => (CompletionCode::REQUEST_LENGTH_INVALID, vec![]),
            },
            id::GET_PAYLOAD_INSTANCE_INFO => match req.data[..] {
                [PAYLOAD_TYPE_SOL, 1, ..] => {
                    let info = PayloadInstanceInfo {
                        session_id: self.sol.as_ref().map_or(0, |p| p.owner),
                        // Serial port 1.
                        specific: [1, 0, 0, 0, 0, 0, 0, 0],
                    };
                    (CompletionCode::OK, info.to_bytes())
                }
                [_, _, ..] => (CompletionCode::INVALID_DATA_FIELD, vec![]),
                _ => (CompletionCode::REQUEST_LENGTH_INVALID, vec![]),
            },
            _ => sol_parameter(&cfg, &req.data),
        }
    }

    /// Why an Activate Payload request must be refused, or `None`.
    pub(super) fn activate_refusal(
        &self,
        a: &Active,
        d: &[u8],
    ) -> Option<(CompletionCode, Vec<u8>)> {
        let Ok((kind, act)) = ActivatePayload::parse_request(d) else {
            return Some((CompletionCode::REQUEST_LENGTH_INVALID, vec![]));
        };
        if kind != PAYLOAD_TYPE_SOL || act.instance != 1 {
            return Some((CompletionCode::INVALID_DATA_FIELD, vec![]));
        }
        if self.sol.is_some() {
            return Some((CompletionCode(activate_cc::ALREADY_ACTIVE), vec![]));
        }
        // SOL packets are sealed like the session's other payloads, so
        // the request must ask for what the suite does.
        let suite_encrypts = a.keys.suite.confidentiality() != ConfidentialityAlgorithm::None;
        match (suite_encrypts, act.encrypt) {
            (true, false) => Some((CompletionCode(activate_cc::NEEDS_ENCRYPTION), vec![])),
            (false, true) => Some((CompletionCode(activate_cc::CANNOT_ENCRYPT), vec![])),
            _ => None,
        }
    }

    fn sol_activate(
        &mut self,
        cfg: &SolSettings,
        bmc_sid: u32,
        console_sid: u32,
        a: &Active,
        d: &[u8],
    ) -> (CompletionCode, Vec<u8>) {
        match self.activate_refusal(a, d) {
            Some(refusal) => refusal,
            None => self.activate(cfg, bmc_sid, console_sid),
        }
    }

    /// Activates the payload for `bmc_sid` (the checks passed).
    fn activate(
        &mut self,
        cfg: &SolSettings,
        bmc_sid: u32,
        console_sid: u32,
    ) -> (CompletionCode, Vec<u8>) {
        let chunk = |size: u16| usize::from(size).saturating_sub(4).max(1);
        let link = SolLink::new(LinkConfig {
            retry_interval: cfg.retry.interval.max(Duration::from_millis(10)),
            retries: u32::from(cfg.retry.count),
            max_chunk: chunk(cfg.outbound_size),
            send_capacity: cfg.send_capacity,
            receive_capacity: cfg.receive_capacity,
            nack_bits: Control::NACK | Control::TRANSFER_UNAVAILABLE,
        });
        self.sol = Some(Payload {
            owner: bmc_sid,
            console_sid,
            link,
        });
        self.stats.sol_activations += 1;
        self.sol_activity(SolActivity::Activated { session: bmc_sid });
        let answer = ActivatedPayload {
            aux: [0; 4],
            inbound_size: cfg.inbound_size,
            outbound_size: cfg.outbound_size,
            port: cfg.port,
            vlan: None,
        };
        (CompletionCode::OK, answer.to_bytes())
    }

    /// Activates the payload an owner-decided Activate Payload asked for
    /// (see [`SolSettings::owner_decides`]) and seals the answer: `None`
    /// when the session ended meanwhile. Checked again, so a payload
    /// another session activated in between is refused as already active.
    pub fn sol_accept(&mut self, cmd: AppCommand) -> Option<Outgoing> {
        let cfg = self.cfg.sol?;
        let session = self.sessions.get(&cmd.bmc_sid)?;
        let Stage::Active(a) = &session.stage else {
            return None;
        };
        if session.console_sid != cmd.console_sid {
            return None;
        }
        let (cc, data) = match self.activate_refusal(a, &cmd.request.data) {
            Some(refusal) => refusal,
            None => self.activate(&cfg, cmd.bmc_sid, cmd.console_sid),
        };
        self.answer(cmd, cc, data)
    }

    fn sol_deactivate_command(&mut self, bmc_sid: u32, d: &[u8]) -> (CompletionCode, Vec<u8>) {
        let [kind, instance, ..] = d else {
            return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
        };
        if *kind & 0x3F != PAYLOAD_TYPE_SOL || *instance & 0x0F != 1 {
            return (CompletionCode::INVALID_DATA_FIELD, vec![]);
        }
        match self.sol.as_ref().map(|p| p.owner) {
            None => (CompletionCode(deactivate_cc::ALREADY_INACTIVE), vec![]),
            Some(owner) if owner == bmc_sid => {
                self.sol = None;
                self.sol_activity(SolActivity::Deactivated);
                (CompletionCode::OK, vec![])
            }
            // Another session's payload: its console is told.
            Some(_) => {
                self.sol_deactivate();
                (CompletionCode::OK, vec![])
            }
        }
    }

    fn seal_for(&mut self, p: &Payload, packet: &SolPacket) {
        if let Some(Stage::Active(a)) = self.sessions.get_mut(&p.owner).map(|s| &mut s.stage) {
            let out = seal_sol(&mut *self.rng, a, p.console_sid, packet);
            self.sol_out.push_back(out);
        }
    }

    fn sol_activity(&mut self, a: SolActivity) {
        if self.sol_events.len() < MAX_EVENTS {
            self.sol_events.push_back(a);
        }
    }
}

/// Get SOL Configuration Parameters for this channel: what ipmitool's
/// `sol info` reads.
fn sol_parameter(cfg: &SolSettings, d: &[u8]) -> (CompletionCode, Vec<u8>) {
    let [chan, selector, ..] = d else {
        return (CompletionCode::REQUEST_LENGTH_INVALID, vec![]);
    };
    if !matches!(chan & 0x0F, 0x0E | LAN_CHANNEL) {
        return (CompletionCode::INVALID_DATA_FIELD, vec![]);
    }
    if chan & 0x80 != 0 {
        return (CompletionCode::OK, vec![PARAM_REVISION]);
    }
    let data: Vec<u8> = match *selector {
        param::SET_IN_PROGRESS => vec![0],
        param::ENABLE => vec![1],
        // No forced encryption or authentication; USER may activate.
        param::AUTHENTICATION => vec![0x02],
        // 60 ms accumulate interval, 96-character send threshold.
        param::ACCUMULATE => vec![12, 96],
        param::RETRY => cfg.retry.to_bytes().to_vec(),
        // 115.2 kbps.
        param::NV_BIT_RATE | param::V_BIT_RATE => vec![0x0A],
        param::CHANNEL => vec![LAN_CHANNEL],
        param::PORT => cfg.port.to_le_bytes().to_vec(),
        // 0x80: parameter not supported.
        _ => return (CompletionCode(0x80), vec![]),
    };
    let mut out = vec![PARAM_REVISION];
    out.extend(data);
    (CompletionCode::OK, out)
}

fn seal_sol(
    rng: &mut dyn SessionRng,
    a: &mut Active,
    console_sid: u32,
    packet: &SolPacket,
) -> Outgoing {
    a.out_seq = a.out_seq.wrapping_add(1).max(1);
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let bytes = seal(
        &a.keys,
        PayloadKind::SOL,
        console_sid,
        a.out_seq,
        &packet.to_bytes(),
        &iv,
    );
    Outgoing {
        bytes,
        login_error: false,
    }
}

//! The SOL packet protocol both ends share (IPMI v2.0 §15.9-15.11,
//! reference §8.3): numbering packets 1..=15, one data packet in flight at
//! a time, re-sending it unchanged until it is acknowledged or the retries
//! run out, re-sending only the rest after a partial acceptance, pausing
//! after a NACK, acknowledging the peer's packets (on a data packet when
//! one goes out anyway, else in an ACK-only packet), and recognising a
//! re-sent packet so that its characters are delivered once.
//!
//! [`SolLink`] works on decoded [`SolPacket`]s: sealing, the session and
//! activation belong to its owners (`console::sol` toward a BMC,
//! `bmc::Endpoint` as a BMC). Both queues are bounded: what does not fit
//! is refused (the writer is told how much was taken), and a packet whose
//! characters do not fit in the receive queue is partly accepted, so the
//! peer sends the rest later.
//!
//! Never does: read a clock, deliver a re-sent packet twice, or send a
//! packet that is not an ACK while another is unacknowledged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ipmi::wire::sol::{next_seq, Control, SolPacket};

/// Most characters one SOL packet carries (the accepted count is a byte).
pub const MAX_CHUNK: usize = 255;

/// How one end of a SOL link behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Time a data packet waits for its ACK before it is sent again.
    pub retry_interval: Duration,
    /// Re-sends of one data packet before it counts as lost.
    pub retries: u32,
    /// Characters per data packet (1..=255; the peer's size limit).
    pub max_chunk: usize,
    /// Characters waiting to be sent, at most.
    pub send_capacity: usize,
    /// Characters received and not yet read, at most.
    pub receive_capacity: usize,
    /// Bits set in a packet that NACKs for want of room: NACK, and toward
    /// a console also "transfer unavailable" (that bit means "ring" the
    /// other way).
    pub nack_bits: u8,
}

/// A data packet that went unacknowledged through every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unacknowledged {
    /// Its sequence number.
    pub seq: u8,
    /// Characters it carried, now lost.
    pub chars: usize,
}

/// What arrived in one packet, for the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    /// Its operation or status bits.
    pub control: Control,
    /// Characters taken into the receive queue (0 for a duplicate).
    pub new_chars: usize,
    /// The packet repeated one already received (its ACK is sent again).
    pub duplicate: bool,
    /// It acknowledged the packet in flight.
    pub acked: bool,
}

/// Counters, for the owners' stats. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Data packets sent (first tries).
    pub data_packets: u64,
    /// Data packets sent again after their retry interval.
    pub retransmits: u64,
    /// Packets from the peer that repeated one already received.
    pub duplicates: u64,
    /// NACKs received.
    pub nacks: u64,
    /// ACKs that accepted only part of a packet.
    pub partial_acks: u64,
    /// Characters given up after every retry.
    pub lost_chars: u64,
    /// Characters delivered to the receive queue.
    pub received_chars: u64,
}

#[derive(Debug, Clone)]
struct InFlight {
    packet: SolPacket,
    tries: u32,
    deadline: Instant,
    resend_due: bool,
}

/// An ACK owed to the peer.
#[derive(Debug, Clone, Copy)]
struct OwedAck {
    seq: u8,
    accepted: u8,
    nack: bool,
}

/// One end of a SOL link, on the caller's clock.
#[derive(Debug, Clone)]
pub struct SolLink {
    cfg: LinkConfig,
    outbox: VecDeque<u8>,
    /// One-shot operation or status bits for the next data packet.
    ops: u8,
    in_flight: Option<InFlight>,
    last_seq: u8,
    owed: Option<OwedAck>,
    /// The last packet received with a sequence number, and its ACK.
    last_rx: Option<OwedAck>,
    inbox: VecDeque<u8>,
    paused_until: Option<Instant>,
    stats: LinkStats,
}

impl SolLink {
    /// An idle link.
    pub fn new(cfg: LinkConfig) -> SolLink {
        let cfg = LinkConfig {
            max_chunk: cfg.max_chunk.clamp(1, MAX_CHUNK),
            ..cfg
        };
        SolLink {
            cfg,
            outbox: VecDeque::new(),
            ops: 0,
            in_flight: None,
            last_seq: 0,
            owed: None,
            last_rx: None,
            inbox: VecDeque::new(),
            paused_until: None,
            stats: LinkStats::default(),
        }
    }

    /// Queues characters to send; returns how many fit.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room());
        self.outbox.extend(&bytes[..n]);
        n
    }

    /// Characters [`write`](Self::write) would take now.
    pub fn room(&self) -> usize {
        self.cfg.send_capacity.saturating_sub(self.outbox.len())
    }

    /// Characters queued or in flight.
    pub fn unsent(&self) -> usize {
        self.outbox.len() + self.in_flight.as_ref().map_or(0, |f| f.packet.data.len())
    }

    /// Sets operation (or status) bits on the next data packet, which goes
    /// out even without characters.
    pub fn request_ops(&mut self, bits: u8) {
        self.ops |= bits;
    }

    /// Takes every character received so far, in order.
    pub fn read(&mut self) -> Vec<u8> {
        self.inbox.drain(..).collect()
    }

    /// Drops what waits to be sent (a flush).
    pub fn discard_unsent(&mut self) {
        self.outbox.clear();
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Handles one decoded packet from the peer: its ACK part first, then
    /// its characters.
    pub fn receive(&mut self, now: Instant, p: &SolPacket) -> Arrived {
        let acked = self.take_ack(now, p);
        let mut arrived = Arrived {
            control: p.control,
            new_chars: 0,
            duplicate: false,
            acked,
        };
        if p.seq == 0 {
            return arrived;
        }
        if let Some(last) = self.last_rx.filter(|l| l.seq == p.seq) {
            // The peer did not get our ACK and sent the same packet again
            // (§15.10): acknowledge it again, deliver nothing.
            self.stats.duplicates += 1;
            self.owed = Some(last);
            arrived.duplicate = true;
            return arrived;
        }
        let free = self.cfg.receive_capacity.saturating_sub(self.inbox.len());
        let n = p.data.len().min(free);
        self.inbox.extend(&p.data[..n]);
        self.stats.received_chars += n as u64;
        let ack = OwedAck {
            seq: p.seq,
            accepted: n as u8,
            nack: n < p.data.len(),
        };
        self.last_rx = Some(ack);
        self.owed = Some(ack);
        arrived.new_chars = n;
        arrived
    }

    /// The next packet to send, if any: a re-send, a new data packet
    /// (carrying an owed ACK), or an ACK alone.
    pub fn poll_packet(&mut self, now: Instant) -> Option<SolPacket> {
        if let Some(f) = self.in_flight.as_mut().filter(|f| f.resend_due) {
            f.resend_due = false;
            return Some(f.packet.clone());
        }
        let paused = self.paused_until.is_some_and(|t| now < t);
        if self.in_flight.is_none() && !paused && (!self.outbox.is_empty() || self.ops != 0) {
            return Some(self.new_data_packet(now));
        }
        let owed = self.owed.take()?;
        let control = if owed.nack { self.cfg.nack_bits } else { 0 };
        Some(SolPacket::ack(owed.seq, owed.accepted, Control(control)))
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resend = self.in_flight.as_ref().map(|f| f.deadline);
        match (resend, self.paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends a pause, or re-sends the packet in flight, or gives it up
    /// when its retries ran out, as due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Unacknowledged> {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
        }
        let Some(f) = self.in_flight.as_mut() else {
            return Ok(());
        };
        if now < f.deadline {
            return Ok(());
        }
        if f.tries > self.cfg.retries {
            let lost = Unacknowledged {
                seq: f.packet.seq,
                chars: f.packet.data.len(),
            };
            self.stats.lost_chars += lost.chars as u64;
            self.in_flight = None;
            return Err(lost);
        }
        f.tries += 1;
        f.resend_due = true;
        f.deadline = now + self.cfg.retry_interval;
        self.stats.retransmits += 1;
        Ok(())
    }

    /// A last packet with `control` and no characters, under the next
    /// number and not tracked (nothing waits for its ACK): how a BMC says
    /// SOL ended.
    pub fn final_packet(&mut self, control: Control) -> SolPacket {
        self.last_seq = next_seq(self.last_seq);
        SolPacket {
            seq: self.last_seq,
            ack_seq: 0,
            accepted: 0,
            control,
            data: Vec::new(),
        }
    }

    fn new_data_packet(&mut self, now: Instant) -> SolPacket {
        let n = self.outbox.len().min(self.cfg.max_chunk);
        let data: Vec<u8> = self.outbox.drain(..n).collect();
        self.last_seq = next_seq(self.last_seq);
        let owed = self.owed.take();
        let mut control = std::mem::take(&mut self.ops);
        if owed.is_some_and(|o| o.nack) {
            control |= self.cfg.nack_bits;
        }
        let packet = SolPacket {
            seq: self.last_seq,
            ack_seq: owed.map_or(0, |o| o.seq),
            accepted: owed.map_or(0, |o| o.accepted),
            control: Control(control),
            data,
        };
        self.stats.data_packets += 1;
        self.in_flight = Some(InFlight {
            packet: packet.clone(),
            tries: 1,
            deadline: now + self.cfg.retry_interval,
            resend_due: false,
        });
        packet
    }

    /// Applies the ACK part of `p` to the packet in flight; true when it
    /// answered that packet.
    fn take_ack(&mut self, now: Instant, p: &SolPacket) -> bool {
        let matches = p.ack_seq != 0
            && self
                .in_flight
                .as_ref()
                .is_some_and(|f| f.packet.seq == p.ack_seq);
        if !matches {
            return false;
        }
        let Some(f) = self.in_flight.take() else {
            return false;
        };
        let sent = f.packet.data;
        let accepted = usize::from(p.accepted).min(sent.len());
        let rest = &sent[accepted..];
        // What was not taken goes first in the queue again, as a new
        // packet: the spec's partial ACK.
        for b in rest.iter().rev() {
            self.outbox.push_front(*b);
        }
        if p.control.has(Control::NACK) {
            self.stats.nacks += 1;
            // The peer has no room: wait a retry interval, not a busy loop.
            self.paused_until = Some(now + self.cfg.retry_interval);
        } else if !rest.is_empty() {
            self.stats.partial_acks += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::session::testpeer::t0;

    fn cfg() -> LinkConfig {
        LinkConfig {
            retry_interval: Duration::from_millis(500),
            retries: 2,
            max_chunk: 4,
            send_capacity: 16,
            receive_capacity: 8,
            nack_bits: Control::NACK,
        }
    }

    fn data(seq: u8, d: &[u8]) -> SolPacket {
        SolPacket {
            seq,
            ack_seq: 0,
            accepted: 0,
            control: Control(0),
            data: d.to_vec(),
        }
    }

    #[test]
    fn one_packet_in_flight_chunks_and_acks() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        assert_eq!(l.write(b"hello world"), 11);
        let p1 = l.poll_packet(now).unwrap();
        assert_eq!((p1.seq, p1.data.as_slice()), (1, &b"hell"[..]));
        assert_eq!(l.poll_packet(now), None, "stop and wait");
        let a = l.receive(now, &SolPacket::ack(1, 4, Control(0)));
        assert!(a.acked);
        let p2 = l.poll_packet(now).unwrap();
        assert_eq!((p2.seq, p2.data.as_slice()), (2, &b"o wo"[..]));
        // An ACK for another packet changes nothing.
        assert!(!l.receive(now, &SolPacket::ack(1, 4, Control(0))).acked);
        assert_eq!(l.poll_packet(now), None);
    }

    #[test]
    fn partial_ack_resends_only_the_rest_under_a_new_number() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        l.write(b"abcdef");
        let p1 = l.poll_packet(now).unwrap();
        assert_eq!(p1.data, b"abcd");
        l.receive(now, &SolPacket::ack(1, 1, Control(0)));
        let p2 = l.poll_packet(now).unwrap();
        assert_eq!((p2.seq, p2.data.as_slice()), (2, &b"bcde"[..]));
        assert_eq!(l.stats().partial_acks, 1);
        // An accepted count above what was sent counts as all of it.
        l.receive(now, &SolPacket::ack(2, 200, Control(0)));
        assert_eq!(l.poll_packet(now).unwrap().data, b"f");
    }

    #[test]
    fn nack_pauses_for_a_retry_interval_then_sends_the_rest() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        l.write(b"abc");
        l.poll_packet(now).unwrap();
        l.receive(now, &SolPacket::ack(1, 0, Control(Control::NACK | 0x20)));
        assert_eq!(l.poll_packet(now), None, "paused");
        let at = l.poll_timeout().unwrap();
        assert_eq!(at, now + Duration::from_millis(500));
        l.handle_timeout(at).unwrap();
        let p = l.poll_packet(at).unwrap();
        assert_eq!((p.seq, p.data.as_slice()), (2, &b"abc"[..]));
    }

    #[test]
    fn retransmits_the_identical_packet_then_gives_up() {
        let mut now = t0();
        let mut l = SolLink::new(cfg());
        l.write(b"ab");
        let first = l.poll_packet(now).unwrap();
        for _ in 0..2 {
            now = l.poll_timeout().unwrap();
            l.handle_timeout(now).unwrap();
            assert_eq!(l.poll_packet(now).unwrap(), first);
        }
        now = l.poll_timeout().unwrap();
        assert_eq!(
            l.handle_timeout(now),
            Err(Unacknowledged { seq: 1, chars: 2 })
        );
        assert_eq!(l.stats().retransmits, 2);
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn received_characters_are_acked_once_and_delivered_once() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        let a = l.receive(now, &data(3, b"xyz"));
        assert_eq!(a.new_chars, 3);
        assert_eq!(l.poll_packet(now), Some(SolPacket::ack(3, 3, Control(0))));
        // The peer missed our ACK and sent it again: same ACK, no data.
        let again = l.receive(now, &data(3, b"xyz"));
        assert!(again.duplicate);
        assert_eq!(l.poll_packet(now), Some(SolPacket::ack(3, 3, Control(0))));
        assert_eq!(l.read(), b"xyz");
        assert_eq!(l.stats().duplicates, 1);
    }

    #[test]
    fn the_ack_rides_on_a_data_packet_when_one_goes_out() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        l.receive(now, &data(5, b"in"));
        l.write(b"out");
        let p = l.poll_packet(now).unwrap();
        assert_eq!((p.seq, p.ack_seq, p.accepted), (1, 5, 2));
        assert_eq!(l.poll_packet(now), None, "nothing owed any more");
    }

    #[test]
    fn a_full_receive_queue_accepts_part_and_nacks() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        l.receive(now, &data(1, b"12345"));
        l.poll_packet(now);
        let a = l.receive(now, &data(2, b"6789A"));
        assert_eq!(a.new_chars, 3);
        let ack = l.poll_packet(now).unwrap();
        assert_eq!((ack.ack_seq, ack.accepted), (2, 3));
        assert!(ack.control.has(Control::NACK));
        assert_eq!(l.read(), b"12345678");
    }

    #[test]
    fn bounded_send_queue_and_operation_packets() {
        let now = t0();
        let mut l = SolLink::new(cfg());
        assert_eq!(l.write(&[b'a'; 20]), 16);
        assert_eq!(l.write(b"b"), 0);
        l.discard_unsent();
        l.request_ops(Control::GENERATE_BREAK);
        let p = l.poll_packet(now).unwrap();
        assert_eq!((p.seq, p.control.0, p.data.len()), (1, 0x10, 0));
        l.receive(now, &SolPacket::ack(1, 0, Control(0)));
        assert_eq!(l.poll_packet(now), None, "a break alone is acked in full");
    }
}

//! The SOL packet (IPMI v2.0 §15.9, reference §8.2): the payload of an RMCP+
//! packet of payload type 1, after decryption. Four header bytes (packet
//! sequence number, acknowledged sequence number, accepted character count,
//! operation/status bits) and then the characters.
//!
//! The same layout goes both ways; only the meaning of the operation/status
//! byte differs, so [`Control`] names its bits for each direction. This
//! module frames; the acknowledgement rules live in `session::sol`.

use super::{need, WireError};

/// Length of the SOL header before the character data.
pub const SOL_HEADER_LEN: usize = 4;
/// The highest packet sequence number; numbers run 1..=15 and 0 marks a
/// packet that carries no data (an ACK only).
pub const MAX_SOL_SEQ: u8 = 15;

mod field {
    pub const SEQ: usize = 0;
    pub const ACK_SEQ: usize = 1;
    pub const ACCEPTED: usize = 2;
    pub const CONTROL: usize = 3;
}

/// Byte 3 of a SOL packet: operation bits toward the BMC, status bits
/// toward the console. An open set: bits we do not name survive a round
/// trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Control(pub u8);

impl Control {
    /// Both ways: this packet NACKs the one named in the ACK field.
    pub const NACK: u8 = 0x40;
    /// Console → BMC: assert RI (ring indicator).
    pub const RING: u8 = 0x20;
    /// Console → BMC: generate a break on the host's serial line.
    pub const GENERATE_BREAK: u8 = 0x10;
    /// Console → BMC: deassert CTS toward the host (pause it).
    pub const CTS_PAUSE: u8 = 0x08;
    /// Console → BMC: drop DCD/DSR.
    pub const DROP_DCD_DSR: u8 = 0x04;
    /// Console → BMC: flush the BMC → console buffer.
    pub const FLUSH_INBOUND: u8 = 0x02;
    /// Console → BMC: flush the console → host buffer.
    pub const FLUSH_OUTBOUND: u8 = 0x01;
    /// BMC → console: characters cannot be taken now (with NACK: try later).
    pub const TRANSFER_UNAVAILABLE: u8 = 0x20;
    /// BMC → console: the BMC is deactivating SOL (another session took
    /// it, or SOL was turned off).
    pub const SOL_INACTIVE: u8 = 0x10;
    /// BMC → console: characters from the host were lost (overrun).
    pub const OVERRUN: u8 = 0x08;
    /// BMC → console: a break was detected on the host's serial line.
    pub const BREAK_DETECTED: u8 = 0x04;

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

/// A decoded SOL packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolPacket {
    /// 1..=15 for a packet that carries characters or an operation; 0 for
    /// an ACK-only packet, which is never acknowledged or re-sent.
    pub seq: u8,
    /// The packet this one acknowledges (1..=15), or 0 for none.
    pub ack_seq: u8,
    /// How many characters of the acknowledged packet were accepted.
    pub accepted: u8,
    /// Operation (console → BMC) or status (BMC → console) bits.
    pub control: Control,
    /// The characters.
    pub data: Vec<u8>,
}

impl SolPacket {
    /// An ACK-only packet for `ack_seq`.
    pub fn ack(ack_seq: u8, accepted: u8, control: Control) -> SolPacket {
        SolPacket {
            seq: 0,
            ack_seq,
            accepted,
            control,
            data: Vec::new(),
        }
    }

    /// Decodes a decrypted SOL payload. Bits 7:4 of the two sequence bytes
    /// are reserved and ignored (some BMCs leave junk there); an ACK-only
    /// packet that carries characters is refused, because nobody would
    /// acknowledge them.
    pub fn parse(b: &[u8]) -> Result<SolPacket, WireError> {
        need(b, SOL_HEADER_LEN, "SOL packet header")?;
        let seq = b[field::SEQ] & 0x0F;
        let data = b[SOL_HEADER_LEN..].to_vec();
        if seq == 0 && !data.is_empty() {
            return Err(WireError::BadField {
                field: "SOL packet sequence number (0 with character data)",
                value: 0,
            });
        }
        if data.len() > usize::from(u8::MAX) {
            // The accepted-count field is one byte: a longer packet could
            // never be acknowledged in full.
            return Err(WireError::BadLength {
                what: "SOL character data",
                declared: data.len(),
                available: usize::from(u8::MAX),
            });
        }
        Ok(SolPacket {
            seq,
            ack_seq: b[field::ACK_SEQ] & 0x0F,
            accepted: b[field::ACCEPTED],
            control: Control(b[field::CONTROL]),
            data,
        })
    }

    /// Bytes [`emit`](Self::emit) appends.
    pub fn buffer_len(&self) -> usize {
        SOL_HEADER_LEN + self.data.len()
    }

    /// Appends the packet. Sequence numbers are masked to their 4 bits.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.seq & 0x0F);
        out.push(self.ack_seq & 0x0F);
        out.push(self.accepted);
        out.push(self.control.0);
        out.extend_from_slice(&self.data);
    }

    /// The packet as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }
}

/// The next packet sequence number after `seq`: 1, 2, .., 15, 1, ..
pub fn next_seq(seq: u8) -> u8 {
    if seq >= MAX_SOL_SEQ {
        1
    } else {
        seq + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::all_truncations_fail;

    #[test]
    fn console_data_packet_from_the_spec_layout() {
        // §15.9: sequence 1, no ACK, two characters "ls" toward the BMC.
        let bytes = [0x01, 0x00, 0x00, 0x00, b'l', b's'];
        let p = SolPacket::parse(&bytes).unwrap();
        assert_eq!((p.seq, p.ack_seq, p.accepted), (1, 0, 0));
        assert_eq!(p.control, Control(0));
        assert_eq!(p.data, b"ls");
        assert_eq!(p.to_bytes(), bytes);
        all_truncations_fail!(&bytes[..4], SolPacket::parse);
    }

    #[test]
    fn bmc_packet_acks_and_carries_data_at_once() {
        // Sequence 3 with the echo, acknowledging the console's packet 1
        // in full (two characters accepted).
        let bytes = [0x03, 0x01, 0x02, 0x00, b'l', b's'];
        let p = SolPacket::parse(&bytes).unwrap();
        assert_eq!((p.seq, p.ack_seq, p.accepted), (3, 1, 2));
        assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn ack_only_and_nack_with_transfer_unavailable() {
        let ack = SolPacket::parse(&[0x00, 0x05, 0x1F, 0x00]).unwrap();
        assert_eq!(ack, SolPacket::ack(5, 31, Control(0)));
        // A NACK of packet 2 with nothing accepted: host not ready.
        let nack = SolPacket::parse(&[0x00, 0x02, 0x00, 0x60]).unwrap();
        assert!(nack.control.has(Control::NACK));
        assert!(nack.control.has(Control::TRANSFER_UNAVAILABLE));
        assert!(!nack.control.has(Control::SOL_INACTIVE));
    }

    #[test]
    fn operation_and_status_bits_are_where_the_spec_puts_them() {
        // Console: a break alone is a packet with a sequence and no data.
        let brk = SolPacket {
            seq: 4,
            ack_seq: 0,
            accepted: 0,
            control: Control(Control::GENERATE_BREAK),
            data: vec![],
        };
        assert_eq!(brk.to_bytes(), [0x04, 0x00, 0x00, 0x10]);
        // BMC: SOL deactivating (bit 4), break detected (bit 2), overrun (bit 3).
        let st = SolPacket::parse(&[0x07, 0x00, 0x00, 0x1C]).unwrap();
        assert!(st.control.has(Control::SOL_INACTIVE));
        assert!(st.control.has(Control::OVERRUN));
        assert!(st.control.has(Control::BREAK_DETECTED));
        assert_eq!(
            Control::FLUSH_INBOUND | Control::FLUSH_OUTBOUND | Control::DROP_DCD_DSR,
            0x07
        );
        assert_eq!(Control::CTS_PAUSE | Control::RING, 0x28);
    }

    #[test]
    fn reserved_bits_are_ignored_and_bad_packets_refused() {
        let p = SolPacket::parse(&[0xF2, 0xA1, 0x00, 0x00, b'x']).unwrap();
        assert_eq!((p.seq, p.ack_seq), (2, 1));
        assert!(matches!(
            SolPacket::parse(&[0x00, 0x01, 0x01, 0x00, b'x']),
            Err(WireError::BadField { .. })
        ));
        let mut long = vec![1, 0, 0, 0];
        long.extend(std::iter::repeat_n(b'a', 256));
        assert!(matches!(
            SolPacket::parse(&long),
            Err(WireError::BadLength { .. })
        ));
        long.pop();
        assert_eq!(SolPacket::parse(&long).unwrap().data.len(), 255);
    }

    #[test]
    fn sequence_numbers_run_1_to_15_and_skip_0() {
        assert_eq!(next_seq(0), 1);
        assert_eq!(next_seq(14), 15);
        assert_eq!(next_seq(15), 1);
    }
}

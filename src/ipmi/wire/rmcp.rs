//! RMCP header (reference §1.2): the 4 bytes in front of every datagram.

use super::{take, WireError};

/// Length of the RMCP header.
pub const HEADER_LEN: usize = 4;
/// RMCP version 1.0, the only one in use.
pub const VERSION_1_0: u8 = 0x06;
/// RMCP sequence number meaning "no RMCP ACK wanted"; IPMI always uses it.
pub const SEQ_NO_ACK: u8 = 0xFF;

/// RMCP message class (bits 4:0 of byte 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmcpClass {
    /// ASF (presence ping/pong).
    Asf,
    /// IPMI (1.5 sessions and RMCP+).
    Ipmi,
    /// OEM-defined.
    Oem,
}

impl RmcpClass {
    fn code(self) -> u8 {
        match self {
            RmcpClass::Asf => 6,
            RmcpClass::Ipmi => 7,
            RmcpClass::Oem => 8,
        }
    }
}

/// Parsed RMCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmcpHeader {
    /// RMCP sequence number (0xFF for IPMI).
    pub seq: u8,
    /// True when this message is an RMCP ACK (class bit 7).
    pub is_ack: bool,
    /// Message class.
    pub class: RmcpClass,
}

impl RmcpHeader {
    /// The header of every IPMI and RMCP+ datagram: `06 00 FF 07`.
    pub const IPMI: RmcpHeader = RmcpHeader {
        seq: SEQ_NO_ACK,
        is_ack: false,
        class: RmcpClass::Ipmi,
    };
    /// The header of ASF messages: `06 00 FF 06`.
    pub const ASF: RmcpHeader = RmcpHeader {
        seq: SEQ_NO_ACK,
        is_ack: false,
        class: RmcpClass::Asf,
    };

    /// Parses the first 4 bytes of a datagram and returns the rest.
    pub fn parse(bytes: &[u8]) -> Result<(RmcpHeader, &[u8]), WireError> {
        let h = take(bytes, 0..HEADER_LEN, "RMCP header")?;
        if h[0] != VERSION_1_0 {
            return Err(WireError::BadField {
                field: "RMCP version",
                value: h[0].into(),
            });
        }
        let class = match h[3] & 0x1F {
            6 => RmcpClass::Asf,
            7 => RmcpClass::Ipmi,
            8 => RmcpClass::Oem,
            other => {
                return Err(WireError::BadField {
                    field: "RMCP class",
                    value: other.into(),
                })
            }
        };
        Ok((
            RmcpHeader {
                seq: h[2],
                is_ack: h[3] & 0x80 != 0,
                class,
            },
            &bytes[HEADER_LEN..],
        ))
    }

    /// Appends the 4 header bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[
            VERSION_1_0,
            0,
            self.seq,
            self.class.code() | if self.is_ack { 0x80 } else { 0 },
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmi_header_bytes() {
        let mut out = Vec::new();
        RmcpHeader::IPMI.emit(&mut out);
        assert_eq!(out, [0x06, 0x00, 0xFF, 0x07]);
        let (h, rest) = RmcpHeader::parse(&[0x06, 0x00, 0xFF, 0x87, 1]).unwrap();
        assert!(h.is_ack);
        assert_eq!(h.class, RmcpClass::Ipmi);
        assert_eq!(rest, [1]);
    }

    #[test]
    fn refuses_other_versions_and_classes() {
        assert!(matches!(
            RmcpHeader::parse(&[0x07, 0, 0xFF, 7]),
            Err(WireError::BadField {
                field: "RMCP version",
                ..
            })
        ));
        assert!(matches!(
            RmcpHeader::parse(&[0x06, 0, 0xFF, 9]),
            Err(WireError::BadField {
                field: "RMCP class",
                ..
            })
        ));
        crate::ipmi::wire::all_truncations_fail!(&[6, 0, 0xFF, 7], RmcpHeader::parse);
    }
}

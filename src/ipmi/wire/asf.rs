//! ASF presence ping / pong (reference §1.3), carried after an RMCP header of
//! class 6. ASF fields are big-endian, unlike IPMI's.

use super::{need, WireError};

/// IANA enterprise number of ASF (4542).
pub const ASF_IANA: u32 = 4542;
const TYPE_PING: u8 = 0x80;
const TYPE_PONG: u8 = 0x40;
const HEADER_LEN: usize = 8;
const PONG_DATA_LEN: usize = 16;

/// An ASF message we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsfMessage {
    /// Presence Ping with its message tag.
    Ping {
        /// Echoed in the pong.
        tag: u8,
    },
    /// Presence Pong.
    Pong {
        /// Tag of the ping being answered.
        tag: u8,
        /// IANA number in the pong data (ASF unless OEM).
        iana: u32,
        /// Supported-entities byte: bit 7 = IPMI supported.
        entities: u8,
        /// Supported-interactions byte.
        interactions: u8,
    },
}

impl AsfMessage {
    /// A pong saying "IPMI supported, ASF 1.0" (what a BMC answers).
    pub fn pong_for(tag: u8) -> AsfMessage {
        AsfMessage::Pong {
            tag,
            iana: ASF_IANA,
            entities: 0x81,
            interactions: 0,
        }
    }

    /// True when a pong says the device speaks IPMI.
    pub fn supports_ipmi(&self) -> bool {
        matches!(self, AsfMessage::Pong { entities, .. } if entities & 0x80 != 0)
    }

    /// Parses the bytes after the RMCP header.
    pub fn parse(b: &[u8]) -> Result<AsfMessage, WireError> {
        need(b, HEADER_LEN, "ASF header")?;
        let iana = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if iana != ASF_IANA {
            return Err(WireError::BadField {
                field: "ASF IANA",
                value: iana,
            });
        }
        let (kind, tag, len) = (b[4], b[5], usize::from(b[7]));
        need(b, HEADER_LEN + len, "ASF data")?;
        match kind {
            TYPE_PING => Ok(AsfMessage::Ping { tag }),
            TYPE_PONG => {
                if len < PONG_DATA_LEN {
                    return Err(WireError::BadLength {
                        what: "ASF pong",
                        declared: len,
                        available: PONG_DATA_LEN,
                    });
                }
                let d = &b[HEADER_LEN..];
                Ok(AsfMessage::Pong {
                    tag,
                    iana: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                    entities: d[8],
                    interactions: d[9],
                })
            }
            other => Err(WireError::BadField {
                field: "ASF message type",
                value: other.into(),
            }),
        }
    }

    /// Appends the ASF header and data (not the RMCP header).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ASF_IANA.to_be_bytes());
        match *self {
            AsfMessage::Ping { tag } => out.extend_from_slice(&[TYPE_PING, tag, 0, 0]),
            AsfMessage::Pong {
                tag,
                iana,
                entities,
                interactions,
            } => {
                out.extend_from_slice(&[TYPE_PONG, tag, 0, PONG_DATA_LEN as u8]);
                out.extend_from_slice(&iana.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0, entities, interactions, 0, 0, 0, 0, 0, 0]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_bytes_match_the_reference() {
        let mut out = Vec::new();
        AsfMessage::Ping { tag: 7 }.emit(&mut out);
        assert_eq!(out, [0x00, 0x00, 0x11, 0xBE, 0x80, 0x07, 0x00, 0x00]);
        assert_eq!(
            AsfMessage::parse(&out).unwrap(),
            AsfMessage::Ping { tag: 7 }
        );
    }

    #[test]
    fn pong_round_trip_and_truncations() {
        let mut out = Vec::new();
        let pong = AsfMessage::pong_for(3);
        pong.emit(&mut out);
        assert_eq!(out.len(), 24);
        assert_eq!(out[16], 0x81);
        let back = AsfMessage::parse(&out).unwrap();
        assert_eq!(back, pong);
        assert!(back.supports_ipmi());
        crate::ipmi::wire::all_truncations_fail!(&out, AsfMessage::parse);
    }
}

//! Payload and SOL commands (IPMI v2.0 §24 and §26, reference §6.9 and
//! §8.1): Activate Payload, Deactivate Payload, Get Payload Activation
//! Status, and the SOL configuration parameters a console reads (retry
//! count and interval). Requests are built here and answers decoded; both
//! sides of the SOL engine use them, so the bytes are described once.
//!
//! Decoders take peer bytes and never panic.

use std::time::Duration;

use super::registry::id;
use super::{need, Command, RawRequest};
use crate::ipmi::wire::{le16, WireError};

/// The payload type of Serial over LAN.
pub const PAYLOAD_TYPE_SOL: u8 = 0x01;
/// "This channel" in a channel byte.
pub const CURRENT_CHANNEL: u8 = 0x0E;
/// The VLAN field of an Activate Payload answer when no VLAN is used.
pub const NO_VLAN: u16 = 0xFFFF;

/// Completion codes specific to Activate Payload (§24.1).
pub mod activate_cc {
    /// The payload is already active on another session.
    pub const ALREADY_ACTIVE: u8 = 0x80;
    /// The payload type is disabled.
    pub const DISABLED: u8 = 0x81;
    /// The payload activation limit is reached.
    pub const LIMIT_REACHED: u8 = 0x82;
    /// The payload cannot be activated with encryption.
    pub const CANNOT_ENCRYPT: u8 = 0x83;
    /// The payload cannot be activated without encryption.
    pub const NEEDS_ENCRYPTION: u8 = 0x84;
}

/// Completion codes specific to Deactivate Payload (§24.2).
pub mod deactivate_cc {
    /// The payload is already deactivated.
    pub const ALREADY_INACTIVE: u8 = 0x80;
    /// The payload type is disabled.
    pub const DISABLED: u8 = 0x81;
}

/// SOL configuration parameter numbers (§26.3).
pub mod param {
    /// Set in progress.
    pub const SET_IN_PROGRESS: u8 = 0;
    /// SOL enable.
    pub const ENABLE: u8 = 1;
    /// Force encryption / authentication, minimum privilege.
    pub const AUTHENTICATION: u8 = 2;
    /// Character accumulate interval and send threshold.
    pub const ACCUMULATE: u8 = 3;
    /// Retry count and interval.
    pub const RETRY: u8 = 4;
    /// Non-volatile bit rate.
    pub const NV_BIT_RATE: u8 = 5;
    /// Volatile bit rate.
    pub const V_BIT_RATE: u8 = 6;
    /// SOL payload channel.
    pub const CHANNEL: u8 = 7;
    /// SOL payload port.
    pub const PORT: u8 = 8;
}

/// Activate Payload (App 0x48) for SOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivatePayload {
    /// Payload instance (1 on every BMC seen).
    pub instance: u8,
    /// Ask for encrypted SOL packets (the suite has confidentiality).
    pub encrypt: bool,
    /// Ask for authenticated SOL packets (the suite has integrity).
    pub authenticate: bool,
}

impl ActivatePayload {
    /// Data byte 2 as sent: encryption and authentication as asked, serial
    /// alerts deferred while SOL is active (what ipmitool sends), and the
    /// BMC asserting CTS/DCD/DSR at once.
    pub fn aux_byte(&self) -> u8 {
        (if self.encrypt { 0x80 } else { 0 }) | (if self.authenticate { 0x40 } else { 0 }) | 0x04
    }

    /// Decodes a request's data (BMC side).
    pub fn parse_request(d: &[u8]) -> Result<(u8, ActivatePayload), WireError> {
        need(d, 3, "Activate Payload request")?;
        Ok((
            d[0] & 0x3F,
            ActivatePayload {
                instance: d[1] & 0x0F,
                encrypt: d[2] & 0x80 != 0,
                authenticate: d[2] & 0x40 != 0,
            },
        ))
    }
}

/// A decoded Activate Payload answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivatedPayload {
    /// Auxiliary data (bit 0: test mode).
    pub aux: [u8; 4],
    /// Largest SOL payload the BMC takes from the console.
    pub inbound_size: u16,
    /// Largest SOL payload the BMC sends.
    pub outbound_size: u16,
    /// The UDP port SOL packets go to.
    pub port: u16,
    /// The VLAN, if any.
    pub vlan: Option<u16>,
}

impl ActivatedPayload {
    /// The 12 answer bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.aux.to_vec();
        v.extend_from_slice(&self.inbound_size.to_le_bytes());
        v.extend_from_slice(&self.outbound_size.to_le_bytes());
        v.extend_from_slice(&self.port.to_le_bytes());
        v.extend_from_slice(&self.vlan.unwrap_or(NO_VLAN).to_le_bytes());
        v
    }
}

impl Command for ActivatePayload {
    type Response = ActivatedPayload;

    fn request(&self) -> RawRequest {
        id::ACTIVATE_PAYLOAD.request(vec![
            PAYLOAD_TYPE_SOL,
            self.instance & 0x0F,
            self.aux_byte(),
            0,
            0,
            0,
        ])
    }

    /// Ten bytes at least: some BMCs leave the VLAN out.
    fn parse_response(&self, d: &[u8]) -> Result<ActivatedPayload, WireError> {
        need(d, 10, "Activate Payload response")?;
        let vlan = (d.len() >= 12)
            .then(|| le16(d, 10))
            .filter(|v| *v != NO_VLAN);
        Ok(ActivatedPayload {
            aux: [d[0], d[1], d[2], d[3]],
            inbound_size: le16(d, 4),
            outbound_size: le16(d, 6),
            port: le16(d, 8),
            vlan,
        })
    }
}

/// Deactivate Payload (App 0x49) for SOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeactivatePayload {
    /// Payload instance.
    pub instance: u8,
}

impl Command for DeactivatePayload {
    type Response = ();

    fn request(&self) -> RawRequest {
        id::DEACTIVATE_PAYLOAD.request(vec![PAYLOAD_TYPE_SOL, self.instance & 0x0F, 0, 0, 0, 0])
    }

    fn parse_response(&self, _d: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
}

/// Get Payload Activation Status (App 0x4A) for SOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetPayloadActivationStatus;

/// Which SOL instances are active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadActivationStatus {
    /// How many instances the BMC has (some report 0: read as 1).
    pub capacity: u8,
    /// Bit `i` set: instance `i + 1` is active.
    pub active: u16,
}

impl PayloadActivationStatus {
    /// True when `instance` (1..=16) is active.
    pub fn is_active(&self, instance: u8) -> bool {
        matches!(instance, 1..=16) && self.active & (1 << (instance - 1)) != 0
    }

    /// The three answer bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let b = self.active.to_le_bytes();
        vec![self.capacity & 0x0F, b[0], b[1]]
    }
}

impl Command for GetPayloadActivationStatus {
    type Response = PayloadActivationStatus;

    fn request(&self) -> RawRequest {
        id::GET_PAYLOAD_ACTIVATION_STATUS.request(vec![PAYLOAD_TYPE_SOL])
    }

    fn parse_response(&self, d: &[u8]) -> Result<PayloadActivationStatus, WireError> {
        need(d, 3, "Get Payload Activation Status response")?;
        Ok(PayloadActivationStatus {
            capacity: d[0] & 0x0F,
            active: le16(d, 1),
        })
    }
}

/// Get Payload Instance Info (App 0x4B) for a SOL instance: which session
/// holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetPayloadInstanceInfo {
    /// Payload instance.
    pub instance: u8,
}

/// Who holds a payload instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInstanceInfo {
    /// The BMC session ID that activated it; 0 when it is not active.
    pub session_id: u32,
    /// Payload-specific bytes (for SOL, byte 0 is the serial port number).
    pub specific: [u8; 8],
}

impl PayloadInstanceInfo {
    /// The twelve answer bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.session_id.to_le_bytes().to_vec();
        v.extend_from_slice(&self.specific);
        v
    }
}

impl Command for GetPayloadInstanceInfo {
    type Response = PayloadInstanceInfo;

    fn request(&self) -> RawRequest {
        id::GET_PAYLOAD_INSTANCE_INFO.request(vec![PAYLOAD_TYPE_SOL, self.instance & 0x0F])
    }

    /// Four bytes at least: the payload-specific ones are not needed.
    fn parse_response(&self, d: &[u8]) -> Result<PayloadInstanceInfo, WireError> {
        need(d, 4, "Get Payload Instance Info response")?;
        let mut specific = [0u8; 8];
        let rest = &d[4..d.len().min(12)];
        specific[..rest.len()].copy_from_slice(rest);
        Ok(PayloadInstanceInfo {
            session_id: u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
            specific,
        })
    }
}

/// Get SOL Configuration Parameters (Transport 0x22) for one parameter of
/// this channel; the answer is the parameter's data (revision stripped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetSolConfig {
    /// The parameter (see [`param`]).
    pub param: u8,
}

impl Command for GetSolConfig {
    type Response = Vec<u8>;

    fn request(&self) -> RawRequest {
        id::GET_SOL_CONFIGURATION_PARAMETERS.request(vec![CURRENT_CHANNEL, self.param, 0, 0])
    }

    fn parse_response(&self, d: &[u8]) -> Result<Vec<u8>, WireError> {
        need(d, 1, "Get SOL Configuration Parameters response")?;
        Ok(d[1..].to_vec())
    }
}

/// SOL parameter 4: how often and how long a SOL packet is re-sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolRetry {
    /// Re-sends after the first (0..=7).
    pub count: u8,
    /// Time between tries.
    pub interval: Duration,
}

impl SolRetry {
    /// Decodes parameter 4's data: count in bits 2:0, interval in 10 ms.
    pub fn parse(d: &[u8]) -> Result<SolRetry, WireError> {
        need(d, 2, "SOL retry parameter")?;
        Ok(SolRetry {
            count: d[0] & 0x07,
            interval: Duration::from_millis(u64::from(d[1]) * 10),
        })
    }

    /// The parameter's two data bytes (interval rounded down to 10 ms,
    /// at most 2.55 s).
    pub fn to_bytes(&self) -> [u8; 2] {
        let units = (self.interval.as_millis() / 10).min(255) as u8;
        [self.count & 0x07, units]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::all_truncations_fail;

    #[test]
    fn activate_request_is_what_ipmitool_sends() {
        // §24.1 / reference §8.1: type 1, instance 1, 0xC4 (encrypt,
        // authenticate, alerts deferred), three reserved bytes.
        let a = ActivatePayload {
            instance: 1,
            encrypt: true,
            authenticate: true,
        };
        let r = a.request();
        assert_eq!((r.netfn.0, r.cmd), (0x06, 0x48));
        assert_eq!(r.data, [0x01, 0x01, 0xC4, 0, 0, 0]);
        assert_eq!(ActivatePayload::parse_request(&r.data).unwrap(), (1, a));
        let plain = ActivatePayload {
            encrypt: false,
            authenticate: false,
            ..a
        };
        assert_eq!(plain.request().data[2], 0x04);
    }

    #[test]
    fn activate_answer_decodes_sizes_port_and_vlan() {
        // Aux 0, inbound 0x00FF, outbound 0x00FF, port 623 (0x026F), no VLAN.
        let bytes = [0, 0, 0, 0, 0xFF, 0x00, 0xFF, 0x00, 0x6F, 0x02, 0xFF, 0xFF];
        let a = ActivatePayload {
            instance: 1,
            encrypt: true,
            authenticate: true,
        };
        let p = a.parse_response(&bytes).unwrap();
        assert_eq!((p.inbound_size, p.outbound_size, p.port), (255, 255, 623));
        assert_eq!(p.vlan, None);
        assert_eq!(p.to_bytes(), bytes);
        all_truncations_fail!(&bytes[..10], |b| a.parse_response(b));
        let with_vlan = [0, 0, 0, 0, 0xFF, 0, 0xFF, 0, 0x6F, 0x02, 0x0A, 0x00];
        assert_eq!(a.parse_response(&with_vlan).unwrap().vlan, Some(10));
    }

    #[test]
    fn deactivate_and_status_bytes() {
        let d = DeactivatePayload { instance: 1 }.request();
        assert_eq!((d.netfn.0, d.cmd), (0x06, 0x49));
        assert_eq!(d.data, [0x01, 0x01, 0, 0, 0, 0]);
        let s = GetPayloadActivationStatus.request();
        assert_eq!((s.netfn.0, s.cmd, s.data.clone()), (0x06, 0x4A, vec![1]));
        // Capacity 1, instance 1 active.
        let st = GetPayloadActivationStatus
            .parse_response(&[0x01, 0x01, 0x00])
            .unwrap();
        assert!(st.is_active(1));
        assert!(!st.is_active(2) && !st.is_active(0) && !st.is_active(17));
        assert_eq!(st.to_bytes(), [1, 1, 0]);
        all_truncations_fail!(&[1u8, 1, 0], |b| GetPayloadActivationStatus
            .parse_response(b));
    }

    #[test]
    fn instance_info_names_the_holding_session() {
        let g = GetPayloadInstanceInfo { instance: 1 };
        let r = g.request();
        assert_eq!((r.netfn.0, r.cmd, r.data.clone()), (0x06, 0x4B, vec![1, 1]));
        // §24.5: session ID 0x01020304, then port 1 and seven reserved bytes.
        let bytes = [4, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        let info = g.parse_response(&bytes).unwrap();
        assert_eq!(info.session_id, 0x0102_0304);
        assert_eq!(info.specific[0], 1);
        assert_eq!(info.to_bytes(), bytes);
        assert_eq!(g.parse_response(&[0, 0, 0, 0]).unwrap().session_id, 0);
        all_truncations_fail!(&bytes[..4], |b| g.parse_response(b));
    }

    #[test]
    fn sol_retry_parameter() {
        let g = GetSolConfig {
            param: param::RETRY,
        };
        let r = g.request();
        assert_eq!((r.netfn.0, r.cmd), (0x0C, 0x22));
        assert_eq!(r.data, [0x0E, 0x04, 0, 0]);
        // Revision 0x11, then count 7 (upper bits reserved) and 50 x 10 ms.
        let data = g.parse_response(&[0x11, 0xF7, 0x32]).unwrap();
        let retry = SolRetry::parse(&data).unwrap();
        assert_eq!(retry.count, 7);
        assert_eq!(retry.interval, Duration::from_millis(500));
        assert_eq!(retry.to_bytes(), [7, 50]);
        assert!(SolRetry::parse(&[7]).is_err());
        assert!(g.parse_response(&[]).is_err());
    }
}

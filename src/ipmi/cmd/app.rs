//! Application netFn (0x06) commands: device identity and the session
//! commands the console itself sends.

use super::registry::id;
use super::{need, Command, RawRequest};
use crate::ipmi::wire::{le16, WireError};

/// Decoded Get Channel Authentication Capabilities response (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelAuthCapabilities {
    /// Channel number actually used.
    pub channel: u8,
    /// The channel speaks RMCP+.
    pub supports_ipmi_v20: bool,
    /// A BMC key Kg is set ("two-key login").
    pub kg_set: bool,
    /// Anonymous or null-user logins are enabled (a finding worth flagging).
    pub anonymous_login: bool,
}

impl ChannelAuthCapabilities {
    /// Decodes the 8 data bytes.
    pub fn parse(d: &[u8]) -> Result<Self, WireError> {
        need(d, 4, "Get Channel Authentication Capabilities response")?;
        let extended = d[1] & 0x80 != 0;
        Ok(ChannelAuthCapabilities {
            channel: d[0],
            supports_ipmi_v20: extended && d[3] & 0x02 != 0,
            kg_set: d[2] & 0x20 != 0,
            anonymous_login: d[2] & 0x03 != 0,
        })
    }
}

/// Get Device ID (App 0x01).
#[derive(Debug, Clone, Copy, Default)]
pub struct GetDeviceId;

/// Decoded Get Device ID response (§6.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceId {
    /// Device ID.
    pub device_id: u8,
    /// Device revision.
    pub device_revision: u8,
    /// The device provides device SDRs.
    pub provides_device_sdrs: bool,
    /// False while firmware update or self-initialisation runs.
    pub device_available: bool,
    /// Major firmware revision.
    pub firmware_major: u8,
    /// Minor firmware revision (decoded from BCD).
    pub firmware_minor: u8,
    /// IPMI version major.
    pub ipmi_major: u8,
    /// IPMI version minor.
    pub ipmi_minor: u8,
    /// Additional device support bitmap.
    pub additional_support: u8,
    /// IANA manufacturer number (20 bits).
    pub manufacturer_id: u32,
    /// Product ID.
    pub product_id: u16,
    /// Auxiliary firmware revision, if sent.
    pub aux_firmware: Option<[u8; 4]>,
}

impl DeviceId {
    /// Names of the additional-device-support bits that are set.
    pub fn support_names(&self) -> Vec<&'static str> {
        const NAMES: [&str; 8] = [
            "Sensor Device",
            "SDR Repository Device",
            "SEL Device",
            "FRU Inventory Device",
            "IPMB Event Receiver",
            "IPMB Event Generator",
            "Bridge",
            "Chassis Device",
        ];
        (0..8)
            .filter(|i| self.additional_support & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect()
    }
}

fn bcd(b: u8) -> u8 {
    (b >> 4) * 10 + (b & 0x0F)
}

impl Command for GetDeviceId {
    type Response = DeviceId;
    fn request(&self) -> RawRequest {
        id::GET_DEVICE_ID.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<DeviceId, WireError> {
        need(d, 11, "Get Device ID response")?;
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0F,
            provides_device_sdrs: d[1] & 0x80 != 0,
            device_available: d[2] & 0x80 == 0,
            firmware_major: d[2] & 0x7F,
            firmware_minor: bcd(d[3]),
            ipmi_major: d[4] & 0x0F,
            ipmi_minor: d[4] >> 4,
            additional_support: d[5],
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8] & 0x0F, 0]),
            product_id: le16(d, 9),
            aux_firmware: d.get(11..15).map(|a| [a[0], a[1], a[2], a[3]]),
        })
    }
}

/// Get System GUID (App 0x37).
#[derive(Debug, Clone, Copy, Default)]
pub struct GetSystemGuid;

impl Command for GetSystemGuid {
    type Response = [u8; 16];
    fn request(&self) -> RawRequest {
        id::GET_SYSTEM_GUID.request(vec![])
    }
    fn parse_response(&self, d: &[u8]) -> Result<[u8; 16], WireError> {
        need(d, 16, "Get System GUID response")?;
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        Ok(g)
    }
}

/// Formats a GUID as ipmitool does (RFC 4122 text, fields little-endian on
/// the wire per the IPMI spec).
pub fn format_guid(g: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_decodes_an_ipmi_sim_answer() {
        // ipmi_sim with mfg 4753, product 0x1001, fw 1.00, IPMI 2.0.
        let d = [
            0x01, 0x81, 0x01, 0x00, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x01, 0x10,
        ];
        let id = GetDeviceId.parse_response(&d).unwrap();
        assert_eq!(id.manufacturer_id, 4753);
        assert_eq!(id.product_id, 0x1001);
        assert_eq!((id.firmware_major, id.firmware_minor), (1, 0));
        assert_eq!((id.ipmi_major, id.ipmi_minor), (2, 0));
        assert!(id.provides_device_sdrs && id.device_available);
        assert_eq!(id.support_names().len(), 6);
        assert!(id.aux_firmware.is_none());
        for n in 0..d.len() {
            assert!(GetDeviceId.parse_response(&d[..n]).is_err());
        }
        let bcd_minor = [0, 0, 2, 0x51, 0x51, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            GetDeviceId
                .parse_response(&bcd_minor)
                .unwrap()
                .firmware_minor,
            51
        );
    }

    #[test]
    fn auth_caps_bits() {
        let caps = ChannelAuthCapabilities::parse(&[1, 0x80, 0x24, 0x02, 0, 0, 0, 0]).unwrap();
        assert!(caps.supports_ipmi_v20 && caps.kg_set && !caps.anonymous_login);
        let v15 = ChannelAuthCapabilities::parse(&[1, 0x16, 0x04, 0x01, 0, 0, 0, 0]).unwrap();
        assert!(!v15.supports_ipmi_v20);
    }

    #[test]
    fn guid_text() {
        let g: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(format_guid(&g), "03020100-0504-0706-0809-0a0b0c0d0e0f");
    }
}

//! Sensor/Event netFn (0x04) commands (reference §6.3): readings and
//! thresholds.

use super::registry::id;
use super::{need, Command, RawRequest};
use crate::ipmi::wire::WireError;

/// Get Sensor Reading for one sensor number (owner LUN 0).
#[derive(Debug, Clone, Copy)]
pub struct GetSensorReading(pub u8);

/// Decoded sensor reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorReading {
    /// Raw reading byte (threshold sensors).
    pub raw: u8,
    /// Event messages enabled.
    pub events_enabled: bool,
    /// Sensor scanning enabled (reading meaningful).
    pub scanning_enabled: bool,
    /// Reading or state unavailable.
    pub unavailable: bool,
    /// Threshold status bits (b5..b0 = UNR UC UNC LNR LC LNC) or discrete
    /// state bits 0-14.
    pub state: u16,
}

impl SensorReading {
    /// True when the reading may be shown.
    pub fn is_valid(&self) -> bool {
        self.scanning_enabled && !self.unavailable
    }
}

impl Command for GetSensorReading {
    type Response = SensorReading;
    fn request(&self) -> RawRequest {
        id::GET_SENSOR_READING.request(vec![self.0])
    }
    fn parse_response(&self, d: &[u8]) -> Result<SensorReading, WireError> {
        need(d, 2, "Get Sensor Reading response")?;
        Ok(SensorReading {
            raw: d[0],
            events_enabled: d[1] & 0x80 != 0,
            scanning_enabled: d[1] & 0x40 != 0,
            unavailable: d[1] & 0x20 != 0,
            state: u16::from(d.get(2).copied().unwrap_or(0))
                | (u16::from(d.get(3).copied().unwrap_or(0) & 0x7F) << 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_bits() {
        let r = GetSensorReading(1)
            .parse_response(&[45, 0xC0, 0x08])
            .unwrap();
        assert_eq!(r.raw, 45);
        assert!(r.is_valid() && r.events_enabled);
        assert_eq!(r.state, 0x08);
        let r = GetSensorReading(1).parse_response(&[0, 0x20]).unwrap();
        assert!(!r.is_valid());
        assert!(GetSensorReading(1).parse_response(&[0]).is_err());
    }
}

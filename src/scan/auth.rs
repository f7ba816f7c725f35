//! Authenticated checks, logged in with the credentials the scan was given
//! (the gateway's account on that BMC): the user table (Get User Access
//! 06/44, Get User Name 06/46), the bad-password lockout (LAN parameter
//! 26), and the firmware and manufacturer (Get Device ID).
//!
//! Never does: change anything on the BMC (every command here is a read),
//! or print a password.

use serde::Serialize;

use super::findings::{push, Finding};
use crate::bmc::BmcClient;
use crate::ipmi::cmd::registry::{id, CommandId};
use crate::ipmi::session::bmc::LAN_CHANNEL;

/// Most users read from the table (IPMI allows 63).
const MAX_USERS: u8 = 63;

/// Names vendors ship, which attackers try first.
pub const DEFAULT_LOOKING: [&str; 8] = [
    "admin",
    "ADMIN",
    "root",
    "Administrator",
    "USERID",
    "administrator",
    "operator",
    "user",
];

/// One enabled user of the BMC's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserEntry {
    /// User ID.
    pub id: u8,
    /// Name (may be empty: the null user).
    pub name: String,
    /// Privilege limit on the LAN channel (level number, 15 = no access).
    pub privilege: u8,
    /// IPMI messaging enabled on the LAN channel.
    pub lan: bool,
}

/// What the authenticated checks saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthChecks {
    /// The account the scan logged in with.
    pub login_user: String,
    /// Enabled users.
    pub users: Vec<UserEntry>,
    /// Bad password threshold (LAN parameter 26), when the BMC reports it.
    pub lockout_threshold: Option<u8>,
    /// Manufacturer IANA number and firmware revision (Get Device ID).
    pub manufacturer: Option<u32>,
    /// Firmware revision, major.minor.
    pub firmware: Option<String>,
}

impl AuthChecks {
    /// Findings from these checks.
    pub fn findings(&self, out: &mut Vec<Finding>) {
        let odd: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.lan && (u.name.is_empty() || DEFAULT_LOOKING.contains(&u.name.as_str())))
            .map(|u| format!("user {} {:?}", u.id, u.name))
            .collect();
        if !odd.is_empty() {
            push(
                out,
                "user-default-name",
                format!("Get User Name/Access: {}", odd.join(", ")),
            );
        }
        let extra: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.lan && u.name != self.login_user)
            .map(|u| format!("user {} {:?} (privilege {})", u.id, u.name, u.privilege))
            .collect();
        if !extra.is_empty() {
            push(
                out,
                "user-extra-lan",
                format!(
                    "enabled on LAN channel {LAN_CHANNEL} besides {:?}: {}",
                    self.login_user,
                    extra.join(", ")
                ),
            );
        }
        if self.lockout_threshold == Some(0) {
            push(
                out,
                "no-lockout",
                "Get LAN Configuration Parameters 26: threshold 0".into(),
            );
        }
    }
}

async fn ask(c: &BmcClient, cmd: CommandId, data: Vec<u8>) -> Option<Vec<u8>> {
    let r = c.request(cmd.request(data)).await.ok()?;
    r.completion_code.is_ok().then_some(r.data)
}

/// Runs every authenticated check on a logged-in client.
pub async fn run(c: &BmcClient, login_user: &str) -> AuthChecks {
    let mut out = AuthChecks {
        login_user: login_user.to_string(),
        ..AuthChecks::default()
    };
    if let Some(d) = ask(c, id::GET_DEVICE_ID, vec![])
        .await
        .filter(|d| d.len() >= 9)
    {
        out.firmware = Some(format!("{}.{:02x}", d[2] & 0x7F, d[3]));
        out.manufacturer = Some(u32::from_le_bytes([d[6], d[7], d[8] & 0x0F, 0]));
    }
    let lan = ask(
        c,
        id::GET_LAN_CONFIGURATION_PARAMETERS,
        vec![LAN_CHANNEL, 26, 0, 0],
    )
    .await;
    out.lockout_threshold = lan.filter(|d| d.len() >= 3).map(|d| d[2]);
    out.users = users(c).await;
    out
}

/// The enabled users: Get User Access for each ID up to the table's
/// size, and the name of each that has LAN access or is enabled.
async fn users(c: &BmcClient) -> Vec<UserEntry> {
    let mut out = Vec::new();
    let mut max = MAX_USERS;
    let mut uid = 1;
    while uid <= max {
        let Some(a) = ask(c, id::GET_USER_ACCESS, vec![LAN_CHANNEL, uid]).await else {
            break;
        };
        if a.len() < 4 {
            break;
        }
        max = (a[0] & 0x3F).min(MAX_USERS);
        let privilege = a[3] & 0x0F;
        let lan = a[3] & 0x10 != 0 && privilege != 0x0F;
        let enabled = a[1] & 0xC0 == 0x40;
        if lan || enabled {
            let name = ask(c, id::GET_USER_NAME, vec![uid])
                .await
                .unwrap_or_default();
            let name = String::from_utf8_lossy(&name)
                .trim_end_matches('\0')
                .to_string();
            // An all-zero name on an ID without access is an empty slot.
            if lan || !name.is_empty() {
                out.push(UserEntry {
                    id: uid,
                    name,
                    privilege,
                    lan,
                });
            }
        }
        uid += 1;
    }
    out
}

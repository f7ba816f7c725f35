//! Request classification and redaction on arbitrary client bytes: the
//! policy names a request gets (Send Message decoded recursively, boot
//! options by parameter and bits, OEM by IANA, group extension reads by
//! body and length), the boot-device change step it is, the privilege a
//! BMC asks for it, and the secret offset the audit trail redacts from.
#![no_main]
use ipmigw::ipmi::cmd::name::{boot_step, classify, name_is_state_changing};
use ipmigw::ipmi::cmd::privilege;
use ipmigw::ipmi::cmd::registry::secret_from;
use ipmigw::ipmi::wire::message::NetFn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&netfn, rest)) = data.split_first() else { return };
    let Some((&cmd, payload)) = rest.split_first() else { return };
    let netfn = NetFn(netfn & 0x3E);
    let c = classify(netfn, cmd, payload);
    for name in c.names() {
        // Every name is one policy can grant, with the same effect.
        let sc = name_is_state_changing(name.as_str());
        assert!(sc.is_some(), "{name} is not a known name");
        if sc == Some(true) {
            assert!(c.state_changing, "{name} changes state");
        }
    }
    // A change step is only ever what is named chassis.bootdev.set.
    if boot_step(netfn, cmd, payload).is_some() {
        assert_eq!(c.name.as_str(), "chassis.bootdev.set");
    }
    // Privilege lookups read the data of group extension commands too.
    let _ = privilege::required(netfn, cmd, payload);
    if let Some(k) = secret_from(netfn, cmd, payload) {
        assert!(k < payload.len());
        let shown = ipmigw::audit::redact_request_data(netfn.0, cmd, payload);
        assert!(shown.ends_with(&format!("<redacted:{}>", payload.len() - k)));
    }
});

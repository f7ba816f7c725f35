// Shared by the BMC-side targets: a simulated BMC with an endpoint, and an
// in-memory login to it.
use std::sync::Arc;
use std::time::Instant;

use ipmigw::ipmi::session::bmc::{BmcUser, Endpoint, EndpointConfig, SolSettings};
use ipmigw::ipmi::session::console::{ActiveSession, ConsoleConfig, Handshake};
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;
use ipmigw::sim::model::{SensorCatalog, SimBmc};
use rand::{rngs::StdRng, SeedableRng};

#[allow(dead_code)]
pub fn bmc(now: Instant) -> (Endpoint, SimBmc) {
    bmc_config(now, None)
}

#[allow(dead_code)]
pub fn bmc_with_sol(now: Instant, sol: SolSettings) -> (Endpoint, SimBmc) {
    bmc_config(now, Some(sol))
}

fn bmc_config(now: Instant, sol: Option<SolSettings>) -> (Endpoint, SimBmc) {
    let model = SimBmc::new(1, Arc::new(SensorCatalog::standard()), vec![], now);
    let users = vec![BmcUser {
        name: b"admin".to_vec(),
        password: SecretBytes::from(&b"pw"[..]),
        privilege: Privilege::Administrator,
        enabled: true,
    }];
    let mut cfg = EndpointConfig::new(model.guid());
    cfg.sol = sol;
    let ep = Endpoint::new(cfg, users, Box::new(StdRng::seed_from_u64(1)));
    (ep, model)
}

pub fn login(ep: &mut Endpoint, model: &mut SimBmc, now: Instant) -> Box<ActiveSession> {
    let cfg = ConsoleConfig::new(b"admin", SecretBytes::from(&b"pw"[..]), Privilege::Administrator);
    let mut hs = Handshake::start(cfg, Box::new(StdRng::seed_from_u64(2)), now).unwrap();
    for _ in 0..8 {
        if let Some(outcome) = hs.poll_outcome() {
            return outcome.expect("login");
        }
        let out = hs.poll_transmit().expect("a login step to send");
        let reply = ep.handle_datagram(now, &out, model).expect("login answer");
        hs.handle_datagram(now, &reply.bytes).expect("not ignored");
    }
    panic!("no login")
}

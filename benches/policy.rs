//! Policy benchmark: decisions per second on one core for a large site
//! (1,000 users, 10,000 BMCs in 100 racks, 102 roles), with and without the
//! rate limiters, and the time to compile such a policy.
//!
//! Prints a table and `figure: NAME VALUE UNIT` lines.
//! `cargo bench --bench policy -- --quick` for a short run.

use std::fmt::Write;
use std::hint::black_box;
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use ipmigw::ipmi::cmd::name::{name_is_state_changing, NAMED_COMMANDS};
use ipmigw::policy::{compile_text, Decision, Limits, Request};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const USERS: usize = 1_000;
const RACKS: usize = 100;
const PER_RACK: usize = 100;

fn site() -> (String, Vec<(String, Vec<String>)>) {
    let mut t = String::new();
    for r in 0..RACKS {
        let _ = write!(
            t,
            "[[role]]\nname = \"ops-rack{r:02}\"\ntargets = [\"group:rack{r:02}\"]\nallow = [\"chassis.**\", \"sensor.read\", \"sdr.read\", \"sel.*\", \"mc.info\", \"fru.read\"]\ndeny = [\"chassis.power.off\", \"sel.clear\"]\nrate = \"1000000/second\"\n\n"
        );
    }
    t += "[[role]]\nname = \"viewer\"\ntargets = [\"*\"]\nallow = [\"chassis.status\", \"sensor.read\", \"sdr.read\", \"sel.read\", \"mc.info\", \"fru.read\"]\n\n";
    t += "[[role]]\nname = \"oem\"\ntargets = [\"n0*\"]\nallow = [\"raw.0x2e.*\", \"raw.0x30.0x0*\"]\nsource = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n\n";
    for u in 0..USERS {
        let _ = write!(
            t,
            "[[user]]\nname = \"user{u}\"\nidentity = \"email:user{u}@example.com\"\nroles = [\"ops-rack{:02}\", \"ops-rack{:02}\", \"viewer\"{}]\nsource = [\"10.0.0.0/8\", \"192.168.0.0/16\", \"127.0.0.0/8\"]\n\n",
            u % RACKS,
            (u * 7 + 3) % RACKS,
            if u % 10 == 0 { ", \"oem\"" } else { "" }
        );
    }
    t += "[defaults]\nsource = [\"0.0.0.0/0\", \"::/0\"]\nrate = \"1000000/second\"\nbmc_rate = \"1000000/second\"\n";
    let bmcs = (0..RACKS * PER_RACK)
        .map(|i| (format!("n{i:05}"), vec![format!("rack{:02}", i / PER_RACK)]))
        .collect();
    (t, bmcs)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_millis(if quick { 300 } else { 3_000 });
    let (text, bmcs) = site();
    let bmc_refs: Vec<(&str, Vec<&str>)> = bmcs
        .iter()
        .map(|(n, g)| (n.as_str(), g.iter().map(String::as_str).collect()))
        .collect();
    let bmc_refs: Vec<(&str, &[&str])> = bmc_refs.iter().map(|(n, g)| (*n, g.as_slice())).collect();
    let t0 = Instant::now();
    let policy = compile_text(&[("site.toml", &text)], &bmc_refs).unwrap_or_else(|e| panic!("{e}"));
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;

    // A fixed mix of requests: random user, command (a tenth raw) and source.
    let mut rng = SmallRng::seed_from_u64(7);
    let users: Vec<String> = (0..USERS).map(|u| format!("user{u}")).collect();
    let raw = ["raw.0x2e.0x01", "raw.0x30.0x05", "raw.0x3a.0x10"];
    let sources = [
        "10.1.2.3".parse().unwrap(),
        "::ffff:192.168.1.9".parse().unwrap(),
        "172.16.0.1".parse().unwrap(),
    ];
    let requests: Vec<Request> = (0..65_536)
        .map(|_| {
            let command = if rng.gen_range(0..10) == 0 {
                raw[rng.gen_range(0..raw.len())]
            } else {
                NAMED_COMMANDS[rng.gen_range(0..NAMED_COMMANDS.len())]
            };
            // Half the requests go to the user's own rack, where grants are.
            let u = rng.gen_range(0..USERS);
            let bmc = if rng.gen_bool(0.5) {
                (u % RACKS) * PER_RACK + rng.gen_range(0..PER_RACK)
            } else {
                rng.gen_range(0..bmcs.len())
            };
            Request {
                user: &users[u],
                source: Some(sources[rng.gen_range(0..sources.len())]),
                bmc: &bmcs[bmc].0,
                command,
                state_changing: name_is_state_changing(command).unwrap_or(true),
            }
        })
        .collect();

    let measure = |f: &dyn Fn(&Request) -> bool| {
        let start = Instant::now();
        let mut n = 0u64;
        let mut allowed = 0u64;
        while start.elapsed() < run_for {
            for r in &requests[..4096] {
                allowed += f(black_box(r)) as u64;
            }
            for r in &requests[4096..] {
                allowed += f(black_box(r)) as u64;
            }
            n += requests.len() as u64;
        }
        (
            n as f64 / start.elapsed().as_secs_f64(),
            allowed as f64 / n as f64,
        )
    };
    let (decide_rate, allow_share) = measure(&|r| policy.decide(r).is_allow());
    let limits = Limits::new(&policy, DefaultClock::default());
    let (limited_rate, _) = measure(&|r| match policy.decide(r) {
        Decision::Allow(p) => limits.check(&policy, p).is_allow(),
        Decision::Deny(_) => false,
    });

    println!(
        "policy: {USERS} users, {} BMCs, {} roles; compiled in {compile_ms:.0} ms",
        bmcs.len(),
        policy.counts().1
    );
    println!("{:<40} {:>14}", "scenario (one thread)", "decisions/s");
    println!(
        "{:<40} {:>14.0}",
        "decide (source, targets, deny, allow)", decide_rate
    );
    println!("{:<40} {:>14.0}", "decide + rate limiters", limited_rate);
    println!("allowed share of the mix: {:.0}%", allow_share * 100.0);
    println!("figure: policy_decisions_per_s {decide_rate:.0} 1/s");
    println!("figure: policy_decisions_with_limits_per_s {limited_rate:.0} 1/s");
    println!("figure: policy_compile_ms {compile_ms:.0} ms");
}

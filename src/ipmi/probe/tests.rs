use super::*;
use rand::SeedableRng;

use crate::ipmi::session::bmc::{BmcUser, Endpoint, EndpointConfig, Weaknesses};
use crate::ipmi::session::{testpeer, Privilege};
use crate::secret::SecretBytes;

fn endpoint(weak: Weaknesses) -> Endpoint {
    let mut cfg = EndpointConfig::new([7; 16]);
    cfg.weak = weak;
    let admin = BmcUser {
        name: b"admin".to_vec(),
        password: SecretBytes::from(&b"Adm1nPass"[..]),
        privilege: Privilege::Administrator,
        enabled: true,
    };
    let rng = rand::rngs::StdRng::seed_from_u64(1);
    Endpoint::new(cfg, vec![admin], Box::new(rng))
}

struct NoApp;
impl crate::ipmi::session::bmc::Application for NoApp {
    fn execute(
        &mut self,
        _: std::time::Instant,
        _: Privilege,
        _: &Request,
    ) -> (crate::ipmi::wire::message::CompletionCode, Vec<u8>) {
        (
            crate::ipmi::wire::message::CompletionCode::OK,
            vec![0x20, 0x01],
        )
    }
}

fn ask(e: &mut Endpoint, d: &[u8]) -> Vec<u8> {
    e.handle_datagram(testpeer::t0(), d, &mut NoApp)
        .expect("an answer")
        .bytes
}

#[test]
fn auth_caps_of_a_secure_and_a_weak_endpoint() {
    let caps = parse_auth_caps(&ask(
        &mut endpoint(Weaknesses::default()),
        &auth_caps_request(1),
    ))
    .unwrap();
    assert_eq!(caps.v15_auth_types, 0);
    assert!(caps.v20_connections && !caps.v15_connections);
    assert!(!caps.anonymous && !caps.null_users && caps.non_null_users);
    assert!(!caps.kg_set, "no Kg: the default all-zero key");
    let weak = Weaknesses {
        anonymous: true,
        v15_auth_types: 0x05,
        ..Weaknesses::default()
    };
    let caps = parse_auth_caps(&ask(&mut endpoint(weak), &auth_caps_request(2))).unwrap();
    assert_eq!(caps.v15_auth_types, 0x05);
    assert!(caps.v15_connections && caps.anonymous && caps.null_users);
    assert_eq!(caps.raw[0], 0, "evidence starts with the completion code");
}

#[test]
fn cipher_suite_records_with_and_without_suite_zero() {
    let stream = |weak| {
        parse_cipher_suites_chunk(&ask(&mut endpoint(weak), &cipher_suites_request(0, 3))).unwrap()
    };
    let ids: Vec<u8> = suite_records(&stream(Weaknesses::default()))
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [17, 3]);
    let weak = Weaknesses {
        suite_zero: true,
        ..Weaknesses::default()
    };
    let recs = suite_records(&stream(weak));
    assert_eq!(
        recs.last().map(|r| (r.id, r.auth, r.integrity)),
        Some((0, 0, 0))
    );
    // OEM records skip their IANA number; junk ends the list.
    let oem = [0xC1, 0x80, 0x57, 0x01, 0x00, 0x01, 0x41, 0x81, 0xFF, 0xC0];
    assert_eq!(
        suite_records(&oem),
        [SuiteRecord {
            id: 0x80,
            auth: 1,
            integrity: 1,
            confidentiality: 1
        }]
    );
}

#[test]
fn suite_zero_login_with_any_password_then_a_command() {
    let zero = AlgorithmTriple {
        auth: 0,
        integrity: 0,
        confidentiality: 0,
    };
    let mut secure = endpoint(Weaknesses::default());
    let refused = parse_open_session(&ask(&mut secure, &open_session_request(9, zero))).unwrap();
    assert!(!refused.status.is_ok());
    let mut weak = endpoint(Weaknesses {
        suite_zero: true,
        ..Weaknesses::default()
    });
    let open = parse_open_session(&ask(&mut weak, &open_session_request(9, zero))).unwrap();
    let sid = open.accepted.expect("suite 0 accepted").bmc_sid;
    let r2 = parse_rakp2(&ask(&mut weak, &rakp1_request(sid, [1; 16], b"admin"))).unwrap();
    assert!(r2.status.is_ok());
    assert_eq!(r2.auth_code_len, 0);
    assert!(
        parse_rakp4(&ask(&mut weak, &rakp3_request(sid, RmcpPlusStatus::OK)))
            .unwrap()
            .is_ok()
    );
    let r = parse_suite0_answer(&ask(&mut weak, &suite0_device_id_request(sid, 1, 4))).unwrap();
    assert!(r.completion_code.is_ok());
    assert_eq!(r.data, [0x20, 0x01]);
}

#[test]
fn rakp2_for_a_known_name_has_a_hash_we_do_not_keep() {
    let mut e = endpoint(Weaknesses::default());
    let s17 = crate::ipmi::crypto::CipherSuite::Suite17.algorithms();
    let sid = parse_open_session(&ask(&mut e, &open_session_request(5, s17)))
        .unwrap()
        .accepted
        .unwrap()
        .bmc_sid;
    let r2 = parse_rakp2(&ask(&mut e, &rakp1_request(sid, [2; 16], b"nobody"))).unwrap();
    assert!(!r2.status.is_ok());
    assert_eq!(r2.auth_code_len, 0);
}

#[test]
fn decoders_refuse_other_answers_and_never_panic() {
    let caps = ask(&mut endpoint(Weaknesses::default()), &auth_caps_request(1));
    assert!(parse_cipher_suites_chunk(&caps).is_err());
    assert!(parse_open_session(&caps).is_err());
    for n in 0..caps.len() {
        let _ = parse_auth_caps(&caps[..n]);
        let _ = parse_rakp2(&caps[..n]);
        let _ = parse_suite0_answer(&caps[..n]);
    }
}

//! Shared test harness: OpenIPMI's `ipmi_sim` started from the project's own
//! fixtures (tests/fixtures/ipmi_sim), one instance per test, on a free
//! loopback port, stopped by pid when the handle drops.
//!
//! When `ipmi_sim`, `sdrcomp` or `ipmitool` is missing the interop tests skip
//! with a printed reason, unless `IPMIGW_REQUIRE_INTEROP=1` (CI), where they
//! fail instead.
#![allow(dead_code)]

pub mod gateway;
pub mod host_line;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipmigw::bmc::{BmcClient, BmcConfig};
use ipmigw::ipmi::session::console::ConsoleConfig;
use ipmigw::ipmi::session::Privilege;
use ipmigw::secret::SecretBytes;

/// Users of every simulated BMC: (id, name, password, privilege).
pub const USERS: [(u8, &str, &str, &str); 3] = [
    (2, "admin", "Adm1nPass", "admin"),
    (3, "operator", "0perPass", "operator"),
    (4, "viewer", "V1ewPass", "user"),
];
pub const ADMIN_PASSWORD: &str = "Adm1nPass";
/// How long a starting ipmi_sim may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried before giving up.
const START_ATTEMPTS: usize = 3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ipmi_sim")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// None (with a printed reason) when the interop tools are missing and not
/// required; panics when they are required.
pub fn interop_tools() -> Option<()> {
    let missing: Vec<_> = ["ipmi_sim", "sdrcomp", "ipmitool"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    let msg = format!(
        "interop tools missing: {missing:?} (apt-get install -y openipmi ipmitool freeipmi-tools)"
    );
    if std::env::var("IPMIGW_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("IPMIGW_REQUIRE_INTEROP=1 but {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// One running ipmi_sim.
pub struct IpmiSim {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl IpmiSim {
    /// Starts a simulated BMC, waits until it completes an RMCP+ login, sets
    /// its SEL clock and seeds three SEL entries. None when tools are missing.
    /// The port is one the system picked a moment ago: when a neighbour
    /// takes it first, the simulator does not answer and another is tried.
    pub fn start() -> Option<IpmiSim> {
        IpmiSim::start_with("")
    }

    /// Like [`start`](Self::start), with more `lan.conf` lines (a `sol`
    /// line wires its SOL to a serial line on a TCP port).
    pub fn start_with(extra_lan_conf: &str) -> Option<IpmiSim> {
        interop_tools()?;
        let dir = tempfile::Builder::new()
            .prefix("ipmigw-sim.")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("state/ipmi_sim/bmc")).unwrap();
        std::fs::create_dir_all(d.join("sensors")).unwrap();
        std::fs::write(d.join("sensors/cpu_temp_c"), "45\n").unwrap();
        std::fs::write(d.join("sensors/fan1_rpm"), "5400\n").unwrap();
        std::fs::write(d.join("sensors/v12_mv"), "12000\n").unwrap();
        std::fs::write(d.join("chassis.state"), "power=0\nboot=default\n").unwrap();
        std::fs::write(d.join("chassis.log"), "").unwrap();
        let sdr = d.join("state/ipmi_sim/bmc/sdr.20.main");
        let st = Command::new("sdrcomp")
            .arg("-8")
            .arg("-o")
            .arg(&sdr)
            .arg(fixtures().join("sensors.sdrs"))
            .status()
            .expect("run sdrcomp");
        assert!(st.success(), "sdrcomp failed");
        let control = d.join("chassis-control");
        std::fs::copy(fixtures().join("chassis-control"), &control).unwrap();
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o755)).unwrap();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_udp_port();
            write_sim_config(d, &control, port, extra_lan_conf);
            let mut child = spawn(d);
            if answers_within(port, START_TIMEOUT) {
                let sim = IpmiSim { dir, port, child };
                sim.seed_sel();
                return Some(sim);
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(d.join("sim.log")).unwrap_or_default();
            assert!(
                attempt < START_ATTEMPTS,
                "ipmi_sim did not answer on {START_ATTEMPTS} ports within {START_TIMEOUT:?} each; log:\n{log}"
            );
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The chassis state file's `key=value` for `key`.
    pub fn chassis(&self, key: &str) -> String {
        let s = std::fs::read_to_string(self.path("chassis.state")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
            .unwrap_or_default()
    }

    /// A password file (mode 0600) for `password`.
    pub fn password_file(&self, name: &str, password: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, password).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// Stock ipmitool (lanplus, suite 3, admin) aimed at this BMC.
    pub fn ipmitool_command(&self) -> Command {
        let mut c = Command::new("ipmitool");
        let port = self.port.to_string();
        c.args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port]);
        c.args(["-U", "admin", "-P", ADMIN_PASSWORD, "-C", "3"]);
        c
    }

    /// Runs stock ipmitool with `args`; panics unless it succeeds.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        let out = self
            .ipmitool_command()
            .args(["-N", "1", "-R", "3"])
            .args(args)
            .output()
            .expect("run ipmitool");
        assert!(
            out.status.success(),
            "ipmitool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `ipmigw bmc` against this BMC as admin; returns (exit, stdout, stderr).
    pub fn ipmigw(&self, args: &[&str]) -> (i32, String, String) {
        let pw = self.password_file("admin.pw", ADMIN_PASSWORD);
        ipmigw_bin(
            &[
                &[
                    "bmc",
                    "-H",
                    &self.addr().to_string(),
                    "-U",
                    "admin",
                    "--password-file",
                    pw.to_str().unwrap(),
                ],
                args,
            ]
            .concat(),
        )
    }

    /// A library client logged in as admin.
    pub async fn client(&self) -> BmcClient {
        let console = ConsoleConfig::new(
            b"admin",
            SecretBytes::from(ADMIN_PASSWORD.as_bytes()),
            Privilege::Administrator,
        );
        BmcClient::connect(BmcConfig::new(self.addr(), console))
            .await
            .expect("login to ipmi_sim")
    }

    /// Kills and restarts the simulator on the same port: a BMC reboot that
    /// forgets every session.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path());
        assert!(
            answers_within(self.port, START_TIMEOUT),
            "ipmi_sim on port {} did not answer within {START_TIMEOUT:?} after a restart",
            self.port
        );
    }

    fn seed_sel(&self) {
        // Threshold events for sensors 1-3, as the BMC itself would log them.
        for (ty, num, data) in [
            ("0x01", "0x01", ["0x57", "0x4c", "0x4b"]),
            ("0x04", "0x02", ["0x52", "0x0f", "0x11"]),
            ("0x02", "0x03", ["0x50", "0xbd", "0xbe"]),
        ] {
            let mut args = vec![
                "raw", "0x0a", "0x44", "0x00", "0x00", "0x02", "0", "0", "0", "0", "0x20", "0x00",
                "0x04", ty, num, "0x01",
            ];
            args.extend(data);
            self.ipmitool(&args);
        }
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once an RMCP+ session with the simulator on `port` works (it sets
/// the SEL clock), within `limit`.
fn answers_within(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let ok = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "admin", "-P", ADMIN_PASSWORD, "-C", "3"])
            .args(["-N", "1", "-R", "1", "sel", "time", "set", "now"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// IPMI 1.5 auth types the LAN channel offers, as in ../shared/bmc-lab
/// (where they are none md2 md5 straight): what a posture scan must find.
const V15_AUTHS: &str = "  allowed_auths_callback none md2 md5 straight\n  allowed_auths_user none md2 md5 straight\n  allowed_auths_operator none md2 md5 straight\n  allowed_auths_admin none md2 md5 straight\n";

/// The simulator's LAN config (users, the port) and its emulator script
/// (sensors, SEL, FRU).
fn write_sim_config(d: &Path, control: &Path, port: u16, extra_lan_conf: &str) {
    let mut lan = format!(
            "name \"bmc\"\nset_working_mc 0x20\nstartlan 1\n  addr 127.0.0.1 {port}\n  priv_limit admin\n{V15_AUTHS}  guid a5a5a5a5000011112222{port:012x}\nendlan\nchassis_control \"{} {}\"\n",
            control.display(),
            d.display()
        );
    lan.push_str(extra_lan_conf);
    for (id, name, pw, privilege) in USERS {
        lan.push_str(&format!(
            "user {id} true \"{name}\" \"{pw}\" {privilege} 10\n"
        ));
    }
    lan.push_str("user 5 false \"disabled\" \"D1sabled\" user 10\n");
    std::fs::write(d.join("lan.conf"), lan).unwrap();

    let fru = fru_image(&format!("LAB{port:05}"));
    let fru_bytes: Vec<String> = fru.iter().map(u8::to_string).collect();
    let emu = format!(
        "mc_setbmc 0x20\n\
             mc_add 0x20 0x20 no-device-sdrs 0x01 0x01 0x00 0x9f 0x1291 0x1001 persist_sdr\n\
             mc_add_fru_data 0x20 0 {} data {}\n\
             sel_enable 0x20 1000 0x0a\n\
             sensor_add 0x20 0 1 0x01 0x01 poll 500 file \"{d}/sensors/cpu_temp_c\"\n\
             sensor_add 0x20 0 2 0x04 0x01 poll 500 file \"{d}/sensors/fan1_rpm\" div=60\n\
             sensor_add 0x20 0 3 0x02 0x01 poll 500 file \"{d}/sensors/v12_mv\" div=60\n\
             sensor_set_value 0x20 0 1 45 0\n\
             sensor_set_value 0x20 0 2 90 0\n\
             sensor_set_value 0x20 0 3 200 0\n\
             mc_enable 0x20\n",
        fru.len(),
        fru_bytes.join(" "),
        d = d.display()
    );
    std::fs::write(d.join("sim.emu"), emu).unwrap();
}

fn spawn(d: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("sim.log"))
        .unwrap();
    Command::new("ipmi_sim")
        .arg("-c")
        .arg(d.join("lan.conf"))
        .arg("-f")
        .arg(d.join("sim.emu"))
        .arg("-s")
        .arg(d.join("state"))
        .arg("-n")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn ipmi_sim")
}

/// A child process, killed by its pid and reaped when dropped (also when a
/// test fails half-way).
pub struct ChildGuard(pub Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM by pid and waits up to `limit` for the exit status.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Runs the built ipmigw binary; returns (exit, stdout, stderr).
pub fn ipmigw_bin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipmigw"))
        .args(args)
        .output()
        .expect("run ipmigw");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// FRU image: board and product areas, encoded by the library.
fn fru_image(serial: &str) -> Vec<u8> {
    use ipmigw::ipmi::fru::{BoardArea, FruInventory, ProductArea};
    FruInventory {
        board: Some(BoardArea {
            manufacturer: "ipmigw-test".into(),
            product_name: "test board".into(),
            serial_number: format!("BRD-{serial}"),
            part_number: "TEST-BOARD-1".into(),
            ..BoardArea::default()
        }),
        product: Some(ProductArea {
            manufacturer: "ipmigw-test".into(),
            name: "test BMC".into(),
            part_number: "TEST-BMC-1".into(),
            version: "1.0".into(),
            serial_number: serial.into(),
            asset_tag: "bmc1".into(),
            ..ProductArea::default()
        }),
        ..FruInventory::default()
    }
    .encode()
}

/// `ipmigw` acting as `user` of the gateway at `gateway`, with the certificates
/// of a demo-layout PKI directory (`ca.crt`, `USER.crt`, `USER.key`).
pub fn ipmigw_as(gateway: SocketAddr, pki: &Path, user: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipmigw"));
    c.env("IPMIGW_GATEWAY", format!("https://{gateway}"))
        .env("IPMIGW_CA", pki.join("ca.crt"))
        .env("IPMIGW_CERT", pki.join(format!("{user}.crt")))
        .env("IPMIGW_KEY", pki.join(format!("{user}.key")));
    c
}

/// Runs a command without blocking the async runtime: (exit code, stdout, stderr).
pub async fn output_of(cmd: Command) -> (i32, String, String) {
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a file readable by its owner only (as secret files must be).
pub fn private_file(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

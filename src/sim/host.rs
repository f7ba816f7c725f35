//! The host on a simulated BMC's serial line: what a SOL console sees.
//! It behaves like a getty on a tty: a boot banner and a `login:` prompt
//! when a console attaches, every typed byte echoed (CR as CR LF, DEL and
//! BS erase), a `Password:` prompt that does not echo, a shell prompt after
//! it, and two commands anywhere a line is read: `flood N` prints N
//! numbered lines (`flood 000001 of 000100 abc..xyz`), then `flood done`;
//! `exit` goes back to `login:`. Other lines are answered `you said: LINE`.
//!
//! Output is made on demand ([`SimHost::read_output`]) so that a flood of
//! any size costs memory only as fast as the console takes it.
//!
//! Never does: block, or keep more than its bounds (one input line, the
//! echo queue, the record of received bytes).

use std::collections::VecDeque;

/// Longest input line kept; further bytes are echoed and dropped.
pub const MAX_LINE: usize = 256;
/// Bytes of console input remembered for tests.
pub const MAX_RECORDED_INPUT: usize = 1024 * 1024;
/// Largest `flood` count.
pub const MAX_FLOOD: u64 = 10_000_000;
/// Bytes of immediate output (echo, prompts) kept before more input is
/// ignored.
const MAX_PENDING: usize = 64 * 1024;
const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Login,
    Password,
    Shell,
}

/// One simulated host.
#[derive(Debug)]
pub struct SimHost {
    name: String,
    mode: Mode,
    user: String,
    line: Vec<u8>,
    pending: VecDeque<u8>,
    flood: Option<(u64, u64)>,
    received: Vec<u8>,
    breaks: u32,
    last_was_cr: bool,
}

impl SimHost {
    /// The host of BMC `index`.
    pub fn new(index: u32) -> SimHost {
        SimHost {
            name: format!("simhost{index}"),
            mode: Mode::Login,
            user: String::new(),
            line: Vec::new(),
            pending: VecDeque::new(),
            flood: None,
            received: Vec::new(),
            breaks: 0,
            last_was_cr: false,
        }
    }

    /// A console attached: the getty prints its banner and prompt again
    /// (where it is: a login prompt, or the shell's).
    pub fn attach(&mut self) {
        self.line.clear();
        let banner = format!("\r\nipmigw simulated host {} (ttyS0)\r\n\r\n", self.name);
        self.say(&banner);
        self.prompt();
    }

    /// Bytes typed on the console, in order.
    pub fn input(&mut self, bytes: &[u8]) {
        let room = MAX_RECORDED_INPUT.saturating_sub(self.received.len());
        self.received
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        for &b in bytes {
            if self.pending.len() >= MAX_PENDING {
                return;
            }
            self.key(b);
        }
    }

    /// A break arrived on the line (counted; a real host might drop to a
    /// debugger).
    pub fn serial_break(&mut self) {
        self.breaks += 1;
    }

    /// Breaks seen.
    pub fn breaks(&self) -> u32 {
        self.breaks
    }

    /// Everything received so far (up to [`MAX_RECORDED_INPUT`]).
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Up to `max` bytes of output.
    pub fn read_output(&mut self, max: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            if self.pending.is_empty() && !self.flood_line() {
                break;
            }
            let n = (max - out.len()).min(self.pending.len());
            out.extend(self.pending.drain(..n));
        }
        out
    }

    /// True when output is waiting.
    pub fn has_output(&self) -> bool {
        !self.pending.is_empty() || self.flood.is_some()
    }

    fn key(&mut self, b: u8) {
        // CR LF and LF CR count as one line end.
        let cr_lf = self.last_was_cr && b == b'\n';
        self.last_was_cr = b == b'\r';
        match b {
            b'\r' | b'\n' if cr_lf => {}
            b'\r' | b'\n' => {
                self.say("\r\n");
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                self.line_done(line.trim());
            }
            0x7F | 0x08 => {
                if self.line.pop().is_some() && self.mode != Mode::Password {
                    self.say("\x08 \x08");
                }
            }
            _ => {
                if self.mode != Mode::Password {
                    self.pending.push_back(b);
                }
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                }
            }
        }
    }

    fn line_done(&mut self, line: &str) {
        if self.mode == Mode::Password {
            self.mode = Mode::Shell;
            let welcome = format!("Welcome to {}, {}.\r\n", self.name, self.user);
            self.say(&welcome);
            return self.prompt();
        }
        if let Some(n) = line.strip_prefix("flood ") {
            if let Ok(n) = n.trim().parse::<u64>() {
                self.flood = Some((1, n.min(MAX_FLOOD)));
                return;
            }
        }
        match (self.mode, line) {
            (_, "") => {}
            (Mode::Login, user) => {
                self.user = user.chars().take(32).collect();
                self.mode = Mode::Password;
                self.say("Password: ");
                return;
            }
            (_, "exit") => {
                self.mode = Mode::Login;
                self.say("logout\r\n");
            }
            (_, other) => {
                let answer = format!("you said: {other}\r\n");
                self.say(&answer);
            }
        }
        self.prompt()
    }

    fn prompt(&mut self) {
        let p = match self.mode {
            Mode::Login => format!("{} login: ", self.name),
            Mode::Password => "Password: ".to_string(),
            Mode::Shell => format!("{}@{}:~$ ", self.user, self.name),
        };
        self.say(&p);
    }

    /// Makes the next flood line; false when no flood runs.
    fn flood_line(&mut self) -> bool {
        let Some((next, total)) = self.flood else {
            return false;
        };
        if next > total {
            self.flood = None;
            self.say("flood done\r\n");
            self.prompt();
            return true;
        }
        let line = format!("flood {next:06} of {total:06} {ALPHABET}\r\n");
        self.say(&line);
        self.flood = Some((next + 1, total));
        true
    }

    fn say(&mut self, s: &str) {
        self.pending.extend(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(h: &mut SimHost) -> String {
        String::from_utf8(h.read_output(usize::MAX)).unwrap()
    }

    #[test]
    fn banner_login_echo_password_and_shell() {
        let mut h = SimHost::new(3);
        h.attach();
        assert!(all(&mut h).ends_with("simhost3 login: "));
        h.input(b"root\r");
        assert_eq!(all(&mut h), "root\r\nPassword: ");
        h.input(b"s3cret\r");
        let out = all(&mut h);
        assert!(!out.contains("s3cret"), "no echo of the password: {out:?}");
        assert!(out.ends_with("root@simhost3:~$ "));
        h.input(b"helo\x7flo\r");
        assert_eq!(
            all(&mut h),
            "helo\x08 \x08lo\r\nyou said: hello\r\nroot@simhost3:~$ "
        );
        assert_eq!(h.received(), b"root\rs3cret\rhelo\x7flo\r");
    }

    #[test]
    fn flood_prints_numbered_lines_on_demand() {
        let mut h = SimHost::new(1);
        h.input(b"flood 3\r\n");
        let out = all(&mut h);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[0], "flood 3");
        assert_eq!(
            lines[1],
            "flood 000001 of 000003 abcdefghijklmnopqrstuvwxyz"
        );
        assert_eq!(
            lines[3],
            "flood 000003 of 000003 abcdefghijklmnopqrstuvwxyz"
        );
        assert_eq!(lines[4], "flood done");
        assert!(!h.has_output());
        // Small reads cut lines anywhere and lose nothing.
        h.input(b"flood 2\r");
        let mut got = Vec::new();
        loop {
            let chunk = h.read_output(7);
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
        }
        assert!(String::from_utf8(got).unwrap().contains("000002 of 000002"));
    }
}

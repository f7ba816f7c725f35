//! The simulated host on a TCP port: the serial line OpenIPMI `ipmi_sim`'s
//! `sol "tcp:..."` connects to. Stopped on drop.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipmigw::sim::host::SimHost;

/// The simulated host on a TCP port, for ipmi_sim's `sol "tcp:..."`.
pub struct HostLine {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u8>>>,
}

impl HostLine {
    pub fn start() -> HostLine {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve_host(listener, &flag));
        HostLine {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; returns every byte the host received.
    pub fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for HostLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_host(listener: TcpListener, stop: &AtomicBool) -> Vec<u8> {
    let mut host = SimHost::new(1);
    let mut conn = None;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((c, _)) = listener.accept() {
            c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            host.attach();
            conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match c.read(&mut buf) {
            Ok(0) => conn = None,
            Ok(n) => host.input(&buf[..n]),
            Err(_) => {}
        }
        if let Some(c) = conn.as_mut() {
            let out = host.read_output(4096);
            if !out.is_empty() && c.write_all(&out).is_err() {
                conn = None;
            }
        }
    }
    host.received().to_vec()
}

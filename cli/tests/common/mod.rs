//! Helpers for the tests of the `dchan` binary: start it as real processes on loopback, read
//! their lines with deadlines, stop them. Every wait is bounded.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long anything awaited may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A `dchan` process; killed if the test ends before it exits.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub out: mpsc::Receiver<String>,
    pub err: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `GET path` from `addr` over HTTP/1.1: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, body.to_owned())
}

/// The address in a `metrics on http://ADDR/metrics ...` line.
pub fn metrics_addr(line: &str) -> String {
    let rest = line.split("http://").nth(1).expect("an address");
    rest.split('/').next().expect("host:port").to_owned()
}

/// Start `dchan ARGS...` with piped stdin, stdout and stderr.
pub fn spawn(args: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dchan"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DCHAN_JOIN")
        .env_remove("DCHAN_COOKIE")
        .env_remove("DCHAN_TLS_CERT")
        .env_remove("DCHAN_TLS_KEY")
        .env_remove("DCHAN_TLS_CA")
        .env_remove("DCHAN_METRICS")
        .env_remove("DCHAN_ROUND_TRIP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dchan");
    let stdin = child.stdin.take();
    let out = lines(child.stdout.take().expect("stdout"));
    let err = lines(child.stderr.take().expect("stderr"));
    Proc { child, stdin, out, err }
}

/// The first line of `lines` containing `needle`, within the deadline.
fn first_with(lines: &mpsc::Receiver<String>, needle: &str, which: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => continue,
            Err(e) => panic!("no {which} line with {needle:?}: {e}"),
        }
    }
}

impl Proc {
    /// The next line of stdout, within the deadline.
    pub fn next_line(&self) -> String {
        self.out.recv_timeout(DEADLINE).unwrap_or_else(|e| panic!("no line on stdout: {e}"))
    }

    /// The first stderr line containing `needle`.
    pub fn err_line_with(&self, needle: &str) -> String {
        first_with(&self.err, needle, "stderr")
    }

    /// The first stdout line containing `needle`.
    pub fn line_with(&self, needle: &str) -> String {
        first_with(&self.out, needle, "stdout")
    }

    /// Write `text` to its stdin.
    pub fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Close its stdin.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Send a signal (`-INT`, `-TERM`, `-KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status();
        assert!(ok.expect("kill runs").success());
    }

    /// Wait for it to exit: its exit code and everything left on stdout and stderr.
    pub fn wait(mut self) -> (Option<i32>, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("status") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let out: Vec<String> = self.out.try_iter().collect();
                let err: Vec<String> = self.err.try_iter().collect();
                panic!("dchan did not exit in time; stdout: {out:?}; stderr: {err:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let drain = |rx: &mpsc::Receiver<String>| {
            let mut v = Vec::new();
            // The reader threads end with the pipes; take all they read.
            while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
                v.push(l);
            }
            v
        };
        let out = drain(&self.out);
        let err = drain(&self.err);
        let stderr_text = err.join("\n");
        assert!(!stderr_text.contains("panicked"), "dchan panicked: {stderr_text}");
        assert!(
            !stderr_text.contains("RUST_BACKTRACE"),
            "dchan printed a backtrace: {stderr_text}"
        );
        (status.code(), out, err)
    }
}

/// Run `dchan ARGS...` with `stdin` to completion.
pub fn run(args: &[&str], stdin: &str) -> (Option<i32>, Vec<String>, Vec<String>) {
    let mut p = spawn(args);
    p.write(stdin);
    p.close_stdin();
    p.wait()
}

/// A `dchan node` process that is a member: the process and its address.
pub fn node(join: Option<&str>) -> (Proc, String) {
    let mut args = vec!["node", "--listen", "127.0.0.1:0"];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let p = spawn(&args);
    let started = p.line_with("listening on ");
    let addr = started.rsplit(' ').next().expect("address").to_owned();
    (p, addr)
}

/// A cluster of `n` node processes; the address of the first.
pub fn cluster(n: usize) -> (Vec<Proc>, String) {
    let (first, addr) = node(None);
    let mut procs = vec![first];
    for _ in 1..n {
        procs.push(node(Some(&addr)).0);
    }
    (procs, addr)
}

/// An address with nothing listening: a port bound and released.
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

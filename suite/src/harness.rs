//! The parent side of a run: start workers (child processes of this binary), wait until each is
//! ready, tell them all to go, read their reports, and stop them all (stdin closed, then killed
//! if they linger). A [`Run`] stops its workers when dropped, so no measurement leaves one behind.
//! With [`count_instructions`] set, every worker runs under `valgrind --tool=callgrind`, each
//! writing its count to a file of its own (see [`crate::instructions`]). With the environment
//! variable `DCHAN_SUITE_PERF` set to a folder, every worker runs under `perf record` with call
//! graphs instead, writing `N.data` there (N counts the workers of the whole suite run, in the
//! order started; the file names are printed on stderr): a profile of both sides of a stream.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::spec::Spec;
use crate::Error;

/// A line a worker printed (`None`: its output ended), with the worker's index.
type Event = (usize, Option<String>);

/// How long a worker may take to say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where workers started from now on write their callgrind counts (`None`: they run as they
/// are): the folder, and the file of worker `i` is `i.out` in it.
static CALLGRIND: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

/// Run the workers started from now on under callgrind, writing to `dir` (or not, with `None`).
pub(crate) fn count_instructions(dir: Option<std::path::PathBuf>) {
    *CALLGRIND.lock().unwrap_or_else(|e| e.into_inner()) = dir;
}

/// The callgrind folder workers write to now, if any.
fn callgrind() -> Option<std::path::PathBuf> {
    CALLGRIND.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The workers of one measurement.
#[derive(Debug)]
pub(crate) struct Run {
    children: Vec<Child>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
}

impl Run {
    pub(crate) fn new() -> Run {
        let (events_tx, events) = mpsc::channel();
        Run { children: Vec::new(), events_tx, events }
    }

    /// Start a worker and wait until it is ready; returns what it said after `ready` (an
    /// address to dial, or nothing).
    pub(crate) fn start(&mut self, spec: &Spec) -> Result<String, Error> {
        let index = self.children.len();
        let mut command = match callgrind() {
            Some(dir) => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!(
                        "--callgrind-out-file={}",
                        dir.join(format!("{index}.out")).display()
                    ))
                    .arg("--log-file=/dev/null")
                    .arg(std::env::current_exe()?);
                c
            }
            None => match std::env::var_os("DCHAN_SUITE_PERF") {
                Some(dir) => {
                    static STARTED: std::sync::atomic::AtomicUsize =
                        std::sync::atomic::AtomicUsize::new(0);
                    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let file = std::path::Path::new(&dir).join(format!("{n}.data"));
                    eprintln!("perf: worker {index} of this run writes {}", file.display());
                    let mut c = Command::new("perf");
                    c.args(["record", "-q", "-F", "1999", "--call-graph", "dwarf,16384", "-o"])
                        .arg(file)
                        .arg("--")
                        .arg(std::env::current_exe()?);
                    c
                }
                None => Command::new(std::env::current_exe()?),
            },
        };
        let mut child = command
            .arg("worker")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().ok_or("no stdout")?;
        self.children.push(child);
        let tx = self.events_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((index, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((index, None));
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let (i, line) = self.next(deadline)?;
            if i == index {
                if let Some(rest) = line.strip_prefix("ready") {
                    return Ok(rest.trim().to_string());
                }
            }
        }
    }

    /// Tell every worker to go.
    pub(crate) fn go(&mut self) -> Result<(), Error> {
        for child in &mut self.children {
            let stdin = child.stdin.as_mut().ok_or("no stdin")?;
            stdin.write_all(b"go\n")?;
            stdin.flush()?;
        }
        Ok(())
    }

    /// The next report line of any worker; an error if one stopped or the deadline passed.
    fn next(&self, deadline: Instant) -> Result<(usize, String), Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok((i, Some(line))) => Ok((i, line)),
            Ok((i, None)) => Err(format!("worker {i} stopped (its error is above)").into()),
            Err(_) => Err("timed out waiting for the workers".into()),
        }
    }

    /// After `go`: messages per second from the first sender's `start` until receivers
    /// reported `expected` messages in all.
    pub(crate) fn throughput(&mut self, expected: u64, timeout: Duration) -> Result<f64, Error> {
        self.go()?;
        let deadline = Instant::now() + timeout;
        let mut start: Option<u64> = None;
        // Per worker: messages so far, time of the last.
        let mut done = vec![(0u64, 0u64); self.children.len()];
        // Until every message is in and the start is known: the receivers' and the senders'
        // lines come through different pipes, in no fixed order.
        while done.iter().map(|d| d.0).sum::<u64>() < expected || start.is_none() {
            let (i, line) = self.next(deadline).map_err(|e| {
                let got: u64 = done.iter().map(|d| d.0).sum();
                format!("{e}; {got} of {expected} messages received")
            })?;
            let nums: Vec<u64> = line.split(' ').skip(1).filter_map(|w| w.parse().ok()).collect();
            match (line.split(' ').next(), nums.as_slice()) {
                (Some("start"), [t]) => start = Some(start.map_or(*t, |s| s.min(*t))),
                (Some("done"), [n, t]) => done[i] = (*n, *t),
                _ => {}
            }
        }
        let start = start.ok_or("no sender reported its start")?;
        let end = done.iter().map(|d| d.1).max().unwrap_or(start);
        Ok(expected as f64 / (end.saturating_sub(start) as f64 / 1e9).max(1e-9))
    }

    /// After `go`: the `rtt N P50 P99` line of one worker, as (p50, p99) in nanoseconds.
    pub(crate) fn latency(&mut self, timeout: Duration) -> Result<(u64, u64), Error> {
        self.go()?;
        let deadline = Instant::now() + timeout;
        loop {
            let (_, line) = self.next(deadline)?;
            let nums: Vec<u64> = line.split(' ').skip(1).filter_map(|w| w.parse().ok()).collect();
            if let (Some("rtt"), [_, p50, p99]) = (line.split(' ').next(), nums.as_slice()) {
                return Ok((*p50, *p99));
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        // (Under callgrind or perf a worker takes longer to end, and must end by itself to
        // write its file.)
        let grace = if callgrind().is_some() {
            300
        } else if std::env::var_os("DCHAN_SUITE_PERF").is_some() {
            60
        } else {
            10
        };
        let deadline = Instant::now() + Duration::from_secs(grace);
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

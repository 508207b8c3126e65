//! The suite's output: every measurement (median of the rounds, and each round), then dchan's
//! ratios against the baselines beside their targets, as Markdown tables.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What one measurement gave.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// Messages (deliveries) per second.
    Rate(f64),
    /// Round trip (or registration) time percentiles, nanoseconds.
    Latency { p50: u64, p99: u64 },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Rate(r) => write!(f, "{:.2} M msgs/s", r / 1e6),
            Outcome::Latency { p50, p99 } => {
                write!(f, "p50 {:.1} us, p99 {:.1} us", *p50 as f64 / 1e3, *p99 as f64 / 1e3)
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// The median over the rounds that worked (rates; or p50 and p99 each on its own).
fn summary(rounds: &[Result<Outcome, String>]) -> Option<Outcome> {
    let ok: Vec<Outcome> = rounds.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    match ok.first()? {
        Outcome::Rate(_) => median(
            ok.iter()
                .filter_map(|o| if let Outcome::Rate(r) = o { Some(*r) } else { None })
                .collect(),
        )
        .map(Outcome::Rate),
        Outcome::Latency { .. } => {
            let (p50, p99): (Vec<f64>, Vec<f64>) = ok
                .iter()
                .filter_map(|o| match o {
                    Outcome::Latency { p50, p99 } => Some((*p50 as f64, *p99 as f64)),
                    Outcome::Rate(_) => None,
                })
                .unzip();
            Some(Outcome::Latency { p50: median(p50)? as u64, p99: median(p99)? as u64 })
        }
    }
}

/// What a target compares.
enum Target {
    /// `dchan / baseline` throughput at least this.
    AtLeast(&'static str, &'static str, f64),
    /// `dchan / baseline` p50 round trip at most this.
    P50AtMost(&'static str, &'static str, f64),
    /// p99 under this many microseconds.
    P99Under(&'static str, f64),
}

const TARGETS: &[Target] = &[
    Target::AtLeast("dchan 1->1", "nats 1->1", 5.0),
    Target::AtLeast("dchan 1->1", "zenoh 1->1", 2.0),
    Target::AtLeast("dchan 1->1", "raw tcp rmp batched", 0.8),
    Target::AtLeast("dchan 1->1", "raw tcp 64 B frames", 0.0),
    Target::AtLeast("dchan 1->1 recv_many", "raw tcp rmp batched", 0.0),
    Target::AtLeast("dchan 1->1 tls", "dchan 1->1", 0.7),
    Target::AtLeast("dchan 1->1 1 KiB", "raw tcp rmp batched 1 KiB", 0.0),
    Target::AtLeast("dchan queue 1->2", "nats queue group 2", 5.0),
    Target::AtLeast("dchan queue 4->4", "dchan 1->1", 0.0),
    Target::AtLeast("dchan broadcast 3", "nats fan-out 3", 3.0),
    // Against the same structs over raw TCP to as many processes: what the machine allows.
    Target::AtLeast("dchan queue 1->2", "raw tcp rmp dealt to 2", 0.0),
    Target::AtLeast("dchan broadcast 3", "raw tcp rmp fan-out 3", 0.0),
    Target::AtLeast("dchan same node", "tokio mpsc", 0.9),
    // What serving and publishing metrics costs (issue 20: within 3%).
    Target::AtLeast("dchan same node metrics", "dchan same node", 0.97),
    Target::AtLeast("dchan 1->1 metrics", "dchan 1->1", 0.97),
    Target::P50AtMost("dchan ping-pong", "raw tcp ping-pong", 1.2),
    Target::P50AtMost("dchan ping-pong, busy core", "raw tcp ping-pong, busy core", 1.2),
    Target::P50AtMost("dchan ping-pong", "zenoh ping-pong", 0.0),
    Target::P50AtMost("dchan ping-pong", "nats request/reply", 0.0),
    Target::P50AtMost("dchan request/reply", "dchan ping-pong", 1.2),
    Target::P50AtMost("dchan request/reply", "nats request/reply", 1.0),
    Target::P50AtMost("dchan request/reply, busy core", "nats request/reply, busy core", 1.0),
    Target::AtLeast(
        "dchan requests 64 in flight, 2 answering",
        "nats requests 64 in flight, queue group 2",
        3.0,
    ),
    Target::P99Under("dchan registration, 3 nodes", 2000.0),
];

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |k| k.trim().to_string());
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

pub(crate) fn print(
    order: &[String],
    results: &BTreeMap<String, Vec<Result<Outcome, String>>>,
    rounds: usize,
    took: Duration,
) {
    let get = |name: &str| results.get(name).and_then(|r| summary(r));
    println!("dchan benchmark suite: {}; {rounds} round(s) in {:.0} s; loopback, one program per process\n", machine(), took.as_secs_f64());
    println!("| measurement | median | each round |");
    println!("|---|---|---|");
    for name in order {
        let rounds = &results[name];
        let each: Vec<String> = rounds
            .iter()
            .map(|r| match r {
                Ok(o) => o.to_string(),
                Err(e) => format!("failed: {e}"),
            })
            .collect();
        let median = get(name).map_or_else(|| "-".to_string(), |o| o.to_string());
        println!("| {name} | {median} | {} |", each.join("; "));
    }
    println!("\n| dchan against | ratio | target | met |");
    println!("|---|---|---|---|");
    for t in TARGETS {
        let (what, ratio, target, met) = match *t {
            Target::AtLeast(a, b, min) => {
                let r = match (get(a), get(b)) {
                    (Some(Outcome::Rate(x)), Some(Outcome::Rate(y))) => Some(x / y),
                    _ => None,
                };
                (format!("{a} / {b} (throughput)"), r, min, r.map(|r| r >= min))
            }
            Target::P50AtMost(a, b, max) => {
                let r = match (get(a), get(b)) {
                    (
                        Some(Outcome::Latency { p50: x, .. }),
                        Some(Outcome::Latency { p50: y, .. }),
                    ) => Some(x as f64 / y as f64),
                    _ => None,
                };
                (format!("{a} / {b} (p50 round trip)"), r, max, r.map(|r| r <= max))
            }
            Target::P99Under(a, max_us) => {
                let r = match get(a) {
                    Some(Outcome::Latency { p99, .. }) => Some(p99 as f64 / 1e3),
                    _ => None,
                };
                let line = format!(
                    "| {a}: p99 | {} | < {max_us:.0} us | {} |",
                    r.map_or("-".into(), |r| format!("{r:.0} us")),
                    r.map_or("-", |r| if r < max_us { "yes" } else { "no" })
                );
                println!("{line}");
                continue;
            }
        };
        let ratio = ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"));
        let (target, met) = if target == 0.0 {
            ("-".to_string(), "-")
        } else {
            let sign = if matches!(t, Target::AtLeast(..)) { ">=" } else { "<=" };
            (format!("{sign} {target}x"), met.map_or("-", |m| if m { "yes" } else { "no" }))
        };
        println!("| {what} | {ratio} | {target} | {met} |");
    }
}

//! Instructions per message: the figure this shared machine's noise moves least. Each worker
//! of a measurement runs under `valgrind --tool=callgrind` at two counts, `N` and `5N`
//! messages; the difference of each process's count over the `4N` messages between them is
//! what a message costs it (start-up, connecting and shutting down cancel out). By default
//! dchan 1->1 beside the raw TCP baseline that carries the same rmp-serde structs batched, the
//! ceiling of dchan's path (`suite/run --instructions`, `--instructions 50000` for another N,
//! `--only` for other measurements). A ping-pong's messages are its round trips, each worker's
//! count over both directions; it also runs a tenth more to warm up, so its figure is that of
//! 1.1 round trips (the same for every ping-pong row: their ratios hold).

use std::collections::BTreeMap;

use super::{Ctx, Measure};
use crate::harness::count_instructions;
use crate::Error;

/// The measurements compared when `--only` does not say.
const DEFAULT: [&str; 2] = ["raw tcp rmp batched", "dchan 1->1"];

/// Measure `measures` (all of them if `only` named some, else [`DEFAULT`]) at `n` and `5n`
/// messages and print the table.
pub(super) fn run(
    measures: Vec<Measure>,
    only: bool,
    n: u64,
    ctx: impl Fn(u64) -> Ctx,
) -> Result<(), Error> {
    let measures: Vec<Measure> =
        measures.into_iter().filter(|m| only || DEFAULT.contains(&m.name.as_str())).collect();
    let root = std::env::temp_dir().join(format!("dchan-suite-callgrind-{}", std::process::id()));
    let mut rows: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut failed = 0;
    for m in &measures {
        let mut counts = Vec::new();
        for count in [n, 5 * n] {
            let dir = root
                .join(format!("{}-{count}", m.name.replace(|c: char| !c.is_alphanumeric(), "_")));
            std::fs::create_dir_all(&dir)?;
            eprint!("instructions: {} at {count} messages ... ", m.name);
            count_instructions(Some(dir.clone()));
            // (The run's workers are stopped, and have written their counts, when it returns.)
            let outcome = (m.run)(&ctx(count), 0);
            count_instructions(None);
            match outcome.and_then(|_| read(&dir)) {
                Ok(per_worker) => {
                    eprintln!("{per_worker:?}");
                    counts.push(per_worker);
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    failed += 1;
                }
            }
        }
        if let [small, large] = &counts[..] {
            let each: Vec<f64> = small
                .iter()
                .zip(large)
                .map(|(s, l)| l.saturating_sub(*s) as f64 / (4 * n) as f64)
                .collect();
            rows.insert(m.name.clone(), each);
        }
    }
    // (Kept, for callgrind_annotate, with DCHAN_SUITE_KEEP_CALLGRIND set.)
    if std::env::var_os("DCHAN_SUITE_KEEP_CALLGRIND").is_some() {
        eprintln!("instructions: callgrind's files are in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    print(&measures, &rows, n);
    if failed > 0 {
        return Err(format!("{failed} callgrind run(s) failed").into());
    }
    Ok(())
}

/// The instruction count of each worker's file in `dir` (`0.out`, `1.out`, ...), in order.
fn read(dir: &std::path::Path) -> Result<Vec<u64>, Error> {
    let mut counts = Vec::new();
    for i in 0.. {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{i}.out"))) else { break };
        let summary = text
            .lines()
            .find_map(|l| l.strip_prefix("summary: "))
            .ok_or_else(|| format!("no summary in callgrind's file of worker {i}"))?;
        counts.push(summary.trim().parse()?);
    }
    if counts.is_empty() {
        return Err("no callgrind file (is valgrind installed?)".into());
    }
    Ok(counts)
}

/// The table: per process (the receiving side first: it starts first), their sum, and the
/// sum's ratio to the first measurement's.
fn print(measures: &[Measure], rows: &BTreeMap<String, Vec<f64>>, n: u64) {
    println!("Instructions per message (callgrind; each process's count at {n} and {} messages, the difference over {}):", 5 * n, 4 * n);
    println!();
    println!("| measurement | per process (receiving side first) | in all | x first row |");
    println!("|---|---|---|---|");
    let mut first = None;
    for m in measures {
        let Some(each) = rows.get(&m.name) else {
            println!("| {} | failed | | |", m.name);
            continue;
        };
        let all: f64 = each.iter().sum();
        let base = *first.get_or_insert(all);
        let per: Vec<String> = each.iter().map(|x| format!("{x:.0}")).collect();
        println!("| {} | {} | {all:.0} | {:.2}x |", m.name, per.join(" + "), all / base);
    }
}

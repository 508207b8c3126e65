//! The shape of `src/` (STYLE.md, README "Layout"): imports go down the layers, no two files import
//! each other (directly or round a circle) but the pairs that are one unit, and no file is over
//! 600 lines. Read from the sources: every `crate::` path outside a comment is an import of the
//! file it names (a root re-export such as `crate::Node` counts as the module it comes from).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a file of `src/` may have, its unit tests included.
const MAX_LINES: usize = 600;

/// Files that import each other because their two types are one unit.
const UNITS: &[(&str, &str)] = &[
    // A peer owns its link; the link's loops are the peer's connection.
    ("link/peer.rs", "link/connection.rs"),
    // A router's targets are inboxes; an inbox hands back to its channel's router.
    ("channel/router.rs", "channel/inbox/mod.rs"),
];

/// A layer's rank: a file may import its own layer and those of lower rank.
fn rank(file: &str) -> Option<u8> {
    match file.split('/').next()? {
        "link" => Some(1),
        "cluster" => Some(2),
        "channel" => Some(3),
        "node" => Some(4),
        "lib.rs" => None,
        _ => Some(0), // the root: shared vocabulary and primitives
    }
}

/// The modules behind the crate root's public re-exports.
fn reexport(name: &str) -> Option<&'static str> {
    Some(match name {
        "Node" | "NodeBuilder" | "ReceiverBuilder" | "AckReceiverBuilder" | "DEFAULT_CAPACITY" => {
            "node/mod.rs"
        }
        "Endpoint" => "node/endpoint.rs",
        "ClusterWatch" => "node/cluster_watch.rs",
        "Sender" => "channel/sender.rs",
        "Receiver" | "AckReceiver" | "Delivery" => "channel/receiver.rs",
        "ChannelInfo" | "EndpointInfo" | "UNTYPED" => "cluster/registry.rs",
        "ClusterInfo" | "Member" | "Role" => "cluster/view.rs",
        "EndpointKind" => "rpc.rs",
        "TlsConfig" => "link/transport.rs",
        "Error" | "SendError" | "SendTimeoutError" | "TryRecvError" | "TrySendError" => "error.rs",
        "ChannelStats" | "NodeStats" | "DeadLetter" => "report.rs",
        _ => return None, // rmpv, serde, rustls, Value: other crates
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file a module path names, given the files that exist: the longest prefix of `segments`
/// that is a file (`a/b.rs`) or a folder's `mod.rs`.
fn file_of(segments: &[&str], files: &BTreeSet<String>) -> Option<String> {
    for n in (1..=segments.len()).rev() {
        let joined = segments[..n].join("/");
        for candidate in [format!("{joined}.rs"), format!("{joined}/mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Every `crate::a::b::C` in `code` (comments removed), as its segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let boundary = rest[..i].chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        rest = &rest[i + "crate::".len()..];
        if !boundary {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path: Vec<String> =
            rest[..end].split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if !path.is_empty() {
            out.push(path);
        } else if rest.starts_with('{') {
            // `crate::{a, b}`: each name in the braces.
            let close = rest.find('}').unwrap_or(rest.len());
            for item in rest[1..close].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(item.split("::").map(str::to_owned).collect());
                }
            }
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each file of `src/` (relative, `/`-separated) with its line count and the files it imports.
fn graph() -> BTreeMap<String, (usize, BTreeSet<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&root, &mut paths);
    let rel =
        |p: &Path| p.strip_prefix(&root).expect("under src").to_string_lossy().replace('\\', "/");
    let files: BTreeSet<String> = paths.iter().map(|p| rel(p)).collect();
    let mut out = BTreeMap::new();
    for path in &paths {
        let name = rel(path);
        let text = std::fs::read_to_string(path).expect("a readable source");
        let code = strip_comments(&text);
        let mut imports = BTreeSet::new();
        for segs in crate_paths(&code) {
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let target = match segs.first() {
                Some(s) if s.starts_with(|c: char| c.is_uppercase()) => {
                    reexport(s).map(str::to_owned)
                }
                _ => file_of(&segs, &files),
            };
            if let Some(t) = target.filter(|t| *t != name) {
                imports.insert(t);
            }
        }
        // `super::x` from a file of a folder: the folder's `mod.rs`, or its sibling `x`.
        let dir = name.rsplit_once('/').map(|(d, _)| d.to_owned());
        if let Some(dir) = dir.filter(|_| !name.ends_with("mod.rs")) {
            for line in code.lines() {
                let Some(i) = line.find("super::") else { continue };
                let next: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if next == "super" || next.is_empty() {
                    continue;
                }
                let sibling = format!("{dir}/{next}.rs");
                let target =
                    if files.contains(&sibling) { sibling } else { format!("{dir}/mod.rs") };
                if target != name && files.contains(&target) {
                    imports.insert(target);
                }
            }
        }
        out.insert(name, (text.lines().count(), imports));
    }
    out
}

#[test]
fn imports_go_down_the_layers() {
    let mut upward = Vec::new();
    for (file, (_, imports)) in graph() {
        let Some(mine) = rank(&file) else { continue };
        for target in imports {
            if rank(&target).is_some_and(|theirs| theirs > mine) {
                upward.push(format!("{file} -> {target}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a lower layer to a higher one:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_import_circle_but_the_units() {
    let g = graph();
    let units: BTreeSet<(String, String)> = UNITS
        .iter()
        .flat_map(|(a, b)| [(a.to_string(), b.to_string()), (b.to_string(), a.to_string())])
        .collect();
    // Edges of a unit count once: the unit is one node of the graph.
    let node_of = |f: &str| -> String {
        UNITS
            .iter()
            .find(|(a, b)| *a == f || *b == f)
            .map(|(a, b)| format!("{a}+{b}"))
            .unwrap_or_else(|| f.to_owned())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, (_, imports)) in &g {
        for t in imports {
            if units.contains(&(file.clone(), t.clone())) {
                continue;
            }
            let (a, b) = (node_of(file), node_of(t));
            if a != b {
                edges.entry(a).or_default().insert(b);
            }
        }
    }
    // A circle: some file reaches itself. Depth-first from each file, reporting the path.
    fn reach(
        from: &str,
        goal: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in edges.get(from).into_iter().flatten() {
            if next == goal {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if reach(next, goal, edges, seen, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        let found = reach(start, start, &edges, &mut BTreeSet::new(), &mut path);
        assert!(!found, "an import circle: {}", path.join(" -> "));
    }
}

#[test]
fn no_file_over_600_lines() {
    let long: Vec<String> = graph()
        .into_iter()
        .filter(|(_, (lines, _))| *lines > MAX_LINES)
        .map(|(f, (lines, _))| format!("src/{f}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n{}", long.join("\n"));
}

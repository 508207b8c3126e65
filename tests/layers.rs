//! The shape of `src/` (README "Layout"): imports go down the layers, no two files import
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
    ("channel/router/mod.rs", "channel/inbox/mod.rs"),
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
        "Node" | "DEFAULT_CAPACITY" => "node/mod.rs",
        "NodeBuilder" => "node/builder.rs",
        "ReceiverBuilder" | "AckReceiverBuilder" => "node/endpoints.rs",
        "Endpoint" => "node/endpoint.rs",
        "ClusterWatch" => "node/cluster_watch.rs",
        "Sender" => "channel/sender.rs",
        "Receiver" | "AckReceiver" | "Delivery" => "channel/receiver.rs",
        "ChannelInfo" | "EndpointInfo" | "UNTYPED" => "cluster/registry/mod.rs",
        "ClusterInfo" | "Member" | "Role" => "cluster/view.rs",
        "EndpointKind" => "rpc.rs",
        "TlsConfig" => "link/transport.rs",
        "Error" | "Cause" | "SendError" | "SendTimeoutError" | "TryRecvError" | "TrySendError" => {
            "error.rs"
        }
        "ChannelStats" | "NodeStats" | "DeadLetter" => "report.rs",
        _ => return None,
    })
}

/// Root re-exports of other crates' items (not modules of this crate).
const FOREIGN: &[&str] = &["Value", "ReadmeDoctests"];

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
fn file_of(segments: &[String], files: &BTreeSet<String>) -> Option<String> {
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

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are both `[a, b]`.
fn module_of(file: &str) -> Vec<String> {
    let trimmed = file.strip_suffix("/mod.rs").or_else(|| file.strip_suffix(".rs")).unwrap_or(file);
    trimmed.split('/').map(str::to_owned).collect()
}

/// The use tree at the start of `text` (`a::b::{c, d::{e, f}}`, `X`, `*`), expanded into paths.
fn use_tree(text: &str) -> Vec<Vec<String>> {
    fn parse(chars: &[char], i: &mut usize) -> Vec<Vec<String>> {
        let mut prefix = Vec::new();
        loop {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
            if *i < chars.len() && chars[*i] == '{' {
                *i += 1;
                let mut out = Vec::new();
                loop {
                    while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == ',') {
                        *i += 1;
                    }
                    if *i >= chars.len() || chars[*i] == '}' {
                        *i += 1;
                        break;
                    }
                    let before = *i;
                    for tail in parse(chars, i) {
                        let mut p = prefix.clone();
                        p.extend(tail);
                        out.push(p);
                    }
                    if *i == before {
                        *i += 1; // not a path: step over it
                    }
                }
                return out;
            }
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i == start {
                return if prefix.is_empty() { Vec::new() } else { vec![prefix] };
            }
            prefix.push(chars[start..*i].iter().collect());
            if chars.get(*i) == Some(&':') && chars.get(*i + 1) == Some(&':') {
                *i += 2;
            } else {
                return vec![prefix];
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    parse(&chars, &mut 0)
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path `code` (of the module `me`) names: `crate::…`, `super::…` (any number of
/// them), and in `use` items, the modules `me` declares (`use child::…`). Each as absolute
/// segments from the crate root.
fn named_paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let boundary = |i: usize| {
        i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':')
    };
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        if boundary(i) && rest.starts_with("crate::") {
            out.extend(use_tree(&rest["crate::".len()..]));
            i += "crate::".len();
            continue;
        }
        if boundary(i) && rest.starts_with("super::") {
            let mut base = me.to_vec();
            let mut r = rest;
            while let Some(after) = r.strip_prefix("super::") {
                base.pop();
                r = after;
            }
            for tail in use_tree(r) {
                let mut p = base.clone();
                p.extend(tail);
                out.push(p);
            }
            i += rest.len() - r.len();
            continue;
        }
        if boundary(i) && rest.starts_with("use ") {
            for tail in use_tree(&rest[4..]) {
                if tail.first().is_some_and(|c| children.contains(c)) {
                    let mut p = me.to_vec();
                    p.extend(tail);
                    out.push(p);
                }
            }
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    out
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
        let me = module_of(&name);
        let mut imports = BTreeSet::new();
        for segs in named_paths(&code, &me) {
            let target = match segs.first() {
                Some(s) if s.starts_with(|c: char| c.is_uppercase()) => {
                    let found = reexport(s).map(str::to_owned);
                    assert!(
                        found.is_some() || FOREIGN.contains(&s.as_str()),
                        "{name}: crate::{s} is a root re-export the check does not know: add it to `reexport`"
                    );
                    found
                }
                _ => file_of(&segs, &files),
            };
            if let Some(t) = target.filter(|t| *t != name && t != "lib.rs") {
                imports.insert(t);
            }
        }
        out.insert(name, (text.lines().count(), imports));
    }
    out
}

#[test]
fn the_check_reads_every_form_of_import() {
    let me: Vec<String> = ["channel", "inbox", "ack"].map(String::from).to_vec();
    let code = "use crate::{ids::{A, B}, node::Core};\nuse super::super::node::X;\nuse super::{Inbox, Item};\nmod kid;\npub use kid::Y;\nlet s = \"tcp://x\"; crate::link::wire::encode();";
    let mut got: Vec<String> =
        named_paths(&strip_comments(code), &me).into_iter().map(|p| p.join("::")).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "channel::inbox::Inbox",
            "channel::inbox::Item",
            "channel::inbox::ack::kid::Y",
            "channel::node::X",
            "ids::A",
            "ids::B",
            "link::wire::encode",
            "node::Core",
        ]
    );
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

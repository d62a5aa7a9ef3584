//! The layering rule of `ARCHITECTURE.md` ("Module layers"): the domain crate's top-level
//! modules (`marketplace/domain/src`) depend on each other without a cycle, so each can be
//! read, changed and tested with only the modules below it. A module depends on another when
//! its code names `crate::<other>` (in a path or a `use crate::{a, b::c}` group), outside
//! comments, test modules (from a `#[cfg(test)]` line at the start of a line) and `tests.rs`
//! files or `tests/` folders. The exceptions below take part in no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules left out of the graph, each with the reason `ARCHITECTURE.md` gives.
const EXCEPTIONS: &[(&str, &str)] = &[(
    "market",
    "the context every domain function takes (database, registry, host, clock, the runner's \
     state); it is built from every module's configuration and every module reads it",
)];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn domain_source() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .join("marketplace/domain/src")
}

/// The top-level modules: each `x.rs` (but `lib.rs`) and each folder `x/`.
fn modules(source: &Path) -> BTreeSet<String> {
    std::fs::read_dir(source)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            if path.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").filter(|stem| *stem != "lib").map(str::to_string)
            }
        })
        .collect()
}

/// Every `.rs` file under `folder` but test files and folders.
fn code_files(folder: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if name != "tests" {
                code_files(&path, found);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            found.push(path);
        }
    }
}

/// `text` before its test module, without comments.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines().take_while(|line| !line.starts_with("#[cfg(test)]")) {
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn ident_at(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules `code` names after `crate::`: `crate::a::b` gives `a`, and a group
/// `crate::{a, b::{c, d}}` gives `a` and `b`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_starts = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_starts = true,
                    c if item_starts && (c.is_alphanumeric() || c == '_') => {
                        named.insert(ident_at(&group[i..]).to_string());
                        item_starts = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(ident_at(rest).to_string());
        }
    }
    named
}

/// Which top-level module depends on which, the exceptions left out.
fn domain_graph(source: &Path) -> Graph {
    let modules = modules(source);
    let excepted: BTreeSet<&str> = EXCEPTIONS.iter().map(|(module, _)| *module).collect();
    let mut files = Vec::new();
    code_files(source, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(source).unwrap().to_string_lossy().replace('\\', "/");
        let first = relative.split('/').next().unwrap_or_default();
        let from = first.strip_suffix(".rs").unwrap_or(first).to_string();
        if from == "lib" || excepted.contains(from.as_str()) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let to = named_modules(&code)
            .into_iter()
            .filter(|m| *m != from && modules.contains(m) && !excepted.contains(m.as_str()))
            .collect::<Vec<_>>();
        graph.entry(from).or_default().extend(to);
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan's algorithm): each is
/// a set of modules that reach each other, a cycle.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(walk: &mut Walk<'g>, node: &'g str) {
        let number = walk.index.len();
        walk.index.insert(node, number);
        walk.low.insert(node, number);
        walk.stack.push(node);
        for next in walk.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !walk.index.contains_key(next) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&next) {
                let low = walk.low[node].min(walk.index[next]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let at = walk.stack.iter().rposition(|n| *n == node).unwrap();
            let mut component: Vec<String> = walk.stack.drain(at..).map(str::to_string).collect();
            if component.len() > 1 {
                component.sort();
                walk.found.push(component);
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

#[test]
fn the_domain_modules_form_no_cycle() {
    let source = domain_source();
    let graph = domain_graph(&source);
    assert!(graph.len() > 20, "the walk found only {} modules", graph.len());
    assert!(graph["billing"].contains("installs"), "the walk misses edges: {:?}", graph["billing"]);
    let found = cycles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|cycle| {
            let edges: Vec<String> = cycle
                .iter()
                .map(|m| {
                    let inside: Vec<&str> =
                        graph[m].iter().filter(|to| cycle.contains(to)).map(String::as_str).collect();
                    format!("  {m} -> {}", inside.join(", "))
                })
                .collect();
            format!("{}\n{}", cycle.join(", "), edges.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "these domain modules depend on each other in a cycle; move what the lower one needs below it \
         (ARCHITECTURE.md, \"Module layers\"):\n{}",
        described.join("\n")
    );
    let modules = modules(&source);
    for (module, reason) in EXCEPTIONS {
        assert!(modules.contains(*module), "the exception {module} names no module any more: {reason}");
    }
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph.entry((*from).to_string()).or_default().insert((*to).to_string());
        graph.entry((*to).to_string()).or_default();
    }
    graph
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_passes_a_dag() {
    let dag =
        graph_of(&[("billing", "installs"), ("installs", "catalog"), ("billing", "catalog"), ("runner", "billing")]);
    assert!(cycles(&dag).is_empty());
    let cyclic =
        graph_of(&[("billing", "installs"), ("installs", "catalog"), ("catalog", "billing"), ("runner", "billing")]);
    assert_eq!(cycles(&cyclic), [["billing", "catalog", "installs"]]);
    let two = graph_of(&[("a", "b"), ("b", "a"), ("c", "d"), ("d", "c"), ("b", "c")]);
    assert_eq!(cycles(&two).len(), 2);
}

#[test]
fn references_are_read_from_paths_and_use_groups_outside_comments_and_tests() {
    let code = code_of(
        "use crate::error::MarketError;\nuse crate::{accounts::Caller, billing::{plans, run}, market};\n\
         // crate::runner in a comment\nfn f() { crate::installs::get(); }\n#[cfg(test)]\nmod tests { use crate::kv; }\n",
    );
    let named: Vec<String> = named_modules(&code).into_iter().collect();
    assert_eq!(named, ["accounts", "billing", "error", "installs", "market"]);
}

//! Checks of ARCHITECTURE.md's invariants against the workspace itself:
//!
//! - every workspace member has a row in [`CRATES`], and its vramroute dependencies
//!   (normal, dev, build, target-specific) are among the row's allowed ones;
//! - ARCHITECTURE.md has a section for every row with an `**Architecture invariant:**`
//!   paragraph that says what the row encodes, so doc and table change together;
//! - Redis key text (`sollol:` / `vramroute:` inside a string literal) appears in Rust
//!   source only in `crates/registry`, the one crate that knows key names.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Which vramroute crates a workspace member may depend on.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    /// Exactly these (package names), nothing else.
    Only(&'static [&'static str]),
    /// Any library crate (the packages of [`LIBRARIES`]).
    Libraries,
    /// Any vramroute crate.
    Any,
}

/// One workspace member and its rule.
struct Rule {
    /// Folder, relative to the workspace root.
    path: &'static str,
    /// Package name.
    package: &'static str,
    /// Skip the row when the folder does not exist (crates being created).
    optional: bool,
    allowed: Allowed,
    /// Phrases the member's `**Architecture invariant:**` paragraph in ARCHITECTURE.md
    /// must contain: the dependency rule in words.
    doc_says: &'static [&'static str],
}

/// The library crates (what examples and benches may use).
const LIBRARIES: &[&str] = &[
    "vramroute-probe",
    "vramroute-registry",
    "vramroute-alloc",
    "vramroute-router",
    "vramroute-ollama",
    "vramroute-node",
    "vramroute-cluster",
    "vramroute-gateway",
    "vramroute-rpc",
    "vramroute-serve",
];

/// The allowed internal dependency graph (ARCHITECTURE.md's invariants).
const CRATES: &[Rule] = &[
    Rule {
        path: "crates/probe",
        package: "vramroute-probe",
        optional: false,
        allowed: Allowed::Only(&[]),
        doc_says: &["its only vramroute dependency is none"],
    },
    Rule {
        path: "crates/registry",
        package: "vramroute-registry",
        optional: false,
        allowed: Allowed::Only(&[]),
        doc_says: &["depends on no other vramroute crate"],
    },
    Rule {
        path: "crates/router",
        package: "vramroute-router",
        optional: false,
        allowed: Allowed::Only(&[]),
        doc_says: &["depends on no other vramroute crate"],
    },
    Rule {
        path: "crates/ollama",
        package: "vramroute-ollama",
        optional: false,
        allowed: Allowed::Only(&[]),
        doc_says: &["depends on no other vramroute crate"],
    },
    Rule {
        path: "crates/rpc",
        package: "vramroute-rpc",
        optional: false,
        allowed: Allowed::Only(&[]),
        doc_says: &["depends on no other vramroute crate"],
    },
    Rule {
        path: "crates/serve",
        package: "vramroute-serve",
        optional: false,
        allowed: Allowed::Only(&[]),
        doc_says: &["depends on no other vramroute crate"],
    },
    Rule {
        path: "crates/alloc",
        package: "vramroute-alloc",
        optional: false,
        // router only for the model-name rule.
        allowed: Allowed::Only(&["vramroute-probe", "vramroute-router"]),
        doc_says: &["`probe`", "`router`"],
    },
    Rule {
        path: "crates/node",
        package: "vramroute-node",
        optional: false,
        allowed: Allowed::Only(&[
            "vramroute-probe",
            "vramroute-alloc",
            "vramroute-ollama",
            "vramroute-registry",
        ]),
        doc_says: &["`probe`", "`alloc`", "`ollama`", "`registry`"],
    },
    Rule {
        path: "crates/cluster",
        package: "vramroute-cluster",
        optional: false,
        allowed: Allowed::Only(&[
            "vramroute-registry",
            "vramroute-router",
            "vramroute-alloc",
            "vramroute-ollama",
            "vramroute-rpc",
        ]),
        doc_says: &["`registry`", "`router`", "`alloc`", "`ollama`", "`rpc`"],
    },
    Rule {
        path: "crates/gateway",
        package: "vramroute-gateway",
        optional: false,
        // ollama and registry: dev-dependencies only (the fake server, record types).
        allowed: Allowed::Only(&[
            "vramroute-cluster",
            "vramroute-router",
            "vramroute-serve",
            "vramroute-ollama",
            "vramroute-registry",
        ]),
        doc_says: &["`cluster`", "`router`", "`serve`"],
    },
    Rule {
        path: "bins/reporter",
        package: "vramroute-reporter",
        optional: false,
        allowed: Allowed::Only(&[
            "vramroute-probe",
            "vramroute-registry",
            "vramroute-alloc",
            "vramroute-ollama",
            "vramroute-node",
            "vramroute-serve",
        ]),
        doc_says: &[
            "the reporter depends only on `probe`, `registry`, `alloc`, `ollama`, `node` and `serve`",
            "never on `router` or `cluster`",
        ],
    },
    Rule {
        path: "bins/coordinator",
        package: "vramroute-coordinator",
        optional: false,
        allowed: Allowed::Any,
        doc_says: &["the coordinator may use any library crate"],
    },
    Rule {
        path: "benches",
        package: "vramroute-benches",
        optional: false,
        allowed: Allowed::Libraries,
        doc_says: &["library crates"],
    },
    Rule {
        path: "examples",
        package: "vramroute-examples",
        optional: false,
        allowed: Allowed::Libraries,
        doc_says: &["library crates"],
    },
];

/// Files outside `crates/registry` allowed to hold Redis key text, with the number of
/// hits each may hold: none (every other crate builds keys with `vramroute_registry::keys`).
const KEY_TEXT_ALLOWED: &[(&str, usize)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/ has a parent")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn manifest(path: &Path) -> toml::Table {
    read(path)
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// The vramroute packages a manifest depends on, in any dependency table, except itself.
fn vramroute_deps(manifest: &toml::Table, own: &str) -> Vec<String> {
    let mut tables: Vec<&toml::Table> = Vec::new();
    let kinds = ["dependencies", "dev-dependencies", "build-dependencies"];
    for kind in kinds {
        if let Some(t) = manifest.get(kind).and_then(|v| v.as_table()) {
            tables.push(t);
        }
    }
    if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
        for target in targets.values().filter_map(|v| v.as_table()) {
            for kind in kinds {
                if let Some(t) = target.get(kind).and_then(|v| v.as_table()) {
                    tables.push(t);
                }
            }
        }
    }
    let mut out: Vec<String> = tables
        .into_iter()
        .flat_map(|t| t.iter())
        .map(|(key, value)| {
            value
                .get("package")
                .and_then(|p| p.as_str())
                .unwrap_or(key)
                .to_owned()
        })
        .filter(|name| name.starts_with("vramroute-") && name != own)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn is_allowed(allowed: Allowed, dep: &str) -> bool {
    match allowed {
        Allowed::Only(list) => list.contains(&dep),
        Allowed::Libraries => LIBRARIES.contains(&dep),
        Allowed::Any => true,
    }
}

fn present(rule: &Rule) -> bool {
    !rule.optional || root().join(rule.path).join("Cargo.toml").exists()
}

#[test]
fn every_workspace_member_has_a_rule() {
    let workspace = manifest(&root().join("Cargo.toml"));
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace.members is an array");
    assert!(!members.is_empty());
    for member in members {
        let member = member.as_str().expect("members are strings");
        assert!(
            CRATES.iter().any(|r| r.path == member),
            "workspace member {member} has no row in CRATES (tests/it/architecture.rs): \
             add its allowed vramroute dependencies there and an invariant to ARCHITECTURE.md"
        );
    }
}

#[test]
fn vramroute_dependencies_follow_the_architecture() {
    let mut violations = Vec::new();
    for rule in CRATES.iter().filter(|r| present(r)) {
        let path = root().join(rule.path).join("Cargo.toml");
        let m = manifest(&path);
        let package = m["package"]["name"].as_str().unwrap_or_default();
        assert_eq!(package, rule.package, "package name of {}", rule.path);
        for dep in vramroute_deps(&m, rule.package) {
            if !is_allowed(rule.allowed, &dep) {
                violations.push(format!("{} depends on {dep}", rule.package));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies ARCHITECTURE.md forbids:\n{}",
        violations.join("\n")
    );
}

#[test]
fn dependency_reader_sees_every_table_and_renames() {
    let m: toml::Table = r#"
        [package]
        name = "vramroute-x"
        [dependencies]
        vramroute-probe = { path = "../probe" }
        serde = "1"
        [dev-dependencies]
        vramroute-x = { path = "." }
        r = { package = "vramroute-router", path = "../router" }
        [target.'cfg(unix)'.build-dependencies]
        vramroute-node = "0.1"
    "#
    .parse()
    .expect("valid TOML");
    assert_eq!(
        vramroute_deps(&m, "vramroute-x"),
        ["vramroute-node", "vramroute-probe", "vramroute-router"]
    );
    assert!(!is_allowed(
        Allowed::Only(&["vramroute-probe"]),
        "vramroute-router"
    ));
    assert!(!is_allowed(Allowed::Libraries, "vramroute-reporter"));
}

/// The `**Architecture invariant:**` paragraphs of the `### ` section whose heading
/// names `` `path` ``.
fn invariants_of<'a>(doc: &'a str, path: &str) -> Option<Vec<&'a str>> {
    let tick = format!("`{path}`");
    let start = doc
        .match_indices("\n### ")
        .map(|(i, _)| i + 1)
        .find(|&i| doc[i..].lines().next().is_some_and(|h| h.contains(&tick)))?;
    let section = &doc[start..];
    let end = section[4..]
        .find("\n## ")
        .into_iter()
        .chain(section[4..].find("\n### "))
        .min()
        .map_or(section.len(), |e| e + 4);
    let section = &section[..end];
    Some(
        section
            .split("\n\n")
            .filter(|p| p.trim_start().starts_with("**Architecture invariant:**"))
            .collect(),
    )
}

#[test]
fn architecture_md_states_every_invariant() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let mut missing = Vec::new();
    for rule in CRATES.iter().filter(|r| present(r)) {
        let Some(paragraphs) = invariants_of(&doc, rule.path) else {
            missing.push(format!("no `### ` section naming `{}`", rule.path));
            continue;
        };
        if paragraphs.is_empty() {
            missing.push(format!(
                "`{}`: no **Architecture invariant:** line",
                rule.path
            ));
        }
        // Paragraphs wrap lines; compare with single spaces.
        let text = paragraphs
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for phrase in rule.doc_says {
            if !text.contains(phrase) {
                missing.push(format!(
                    "`{}`: invariant does not say {phrase:?}",
                    rule.path
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md and the table in tests/it/architecture.rs disagree:\n{}",
        missing.join("\n")
    );
}

/// String literals of Rust source (normal, byte, raw), with the line each starts on.
/// Comments are skipped; char literals and lifetimes are told apart.
fn string_literals(src: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = src.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        match c[i] {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(c[i] == '\n');
                        i += 1;
                    }
                }
            }
            'r' if (i == 0
                || !ident(c[i - 1])
                || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
                && {
                    let mut j = i + 1;
                    while c.get(j) == Some(&'#') {
                        j += 1;
                    }
                    c.get(j) == Some(&'"')
                } =>
            {
                let mut j = i + 1;
                while c[j] == '#' {
                    j += 1;
                }
                let hashes = j - i - 1;
                let (start_line, begin) = (line, j + 1);
                let mut k = begin;
                loop {
                    if k >= c.len() {
                        break;
                    }
                    if c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')) {
                        break;
                    }
                    line += usize::from(c[k] == '\n');
                    k += 1;
                }
                out.push((start_line, c[begin..k.min(c.len())].iter().collect()));
                i = k + 1 + hashes;
            }
            '"' => {
                let (start_line, begin) = (line, i + 1);
                let mut k = begin;
                while k < c.len() && c[k] != '"' {
                    if c[k] == '\\' {
                        k += 1;
                    }
                    if c.get(k) == Some(&'\n') {
                        line += 1;
                    }
                    k += 1;
                }
                out.push((start_line, c[begin..k.min(c.len())].iter().collect()));
                i = k + 1;
            }
            '\'' => {
                if c.get(i + 1) == Some(&'\\') {
                    // '\n', '\'', '\u{..}': skip to the closing quote.
                    let mut k = i + 3;
                    while k < c.len() && c[k] != '\'' {
                        k += 1;
                    }
                    i = k + 1;
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1; // a lifetime or label
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[test]
fn literal_scanner_skips_comments_chars_and_lifetimes() {
    let src = concat!(
        "// \"a\" in a comment\n",
        "/* \"b\" /* nested \"c\" */ */ fn f<'a>(x: &'a str) -> char { '\"' }\n",
        "let s = \"d\\\"e\"; let r = r#\"f \"quoted\" g\"#; let b = b\"h\";\n",
        "let esc = '\\''; let m = \"two\nlines\"; let after = \"i\";\n",
    );
    let lits: Vec<(usize, String)> = string_literals(src);
    let want: Vec<(usize, String)> = [
        (3, "d\\\"e"),
        (3, "f \"quoted\" g"),
        (3, "h"),
        (4, "two\nlines"),
        (5, "i"),
    ]
    .map(|(l, s)| (l, s.to_owned()))
    .to_vec();
    assert_eq!(lits, want);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn redis_key_text_lives_only_in_the_registry() {
    let root = root();
    // Built at run time so this file holds no key text itself.
    let needles = ["sollol", "vramroute"].map(|p| format!("{p}:"));
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut hits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("crates/registry/") {
            continue;
        }
        for (line, lit) in string_literals(&read(file)) {
            if needles.iter().any(|n| lit.contains(n.as_str())) {
                hits.entry(rel.clone())
                    .or_default()
                    .push(format!("{rel}:{line}: {lit:?}"));
            }
        }
    }
    assert!(files.len() > 20, "found only {} .rs files", files.len());
    let mut problems = Vec::new();
    for (file, found) in &hits {
        let allowed = KEY_TEXT_ALLOWED
            .iter()
            .find(|(f, _)| f == file)
            .map_or(0, |(_, n)| *n);
        if found.len() > allowed {
            problems.push(format!(
                "Redis key text outside crates/registry (use vramroute_registry::keys):\n  {}",
                found.join("\n  ")
            ));
        }
    }
    for (file, allowed) in KEY_TEXT_ALLOWED {
        let found = hits.get(*file).map_or(0, Vec::len);
        if found < *allowed {
            problems.push(format!(
                "{file} now holds {found} key-text literals, fewer than its allowance of \
                 {allowed}: lower KEY_TEXT_ALLOWED in tests/it/architecture.rs"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The long flags (`--size-mb`) the binaries' clap definitions declare: `#[arg(long)]` on
/// a field `size_mb` or `#[arg(long = "size-mb")]`.
fn binary_flags(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("bins"), &mut files);
    let mut flags = Vec::new();
    for file in &files {
        let src = read(file);
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(at) = line.find("#[arg(") else {
                continue;
            };
            // An attribute rustfmt split over several lines: read it to its `)]`.
            let mut attr = line[at..].to_owned();
            let mut j = i;
            while !attr.contains(")]") && j + 1 < lines.len() && j < i + 12 {
                j += 1;
                attr.push(' ');
                attr.push_str(lines[j].trim());
            }
            let attr = attr.as_str();
            if let Some(named) = attr.split("long = \"").nth(1) {
                flags.push(format!("--{}", named.split('"').next().unwrap_or_default()));
                continue;
            }
            if !attr.contains("long") {
                continue;
            }
            let field = lines[j + 1..].iter().take(6).find_map(|l| {
                let l = l
                    .trim()
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ");
                let (name, _) = l.split_once(':')?;
                (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                    .then(|| name.to_owned())
            });
            if let Some(name) = field {
                flags.push(format!("--{}", name.replace('_', "-")));
            }
        }
    }
    flags.sort();
    flags.dedup();
    flags
}

/// `--word-word` tokens of a text.
fn flag_tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let tail = &rest[at..];
        let end = tail[2..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .map_or(tail.len(), |e| e + 2);
        if end > 2 {
            out.push(&tail[..end]);
        }
        rest = &tail[end.max(2)..];
    }
    out
}

#[test]
fn flag_scanner_reads_clap_fields_and_tokens() {
    assert_eq!(
        flag_tokens("give it with --size-mb N or --gguf FILE; -- alone, ---x"),
        ["--size-mb", "--gguf", "---x"]
    );
    let flags = binary_flags(&root());
    for expected in ["--size-mb", "--redis-url", "--sysfs-root", "--gguf"] {
        assert!(
            flags.iter().any(|f| f == expected),
            "{expected} not in {flags:?}"
        );
    }
}

#[test]
fn library_text_names_no_binary_flag() {
    let root = root();
    let flags = binary_flags(&root);
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).expect("under the root");
        let rel = rel.to_string_lossy().replace('\\', "/");
        if !rel.contains("/src/") {
            continue;
        }
        for (line, lit) in string_literals(&read(file)) {
            for token in flag_tokens(&lit) {
                if flags.iter().any(|f| f == token) {
                    problems.push(format!("{rel}:{line}: {token} in {lit:?}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "library text names a flag of the binaries (say what to give, not how; the \
         binaries add their own hints):\n{}",
        problems.join("\n")
    );
}

/// `pub struct` / `pub enum` / `pub trait` / `pub type` names declared in `src`.
fn public_type_names(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            ["pub struct ", "pub enum ", "pub trait ", "pub type "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect()
                })
        })
        .collect()
}

#[test]
fn public_type_names_are_unique_across_library_crates() {
    assert_eq!(
        public_type_names(
            "pub struct A {\n  pub enum B<T> {\npub(crate) struct C;\n pub type D = u8;"
        ),
        ["A", "B", "D"]
    );
    let root = root();
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for dir in fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
    {
        let krate = dir.file_name().to_string_lossy().into_owned();
        let mut files = Vec::new();
        rust_files(&dir.path().join("src"), &mut files);
        for file in &files {
            for name in public_type_names(&read(file)) {
                // Each crate's own `Error` and `Result` are the convention, named by path.
                if name != "Error" && name != "Result" {
                    owners.entry(name).or_default().push(krate.clone());
                }
            }
        }
    }
    assert!(
        owners.len() > 50,
        "found only {} public types",
        owners.len()
    );
    let clashes: Vec<String> = owners
        .iter()
        .filter(|(_, crates)| crates.len() > 1)
        .map(|(name, crates)| format!("{name}: {}", crates.join(", ")))
        .collect();
    assert!(
        clashes.is_empty(),
        "public type names declared more than once (an embedder imports several crates; \
         give each type its own name):\n{}",
        clashes.join("\n")
    );
}

//! Rules the workspace's source keeps, read from the files themselves: no module imports,
//! directly or indirectly, a module that imports it, and no function is longer than a limit.
//! `tests/source_rules.rs` checks every crate; `cargo run -p earlyexit-testkit --bin
//! module-graph -- search/src` prints one crate's imports and circles.
//!
//! A module is a file. Module A imports module B when A names an item B defines: through a
//! `use` or a path in code (`crate::`, `super::`, `self::`, or a child module's name). A path
//! through a module that only re-exports an item (`pub use child::Item`, as `lib.rs` and
//! `bundle/mod.rs` do) leads to the module that defines the item, so re-exporting is not
//! importing back. Tests (`#[cfg(test)] mod ...`) are left out: they may use anything.
//!
//! Hand-written rather than a tool: it runs in the tests in milliseconds, and tools that read
//! Rust's module tree (cargo-modules) pin a rust-analyzer and take minutes to build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (`["bundle", "read"]`; empty for the root).
pub type ModulePath = Vec<String>;

/// One module file, read.
struct Module {
    file: PathBuf,
    /// Its code with comments, strings and test modules removed.
    code: String,
    children: Vec<String>,
}

/// A crate's modules, read from its `src/` folder.
pub struct Crate {
    modules: BTreeMap<ModulePath, Module>,
}

impl Crate {
    /// Reads the crate whose root is `src/lib.rs` or `src/main.rs`, following `mod` items.
    pub fn read(src: &Path) -> std::io::Result<Crate> {
        let root = ["lib.rs", "main.rs"]
            .iter()
            .map(|name| src.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                std::io::Error::other(format!("{}: no lib.rs or main.rs", src.display()))
            })?;
        let mut modules = BTreeMap::new();
        let mut pending = vec![(Vec::new(), root)];
        while let Some((path, file)) = pending.pop() {
            let code = strip_tests(&strip_comments_and_strings(&std::fs::read_to_string(
                &file,
            )?));
            let children = declared_modules(&code);
            // `a.rs` and `a/mod.rs` both keep their children in `a/`; the root keeps them in src/.
            let dir = if path.is_empty() || file.ends_with("mod.rs") {
                file.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                file.with_extension("")
            };
            for child in &children {
                let flat = dir.join(format!("{child}.rs"));
                let nested = dir.join(child).join("mod.rs");
                let child_file = if flat.is_file() { flat } else { nested };
                let mut child_path = path.clone();
                child_path.push(child.clone());
                pending.push((child_path, child_file));
            }
            modules.insert(
                path,
                Module {
                    file,
                    code,
                    children,
                },
            );
        }
        Ok(Crate { modules })
    }

    /// Each module's file, by module.
    pub fn files(&self) -> BTreeMap<ModulePath, PathBuf> {
        self.modules
            .iter()
            .map(|(p, m)| (p.clone(), m.file.clone()))
            .collect()
    }

    /// For each module, the modules it imports.
    pub fn imports(&self) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
        self.modules
            .iter()
            .map(|(path, module)| {
                let targets = references(&module.code, &module.children)
                    .into_iter()
                    .filter_map(|r| self.resolve(path, &r, 0))
                    .filter(|t| t != path)
                    .collect();
                (path.clone(), targets)
            })
            .collect()
    }

    /// The groups of modules that import one another, directly or not: every group of two or
    /// more, each sorted. Empty when imports run one way.
    pub fn circles(&self) -> Vec<Vec<ModulePath>> {
        let imports = self.imports();
        let reach = |from: &ModulePath| -> BTreeSet<ModulePath> {
            let mut seen = BTreeSet::new();
            let mut pending = vec![from.clone()];
            while let Some(m) = pending.pop() {
                for next in imports.get(&m).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        pending.push(next.clone());
                    }
                }
            }
            seen
        };
        let reached: BTreeMap<&ModulePath, BTreeSet<ModulePath>> =
            imports.keys().map(|m| (m, reach(m))).collect();
        let mut circles: Vec<Vec<ModulePath>> = Vec::new();
        for (m, from_m) in &reached {
            if !from_m.contains(*m) || circles.iter().any(|c| c.contains(m)) {
                continue;
            }
            let circle: Vec<ModulePath> = from_m
                .iter()
                .filter(|other| reached[other].contains(*m))
                .cloned()
                .collect();
            circles.push(circle);
        }
        circles
    }

    /// The module a reference made in module `from` leads to (see the module's doc), or `None`
    /// when it leaves the crate.
    fn resolve(&self, from: &ModulePath, reference: &[String], depth: usize) -> Option<ModulePath> {
        let (mut current, rest) = self.start(from, reference)?;
        let mut rest = rest.iter();
        let item = loop {
            match rest.next() {
                Some(segment) if self.is_child(&current, segment) => current.push(segment.clone()),
                Some(segment) if segment == "self" => {}
                other => break other,
            }
        };
        // Follow a re-export to the module that defines the item (a few hops at most).
        if let Some(item) = item
            && depth < 8
            && let Some(exported) = self
                .modules
                .get(&current)
                .and_then(|m| reexport(&m.code, item))
        {
            return self.resolve(&current, &exported, depth + 1);
        }
        Some(current)
    }

    /// Where a reference's path starts, and its segments after that start.
    fn start<'r>(
        &self,
        from: &ModulePath,
        reference: &'r [String],
    ) -> Option<(ModulePath, &'r [String])> {
        let (first, rest) = reference.split_first()?;
        match first.as_str() {
            "crate" => Some((Vec::new(), rest)),
            "self" => Some((from.clone(), rest)),
            "super" => {
                let mut module = from.clone();
                module.pop();
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    module.pop();
                    rest = &rest[1..];
                }
                Some((module, rest))
            }
            child if self.is_child(from, child) => Some((from.clone(), reference)),
            _ => None,
        }
    }

    fn is_child(&self, module: &ModulePath, name: &str) -> bool {
        self.modules
            .get(module)
            .is_some_and(|m| m.children.iter().any(|c| c == name))
    }
}

/// The functions of the files under `src` (tests left out) longer than `max_lines`, as
/// `file:line: fn name: N lines`.
pub fn long_functions(src: &Path, max_lines: usize) -> std::io::Result<Vec<String>> {
    let mut long = Vec::new();
    for file in rust_files(src)? {
        let code = strip_tests(&strip_comments_and_strings(&std::fs::read_to_string(
            &file,
        )?));
        for (name, first, lines) in functions(&code) {
            if lines > max_lines {
                long.push(format!(
                    "{}:{first}: fn {name}: {lines} lines",
                    file.display()
                ));
            }
        }
    }
    Ok(long)
}

fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every `fn` with a body: its name, its first line (1-based) and how many lines it spans.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = code[at..].find("fn ") {
        let start = at + offset;
        at = start + 3;
        let word_start = start == 0 || !is_ident(bytes[start - 1]);
        if !word_start {
            continue;
        }
        let name: String = code[at..]
            .chars()
            .take_while(|c| is_ident_char(*c))
            .collect();
        // The body opens at the first `{` before any `;` (a declaration without a body).
        let Some(open) = code[at..].find(['{', ';']).map(|i| at + i) else {
            break;
        };
        if bytes[open] == b';' {
            continue;
        }
        let mut depth = 0;
        let mut close = open;
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let line = |i: usize| code[..i].matches('\n').count() + 1;
        found.push((name, line(start), line(close) - line(start) + 1));
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The code with comments blanked and string and char literals emptied, lines kept in place.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |out: &mut String, skipped: &[char]| {
        out.extend(skipped.iter().filter(|c| **c == '\n'));
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            keep_newlines(&mut out, &chars[i..end]);
            i = end;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i)
        {
            // A raw string: r"...", r#"..."#.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let body = i + 2 + hashes;
            let end = (body..chars.len())
                .find(|&j| {
                    chars[j] == '"'
                        && chars[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == '#')
                            .count()
                            == hashes
                })
                .map_or(chars.len(), |j| j + 1 + hashes);
            out.push_str("\"\"");
            keep_newlines(&mut out, &chars[i..end]);
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            keep_newlines(&mut out, &chars[i..j.min(chars.len())]);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '"'), or a lifetime ('a), which stays.
            let end = if next == Some('\\') {
                (i + 2..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .map(|j| j + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.push_str("' '");
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && is_ident_char(chars[i - 1])
}

/// The code without `#[cfg(test)]` modules, inline or declared, lines kept in place.
fn strip_tests(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(start) = out.find("#[cfg(test)]") {
        let after = start + "#[cfg(test)]".len();
        let item_end = match out[after..].find(['{', ';']) {
            Some(i) if out.as_bytes()[after + i] == b';' => after + i + 1,
            Some(i) => {
                let open = after + i;
                let mut depth = 0;
                let mut end = out.len();
                for (j, b) in out.bytes().enumerate().skip(open) {
                    match b {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            None => out.len(),
        };
        let newlines = out[start..item_end].matches('\n').count();
        out.replace_range(start..item_end, &"\n".repeat(newlines));
    }
    out
}

/// The names of the modules a file declares (`mod a;`, `pub mod b;`), not inline ones.
fn declared_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "mod") else {
            continue;
        };
        let visibility_only = words[..at].iter().all(|w| w.starts_with("pub"));
        if let Some(name) = words.get(at + 1).and_then(|w| w.strip_suffix(';'))
            && visibility_only
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// The paths a module's code names: every path of its `use` items, and every path in code that
/// starts at `crate`, `super`, `self` or one of its child modules.
fn references(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest_of_code = String::with_capacity(code.len());
    let mut at = 0;
    for (start, end) in use_items(code) {
        rest_of_code.push_str(&code[at..start]);
        let tree = &code[start..end];
        let tree = tree[tree.find("use").map_or(0, |i| i + 3)..].trim_end_matches(';');
        expand_use_tree(tree.trim(), &mut Vec::new(), &mut paths);
        at = end;
    }
    rest_of_code.push_str(&code[at..]);
    let starts: Vec<&str> = ["crate", "super", "self"]
        .into_iter()
        .chain(children.iter().map(String::as_str))
        .collect();
    let chars: Vec<char> = rest_of_code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident_char(chars[i])
            || (i > 0 && (is_ident_char(chars[i - 1]) || chars[i - 1] == ':'))
        {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let word: String = chars[j..]
                .iter()
                .take_while(|c| is_ident_char(**c))
                .collect();
            if word.is_empty() {
                break;
            }
            j += word.len();
            segments.push(word);
            if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                j += 2;
            } else {
                break;
            }
        }
        if segments.len() > 1 && starts.contains(&segments[0].as_str()) {
            paths.push(segments);
        }
        i = j.max(i + 1);
    }
    paths
}

/// The byte ranges of the `use` items of some code (`use ...;`, `pub use ...;`).
fn use_items(code: &str) -> Vec<(usize, usize)> {
    let bytes = code.as_bytes();
    let mut items = Vec::new();
    let mut at = 0;
    while let Some(offset) = code[at..].find("use ") {
        let start = at + offset;
        at = start + 4;
        if start > 0 && is_ident(bytes[start - 1]) {
            continue;
        }
        let Some(end) = code[start..].find(';').map(|i| start + i + 1) else {
            break;
        };
        items.push((start, end));
        at = end;
    }
    items
}

/// Appends every full path of a use tree (`a::{b, c::{d, self}}`) under `prefix` to `paths`.
fn expand_use_tree(tree: &str, prefix: &mut Vec<String>, paths: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let depth = prefix.len();
        prefix.extend(head);
        for part in split_top_level(inner) {
            expand_use_tree(part, prefix, paths);
        }
        prefix.truncate(depth);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or(tree);
    let mut full = prefix.clone();
    full.extend(
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
            .map(str::to_owned),
    );
    if !full.is_empty() {
        paths.push(full);
    }
}

/// Splits `a, b::{c, d}, e` at its top-level commas.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Where a module's `pub use` takes `item` from, as the path it names, if it re-exports it.
fn reexport(code: &str, item: &str) -> Option<Vec<String>> {
    for (start, end) in use_items(code) {
        let text = &code[start..end];
        let before = code[..start].trim_end();
        let public = text.starts_with("use") && (before.ends_with("pub") || before.ends_with(')'));
        if !public {
            continue;
        }
        let tree = text[3..].trim_end_matches(';');
        let mut paths = Vec::new();
        expand_use_tree(tree, &mut Vec::new(), &mut paths);
        if let Some(path) = paths
            .into_iter()
            .find(|p| p.last().is_some_and(|l| l == item))
        {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a crate of `files` (path under src, code) and reads it.
    fn crate_of(files: &[(&str, &str)]) -> (tempfile::TempDir, Crate) {
        let dir = tempfile::tempdir().unwrap();
        for (path, code) in files {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, code).unwrap();
        }
        let read = Crate::read(dir.path()).unwrap();
        (dir, read)
    }

    fn module(path: &str) -> ModulePath {
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_circle_through_three_modules_is_found_and_a_facade_is_not_one() {
        let (_dir, krate) = crate_of(&[
            (
                "lib.rs",
                "mod a;\nmod b;\nmod c;\npub mod facade;\npub use a::A;\n",
            ),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b.rs", "pub struct B(crate::c::C);\n"),
            ("c.rs", "pub struct C;\nfn f() { let _ = super::a::A; }\n"),
            (
                "facade/mod.rs",
                "mod inner;\nmod other;\npub use inner::{Inner, Thing as Renamed};\n",
            ),
            (
                "facade/inner.rs",
                "use super::other::Other;\npub struct Inner(Other);\npub struct Thing;\n",
            ),
            (
                "facade/other.rs",
                "// use super::Inner; in a comment\npub struct Other(&'static str);\nconst S: &str = \"crate::a::A\";\n#[cfg(test)]\nmod tests { use super::super::Inner; }\n",
            ),
        ]);
        let imports = krate.imports();
        assert_eq!(imports[&module("a")], [module("b")].into());
        assert_eq!(
            imports[&module("facade::inner")],
            [module("facade::other")].into()
        );
        assert!(imports[&module("facade::other")].is_empty(), "{imports:?}");
        assert_eq!(
            krate.circles(),
            vec![vec![module("a"), module("b"), module("c")]]
        );
    }

    #[test]
    fn an_item_reached_through_a_reexport_leads_to_the_module_that_defines_it() {
        let (_dir, krate) = crate_of(&[
            (
                "lib.rs",
                "pub mod bundle;\nmod rule;\npub use rule::Metric;\n",
            ),
            ("rule.rs", "pub enum Metric { A }\n"),
            (
                "bundle/mod.rs",
                "mod read;\nmod types;\npub use types::Bundle;\npub use read::read;\n",
            ),
            (
                "bundle/types.rs",
                "use crate::Metric;\npub struct Bundle(Metric);\n",
            ),
            (
                "bundle/read.rs",
                "use super::Bundle;\npub fn read() -> Bundle { todo!() }\n",
            ),
        ]);
        let imports = krate.imports();
        assert_eq!(
            imports[&module("bundle::read")],
            [module("bundle::types")].into()
        );
        assert_eq!(imports[&module("bundle::types")], [module("rule")].into());
        assert!(krate.circles().is_empty(), "{imports:?}");
    }

    #[test]
    fn a_parent_with_code_that_its_child_imports_back_is_a_circle() {
        let (_dir, krate) = crate_of(&[
            ("lib.rs", "mod bundle;\n"),
            (
                "bundle/mod.rs",
                "mod read;\npub struct Bundle;\nfn f() { read::read(); }\n",
            ),
            ("bundle/read.rs", "use super::Bundle;\npub fn read() {}\n"),
        ]);
        assert_eq!(
            krate.circles(),
            vec![vec![module("bundle"), module("bundle::read")]]
        );
    }

    #[test]
    fn long_functions_are_counted_from_fn_to_its_closing_brace() {
        let dir = tempfile::tempdir().unwrap();
        let body = "    let x = 1;\n".repeat(10);
        std::fs::write(
            dir.path().join("lib.rs"),
            format!("fn short() {{\n}}\n\nfn long() {{\n{body}}}\n\ntrait T {{ fn declared(&self); }}\n#[cfg(test)]\nmod tests {{\n    fn in_a_test() {{\n{body}{body}    }}\n}}\n"),
        )
        .unwrap();
        let long = long_functions(dir.path(), 5).unwrap();
        assert_eq!(long.len(), 1, "{long:?}");
        assert!(long[0].ends_with("lib.rs:4: fn long: 12 lines"), "{long:?}");
    }
}

//! A module graph of Rust sources, good enough to find import circles: every file of a crate,
//! its `mod` tree, the items each module defines, its `use` declarations and the `a::b::c` paths
//! in its code, each resolved to the file that defines the item it names (following `pub use`
//! re-exports). A file depends on another when it names an item defined there; a parent
//! re-exporting its own descendants' items is structure, not a dependency, unless the parent's
//! code uses the name too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `::`
    Sep,
    /// A string literal's text, escapes left as written.
    Str(String),
}

/// Tokens of a Rust source with comments, strings and character literals dropped.
fn lex(src: &str) -> Vec<Tok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' || ((c == 'b' || c == 'c') && next == Some('"')) {
            i += if c == '"' { 1 } else { 2 };
            let s = i;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            out.push(Tok::Str(b[s..i.min(b.len())].iter().collect()));
            i += 1;
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && (i == 0 || !is_ident(b[i - 1])) && {
            let s = if c == 'r' { i + 1 } else { i + 2 };
            let mut j = s;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            b.get(j) == Some(&'"') && (j > s || b.get(s) == Some(&'"'))
        } {
            let s = if c == 'r' { i + 1 } else { i + 2 };
            let mut j = s;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            let hashes = j - s;
            i = j + 1;
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F}'), or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
            }
        } else if is_ident(c) && !c.is_ascii_digit() {
            let s = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(Tok::Ident(b[s..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (is_ident(b[i]) || b[i] == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            out.push(Tok::Sep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One module: a file, or an inline `mod x { ... }` inside one.
#[derive(Debug, Default)]
struct Module {
    file: PathBuf,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    defs: BTreeSet<String>,
    /// `use` declarations: the path, the name it binds (None for a glob), whether it is `pub`.
    uses: Vec<(Vec<String>, Option<String>, bool)>,
    /// Paths of two or more segments in the code.
    paths: Vec<Vec<String>>,
    /// Identifiers in the code outside `use` declarations.
    idents: BTreeSet<String>,
}

/// Every module of the crates whose root files are given.
#[derive(Debug, Default)]
pub struct Crates {
    modules: Vec<Module>,
}

const ITEM_KEYWORDS: [&str; 8] = ["fn", "struct", "enum", "type", "const", "static", "trait", "union"];

impl Crates {
    /// Reads each crate root and every file its `mod` declarations reach.
    pub fn load(roots: &[PathBuf]) -> Crates {
        let mut c = Crates::default();
        for r in roots {
            c.load_file(r, None);
        }
        c
    }

    fn load_file(&mut self, path: &Path, parent: Option<usize>) -> usize {
        let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let toks = lex(&src);
        let id = self.new_module(path, parent);
        let mut files = Vec::new();
        self.parse(&toks, id, &mut files);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let dir = path.parent().unwrap_or(Path::new("."));
        let base =
            if parent.is_none() || ["lib", "main", "mod"].contains(&stem) { dir.to_path_buf() } else { dir.join(stem) };
        for (owner, name, at) in files {
            let a = base.join(format!("{name}.rs"));
            let f = match at {
                Some(p) => dir.join(p),
                None if a.exists() => a,
                None => base.join(&name).join("mod.rs"),
            };
            let child = self.load_file(&f, Some(owner));
            self.modules[owner].children.insert(name, child);
        }
        id
    }

    fn new_module(&mut self, file: &Path, parent: Option<usize>) -> usize {
        self.modules.push(Module { file: file.to_path_buf(), parent, ..Default::default() });
        self.modules.len() - 1
    }

    /// Walks a file's tokens: `mod` declarations (file ones returned in `files`), inline
    /// modules, item definitions at module level, `use` trees and code paths.
    fn parse(&mut self, t: &[Tok], file_module: usize, files: &mut Vec<(usize, String, Option<String>)>) {
        let ident = |i: usize| match t.get(i) {
            Some(Tok::Ident(s)) => Some(s.as_str()),
            _ => None,
        };
        // (module, brace depth of its items)
        let mut stack = vec![(file_module, 0usize)];
        let mut depth = 0usize;
        let mut i = 0;
        while i < t.len() {
            let (module, item_depth) = *stack.last().unwrap_or(&(file_module, 0));
            match &t[i] {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if stack.len() > 1 && depth < item_depth {
                        stack.pop();
                    }
                }
                Tok::Ident(k) if k == "mod" => {
                    if let Some(name) = ident(i + 1) {
                        match t.get(i + 2) {
                            Some(Tok::Punct(';')) => files.push((module, name.to_string(), path_attr(t, i))),
                            Some(Tok::Punct('{')) => {
                                let file = self.modules[module].file.clone();
                                let m = self.new_module(&file, Some(module));
                                self.modules[module].children.insert(name.to_string(), m);
                                depth += 1;
                                stack.push((m, depth));
                                i += 3;
                                continue;
                            }
                            _ => {}
                        }
                        i += 2;
                        continue;
                    }
                }
                Tok::Ident(k) if k == "use" => {
                    let public = i > 0 && visibility_before(t, i);
                    let end = (i..t.len()).find(|&j| t[j] == Tok::Punct(';')).unwrap_or(t.len());
                    let mut out = Vec::new();
                    use_tree(&t[i + 1..end], &[], &mut out);
                    for (path, name) in out {
                        self.modules[module].uses.push((path, name, public));
                    }
                    i = end + 1;
                    continue;
                }
                Tok::Ident(k) if depth == item_depth && ITEM_KEYWORDS.contains(&k.as_str()) => {
                    if let Some(name) = ident(i + 1) {
                        self.modules[module].defs.insert(name.to_string());
                    }
                }
                Tok::Ident(k) if k == "macro_rules" => {
                    if let (Some(Tok::Punct('!')), Some(name)) = (t.get(i + 1), ident(i + 2)) {
                        self.modules[module].defs.insert(name.to_string());
                    }
                }
                Tok::Ident(first) => {
                    self.modules[module].idents.insert(first.clone());
                    let starts_path = i == 0 || t[i - 1] != Tok::Sep;
                    if starts_path && t.get(i + 1) == Some(&Tok::Sep) {
                        let mut path = vec![first.clone()];
                        let mut j = i + 1;
                        while t.get(j) == Some(&Tok::Sep) {
                            match ident(j + 1) {
                                Some(s) => path.push(s.to_string()),
                                None => break,
                            }
                            j += 2;
                        }
                        if path.len() > 1 {
                            self.modules[module].paths.push(path);
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn root_of(&self, mut m: usize) -> usize {
        while let Some(p) = self.modules[m].parent {
            m = p;
        }
        m
    }

    /// The module a path's leading segments name, and the rest of the path; `None` when the path
    /// starts outside the crate (another crate, a local item, a type).
    fn start(&self, from: usize, path: &[String], depth: usize) -> Option<(usize, usize)> {
        let first = path.first()?;
        let mut m = match first.as_str() {
            "crate" => self.root_of(from),
            "self" => from,
            "super" => self.modules[from].parent?,
            name => match self.modules[from].children.get(name) {
                Some(&c) => c,
                None => self.alias(from, name, depth)?,
            },
        };
        let mut k = 1;
        while path.get(k).map(String::as_str) == Some("super") {
            m = self.modules[m].parent?;
            k += 1;
        }
        while let Some(&c) = path.get(k).and_then(|s| self.modules[m].children.get(s)) {
            m = c;
            k += 1;
        }
        Some((m, k))
    }

    /// A module brought into scope by a `use` under the name `name`.
    fn alias(&self, from: usize, name: &str, depth: usize) -> Option<usize> {
        if depth > 8 {
            return None;
        }
        self.modules[from].uses.iter().find_map(|(p, n, _)| {
            if n.as_deref() != Some(name) {
                return None;
            }
            let (m, k) = self.start(from, p, depth + 1)?;
            (k == p.len()).then_some(m)
        })
    }

    /// The file defining `item` as seen from module `m`, following re-exports.
    fn defining_file(&self, m: usize, item: &str, depth: usize) -> PathBuf {
        let module = &self.modules[m];
        if module.defs.contains(item) || depth > 8 {
            return module.file.clone();
        }
        for (p, n, public) in &module.uses {
            if !public {
                continue;
            }
            let target = match n {
                Some(n) if n == item => p.clone(),
                None => p.iter().cloned().chain(std::iter::once(item.to_string())).collect(),
                _ => continue,
            };
            if let Some((tm, k)) = self.start(m, &target, 0) {
                match target.get(k) {
                    Some(next) if n.is_some() || self.modules[tm].defs.contains(next) => {
                        return self.defining_file(tm, next, depth + 1);
                    }
                    None => return self.modules[tm].file.clone(),
                    _ => {}
                }
            }
        }
        module.file.clone()
    }

    /// Where a path used in module `from` points: the defining file, or `None` (outside the
    /// crate, or a bare module).
    fn resolve(&self, from: usize, path: &[String]) -> Option<PathBuf> {
        let (m, k) = self.start(from, path, 0)?;
        if path.get(k).map(String::as_str) == Some("*") {
            return Some(self.modules[m].file.clone());
        }
        path.get(k).map(|item| self.defining_file(m, item, 0))
    }

    fn is_descendant(&self, mut m: usize, of: usize) -> bool {
        while let Some(p) = self.modules[m].parent {
            if p == of {
                return true;
            }
            m = p;
        }
        false
    }

    /// File-level dependencies: for each file, the files it uses and one path that shows it.
    pub fn edges(&self) -> BTreeMap<PathBuf, BTreeMap<PathBuf, String>> {
        let mut out: BTreeMap<PathBuf, BTreeMap<PathBuf, String>> = BTreeMap::new();
        for (id, m) in self.modules.iter().enumerate() {
            let entry = out.entry(m.file.clone()).or_default();
            let mut add = |to: PathBuf, why: String| {
                if to != m.file {
                    entry.entry(to).or_insert(why);
                }
            };
            for (p, n, public) in &m.uses {
                if *public {
                    // A re-export of a descendant's item is structure unless the code uses it.
                    let target = self.start(id, p, 0).map(|(t, _)| t);
                    let used = n.as_ref().is_some_and(|n| m.idents.contains(n));
                    if target.is_some_and(|t| self.is_descendant(t, id)) && !used {
                        continue;
                    }
                }
                let mut full = p.clone();
                if n.is_none() {
                    full.push("*".into());
                }
                if let Some(f) = self.resolve(id, &full) {
                    add(f, format!("use {}", full.join("::")));
                }
            }
            for p in &m.paths {
                if let Some(f) = self.resolve(id, p) {
                    add(f, p.join("::"));
                }
            }
        }
        out
    }
}

/// The file of a `#[path = "..."]` attribute right before the `mod` at token `i`.
fn path_attr(t: &[Tok], i: usize) -> Option<String> {
    match t.get(i.checked_sub(6)?..i)? {
        [Tok::Punct('#'), Tok::Punct('['), Tok::Ident(k), Tok::Punct('='), Tok::Str(p), Tok::Punct(']')]
            if k == "path" =>
        {
            Some(p.clone())
        }
        _ => None,
    }
}

/// `pub`, `pub(crate)`, `pub(super)`, `pub(in path)` right before token `i`.
fn visibility_before(t: &[Tok], i: usize) -> bool {
    if t.get(i - 1) == Some(&Tok::Ident("pub".into())) {
        return true;
    }
    if t.get(i - 1) == Some(&Tok::Punct(')')) {
        let open = (0..i - 1).rev().find(|&j| t[j] == Tok::Punct('('));
        return open.is_some_and(|o| o > 0 && t[o - 1] == Tok::Ident("pub".into()));
    }
    false
}

/// Expands a use tree into (path, bound name) pairs; a glob binds no name.
fn use_tree(t: &[Tok], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut i = 0;
    let mut path = prefix.to_vec();
    if t.first() == Some(&Tok::Sep) {
        return; // `::std::...`: another crate
    }
    while i < t.len() {
        match &t[i] {
            Tok::Ident(s) if s == "as" => {
                if let (Some(Tok::Ident(alias)), Some(last)) = (t.get(i + 1), path.last().cloned()) {
                    let p = if last == "self" { path[..path.len() - 1].to_vec() } else { path.clone() };
                    out.push((p, Some(alias.clone())));
                }
                return;
            }
            Tok::Ident(s) => path.push(s.clone()),
            Tok::Sep => {}
            Tok::Punct('*') => {
                out.push((path, None));
                return;
            }
            Tok::Punct('{') => {
                let mut depth = 0;
                let mut start = i + 1;
                for j in i..t.len() {
                    match t[j] {
                        Tok::Punct('{') => depth += 1,
                        Tok::Punct('}') => {
                            depth -= 1;
                            if depth == 0 {
                                use_tree(&t[start..j], &path, out);
                                return;
                            }
                        }
                        Tok::Punct(',') if depth == 1 => {
                            use_tree(&t[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            _ => return,
        }
        i += 1;
    }
    match path.last().cloned() {
        Some(last) if last == "self" => {
            let p = path[..path.len() - 1].to_vec();
            let name = p.last().cloned();
            out.push((p, name));
        }
        Some(last) if path.len() > prefix.len() => out.push((path, Some(last))),
        _ => {}
    }
}

/// The strongly connected components with more than one file: the import circles.
pub fn circles(edges: &BTreeMap<PathBuf, BTreeMap<PathBuf, String>>) -> Vec<Vec<PathBuf>> {
    let nodes: Vec<&PathBuf> = edges.keys().collect();
    let index: HashMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let adj: Vec<Vec<usize>> =
        nodes.iter().map(|n| edges[*n].keys().filter_map(|t| index.get(t).copied()).collect()).collect();
    // Tarjan's algorithm, iterative.
    let n = nodes.len();
    let (mut idx, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut counter) = (Vec::new(), Vec::new(), 0);
    for s in 0..n {
        if idx[s] != usize::MAX {
            continue;
        }
        let mut work = vec![(s, 0usize)];
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if *e == 0 {
                idx[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on[v] = true;
            }
            if let Some(&w) = adj[v].get(*e) {
                *e += 1;
                if idx[w] == usize::MAX {
                    work.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(idx[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(p, _)) = work.last() {
                low[p] = low[p].min(low[v]);
            }
            if low[v] == idx[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    comp.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    out.push(comp);
                }
            }
        }
    }
    out
}

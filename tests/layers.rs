//! The shape of `src/`, read from the source itself: no module imports one that imports
//! it back, and each layer uses only the layers below it (docs/architecture.md). Every
//! path a module names (`use` trees, and paths in code) counts; tests are left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// The layers, lowest first: a module may use its own layer's and those before it.
const LAYERS: &[&[&str]] = &[
    &["engine", "proto"],
    &["config"],
    &["demand"],
    &["query"],
    &["source"],
    &["server"],
    &["sim"],
    &["calibrate"],
    &["cli"],
];

type Module = Vec<String>;

/// Every module of the crate and its file.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if module.last().is_some_and(|last| last == "tests") {
                continue;
            }
            found.insert(module, path);
        }
    }
    found
}

/// The paths one file names, as written.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn use_tree(&mut self, prefix: &[String], tree: &syn::UseTree) {
        let with = |name: &syn::Ident| {
            let mut path = prefix.to_vec();
            path.push(name.to_string());
            path
        };
        match tree {
            syn::UseTree::Path(p) => self.use_tree(&with(&p.ident), &p.tree),
            syn::UseTree::Name(n) => self.0.push(with(&n.ident)),
            syn::UseTree::Rename(r) => self.0.push(with(&r.ident)),
            syn::UseTree::Glob(_) => self.0.push(prefix.to_vec()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(super)` names who may see an item, not what it uses.
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&[], &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.0
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (format!, matches!) are tokens: read them as paths.
        let tokens = mac.tokens.to_string().replace(' ', "");
        for word in tokens.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            if word.contains("::") {
                self.0.push(word.split("::").map(str::to_owned).collect());
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// The modules `module` names, resolved against the crate's modules.
fn edges(module: &Module, file: &Path, all: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let text = std::fs::read_to_string(file).unwrap();
    let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut paths = Paths::default();
    paths.visit_file(&syntax);
    let child = |name: &str| {
        let mut c = module.clone();
        c.push(name.to_owned());
        all.contains_key(&c).then_some(c)
    };
    let mut found = BTreeSet::new();
    for path in paths.0 {
        let Some(first) = path.first() else { continue };
        let (mut base, rest) = match first.as_str() {
            "crate" => (Module::new(), &path[1..]),
            "self" => (module.clone(), &path[1..]),
            "super" => {
                let mut base = module.clone();
                let mut rest = &path[..];
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            name => match child(name) {
                Some(c) => (c, &path[1..]),
                None => continue,
            },
        };
        for segment in rest {
            base.push(segment.clone());
            if !all.contains_key(&base) {
                base.pop();
                break;
            }
        }
        if &base != module && !base.is_empty() {
            found.insert(base);
        }
    }
    found
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = modules(&root);
    assert!(all.len() > 40, "found only {} modules", all.len());
    all.iter()
        .map(|(module, file)| (module.clone(), edges(module, file, &all)))
        .collect()
}

fn reaches(graph: &BTreeMap<Module, BTreeSet<Module>>, from: &Module, to: &Module) -> bool {
    let mut seen = BTreeSet::new();
    let mut pending = vec![from.clone()];
    while let Some(m) = pending.pop() {
        if &m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            pending.extend(graph.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    let mut cycles = Vec::new();
    for (module, uses) in &graph {
        for used in uses {
            if reaches(&graph, used, module) {
                cycles.push(format!("{} -> {}", module.join("::"), used.join("::")));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "edges on a cycle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let layer = |module: &Module| {
        let top = module.first().map(String::as_str).unwrap_or_default();
        LAYERS
            .iter()
            .position(|names| names.contains(&top))
            .unwrap_or_else(|| panic!("module {top} is in no layer: add it to LAYERS"))
    };
    let mut upward = Vec::new();
    let mut crossings = 0;
    for (module, uses) in graph() {
        if module.is_empty() {
            continue;
        }
        for used in uses {
            if used[0] != module[0] {
                crossings += 1;
                if layer(&used) > layer(&module) {
                    upward.push(format!("{} -> {}", module.join("::"), used.join("::")));
                }
            }
        }
    }
    // The check sees the crate's real imports (the server reads the config, ...).
    assert!(
        crossings > 30,
        "only {crossings} imports across layers found"
    );
    assert!(
        upward.is_empty(),
        "imports of a higher layer:\n{}",
        upward.join("\n")
    );
}

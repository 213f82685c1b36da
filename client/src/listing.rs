//! A download's listing, checked at the edge: the host's [`PathList`] becomes a [`Listing`]
//! before anything touches the disk, and the code that writes files only ever sees the
//! validated form.
//!
//! Invariants of a [`Listing`]:
//! - The first entry is the root (the path asked for); every other path is relative, made of
//!   [`Name`]s: no empty, `.` or `..` components, no `/` or NUL inside one.
//! - Every entry's parent came before it and is a directory, so nothing is "inside" a symlink or
//!   a file; no path is listed twice.
//! - Without `-r`, and for a root that is not a directory, there is exactly one entry.
//! - Every kind is one this build knows.
//!
//! Together these mean that every path resolves inside the destination, through directories the
//! copy created or found as real directories (the writer opens each one `O_NOFOLLOW`).

use std::collections::HashMap;

use remora_wire::{PathKind, PathList, PathMeta};

/// One path component from a host: not empty, not `.` or `..`, without `/` or NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(Vec<u8>);

impl Name {
    /// `bytes` as a component, if it is a plain one.
    pub fn new(bytes: &[u8]) -> Option<Name> {
        let plain =
            !bytes.is_empty() && bytes != b"." && bytes != b".." && !bytes.contains(&b'/') && !bytes.contains(&0);
        plain.then(|| Name(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One listed path below the root, with what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Components below the root; empty for the root itself.
    pub path: Vec<Name>,
    /// The host's path bytes, for the `ReadFile` request and messages.
    pub raw: Vec<u8>,
    pub meta: PathMeta,
}

/// A validated listing; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The absolute path the host listed (what `ReadFile` asks for, joined with an entry).
    pub root: Vec<u8>,
    /// The root's file name in a destination directory: the one asked for (`dir/name`), or the
    /// host's (`.`, `~`, `/`: the asked name is no file name).
    pub name: Name,
    /// The root's entry first, then its tree, parents before children.
    pub entries: Vec<Entry>,
}

/// Why a host's listing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("the listing is empty")]
    Empty,
    #[error("the first entry {0} is not the path asked for")]
    RootNotFirst(String),
    #[error("{count} paths were listed for the single path {root} (without -r, or not a directory)")]
    Several { root: String, count: usize },
    #[error("entry {entry} is {why}")]
    BadPath { entry: String, why: &'static str },
    #[error("entry {0} is listed twice")]
    Duplicate(String),
    #[error("entry {0} comes before its parent directory, or its parent is not listed")]
    NoParent(String),
    #[error("entry {entry} is inside {parent}, which is a {kind}, not a directory")]
    ParentNotDir {
        entry: String,
        parent: String,
        kind: &'static str,
    },
    #[error("entry {0} has a kind this client does not know; upgrade remora")]
    UnknownKind(String),
    #[error("the path listed, {0}, has no usable file name; name the destination file")]
    RootName(String),
}

/// The file name of a path given as bytes (`a/b/` → `b`, `/` → `/`).
pub fn base_name(path: &[u8]) -> Vec<u8> {
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(end) => &path[..=end],
        None => return b"/".to_vec(),
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) => trimmed[slash + 1..].to_vec(),
        None => trimmed.to_vec(),
    }
}

/// The root's name: the asked path's file name when it is a plain one, else the host's.
fn root_name(asked: &[u8], root: &[u8]) -> Result<Name, ListingError> {
    Name::new(&base_name(asked))
        .or_else(|| Name::new(&base_name(root)))
        .ok_or_else(|| ListingError::RootName(shown(root)))
}

/// Host bytes for a message: quoted, control characters escaped.
pub fn shown(bytes: &[u8]) -> String {
    format!("\"{}\"", String::from_utf8_lossy(bytes).escape_debug())
}

fn kind_name(kind: PathKind) -> &'static str {
    match kind {
        PathKind::File => "file",
        PathKind::Dir => "directory",
        PathKind::Symlink => "symlink",
        PathKind::Unknown => "path of unknown kind",
    }
}

/// `raw` split into [`Name`]s, or why it is not a relative path of plain components.
fn components(raw: &[u8]) -> Result<Vec<Name>, &'static str> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if raw.starts_with(b"/") {
        return Err("an absolute path");
    }
    raw.split(|&b| b == b'/')
        .map(|part| match part {
            b"" => Err("a path with an empty component (`//` or a trailing `/`)"),
            b"." => Err("a path with a `.` component"),
            b".." => Err("a path with a `..` component"),
            _ if part.contains(&0) => Err("a path holding a NUL byte"),
            _ => Ok(Name(part.to_vec())),
        })
        .collect()
}

/// Checks a host's listing for a download of `asked`; see the module docs for what passes.
pub fn validate(list: PathList, asked: &[u8], recursive: bool) -> Result<Listing, ListingError> {
    let root_text = shown(&list.root);
    let name = root_name(asked, &list.root)?;
    let first = list.entries.first().ok_or(ListingError::Empty)?;
    if !first.path.is_empty() {
        return Err(ListingError::RootNotFirst(shown(&first.path)));
    }
    let single = !recursive || first.meta.kind != PathKind::Dir;
    if single && list.entries.len() != 1 {
        return Err(ListingError::Several {
            root: root_text,
            count: list.entries.len(),
        });
    }
    let mut seen: HashMap<Vec<u8>, PathKind> = HashMap::with_capacity(list.entries.len());
    let mut entries = Vec::with_capacity(list.entries.len());
    for listed in list.entries {
        let entry = shown(&listed.path);
        if listed.meta.kind == PathKind::Unknown {
            return Err(ListingError::UnknownKind(entry));
        }
        let path = components(&listed.path).map_err(|why| ListingError::BadPath {
            entry: entry.clone(),
            why,
        })?;
        if let Some(parent_len) = listed
            .path
            .iter()
            .rposition(|&b| b == b'/')
            .or((!path.is_empty()).then_some(0))
        {
            check_parent(&seen, &listed.path[..parent_len], &entry)?;
        }
        if seen.insert(listed.path.clone(), listed.meta.kind).is_some() {
            return Err(ListingError::Duplicate(entry));
        }
        entries.push(Entry {
            path,
            raw: listed.path,
            meta: listed.meta,
        });
    }
    Ok(Listing {
        root: list.root,
        name,
        entries,
    })
}

/// The parent of `entry` (`parent` bytes, empty for the root) was listed, as a directory.
fn check_parent(seen: &HashMap<Vec<u8>, PathKind>, parent: &[u8], entry: &str) -> Result<(), ListingError> {
    match seen.get(parent) {
        None => Err(ListingError::NoParent(entry.to_string())),
        Some(PathKind::Dir) => Ok(()),
        Some(kind) => Err(ListingError::ParentNotDir {
            entry: entry.to_string(),
            parent: match parent.is_empty() {
                true => "the path asked for".to_string(),
                false => shown(parent),
            },
            kind: kind_name(*kind),
        }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use remora_wire::ListedPath;

    use super::*;

    fn meta(kind: PathKind) -> PathMeta {
        PathMeta {
            kind,
            ..PathMeta::default()
        }
    }

    fn list(entries: &[(&str, PathKind)]) -> PathList {
        PathList {
            root: b"/srv/tree".to_vec(),
            entries: entries
                .iter()
                .map(|(path, kind)| ListedPath {
                    path: path.as_bytes().to_vec(),
                    meta: meta(*kind),
                })
                .collect(),
        }
    }

    use PathKind::{Dir, File, Symlink};

    #[test]
    fn base_names_ignore_trailing_slashes_and_keep_any_bytes() {
        assert_eq!(base_name(b"a/b/"), b"b");
        assert_eq!(base_name(b"x"), b"x");
        assert_eq!(base_name(b"/"), b"/");
        assert_eq!(base_name(b"d/n\xffame with\nnewline"), b"n\xffame with\nnewline");
    }

    #[test]
    fn the_root_name_is_the_one_asked_for_else_a_plain_one_from_the_host() {
        let mut tree = list(&[("", File)]);
        assert_eq!(
            validate(tree.clone(), b"dir/asked", false).unwrap().name.as_bytes(),
            b"asked"
        );
        assert_eq!(validate(tree.clone(), b".", false).unwrap().name.as_bytes(), b"tree");
        for hostile in [&b"/"[..], b"/x/..", b"/x/.", b""] {
            tree.root = hostile.to_vec();
            let err = validate(tree.clone(), b"..", false).unwrap_err();
            assert!(matches!(err, ListingError::RootName(_)), "{err}");
        }
    }

    #[test]
    fn a_well_formed_tree_passes() {
        let tree = list(&[("", Dir), ("a", Dir), ("a/b", File), ("a/l", Symlink), ("c", File)]);
        let listing = validate(tree, b"tree", true).unwrap();
        assert_eq!(listing.entries.len(), 5);
        assert_eq!(listing.entries[2].path, vec![Name(b"a".to_vec()), Name(b"b".to_vec())]);
    }

    #[test]
    fn hostile_paths_are_refused_naming_the_entry() {
        for bad in ["/etc/x", "../x", "a/../../x", "a//b", "a/./b", "a/", ".", "..", "a/\0"] {
            let tree = list(&[("", Dir), ("a", Dir), (bad, File)]);
            let err = validate(tree, b"tree", true).unwrap_err();
            assert!(matches!(err, ListingError::BadPath { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(&shown(bad.as_bytes())), "{err}");
        }
    }

    #[test]
    fn order_duplicates_and_links_are_checked() {
        let refused = [
            list(&[("", Dir), ("a/b", File), ("a", Dir)]),
            list(&[("", Dir), ("a", File), ("a", File)]),
            list(&[("", Dir), ("l", Symlink), ("l/authorized_keys", File)]),
            list(&[("", Dir), ("f", File), ("f/x", File)]),
            list(&[("x", File)]),
            list(&[("", Dir), ("u", PathKind::Unknown)]),
            list(&[]),
        ];
        for tree in refused {
            assert!(validate(tree.clone(), b"tree", true).is_err(), "{tree:?}");
        }
    }

    #[test]
    fn without_r_or_for_a_file_there_is_exactly_one_entry() {
        let err = validate(list(&[("", File), ("extra", File)]), b"tree", false).unwrap_err();
        assert_eq!(
            err,
            ListingError::Several {
                root: "\"/srv/tree\"".into(),
                count: 2
            }
        );
        assert!(validate(list(&[("", File), ("extra", File)]), b"tree", true).is_err());
        assert!(validate(list(&[("", Dir), ("a", File)]), b"tree", false).is_err());
        assert!(validate(list(&[("", File)]), b"tree", false).is_ok());
    }

    /// Where `entry` lands when created under `dest` the way a plain path-joining writer would
    /// (`..` pops, `/` restarts at the top, symlinks listed earlier lead anywhere): false when
    /// it escapes `dest` or passes through a listed symlink or file.
    fn lands_inside(created: &HashMap<Vec<Vec<u8>>, PathKind>, raw: &[u8]) -> bool {
        let mut at: Vec<Vec<u8>> = Vec::new();
        if raw.starts_with(b"/") {
            return raw.is_empty();
        }
        let parts: Vec<&[u8]> = match raw.is_empty() {
            true => Vec::new(),
            false => raw.split(|&b| b == b'/').collect(),
        };
        for (i, part) in parts.iter().enumerate() {
            match *part {
                b"" | b"." => {}
                b".." if at.is_empty() => return false,
                b".." => {
                    at.pop();
                }
                name => at.push(name.to_vec()),
            }
            let last = i + 1 == parts.len();
            if !last && created.get(&at).is_some_and(|kind| *kind != PathKind::Dir) {
                return false;
            }
        }
        true
    }

    fn hostile_component() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => Just("a".to_string()),
            3 => Just("b".to_string()),
            1 => Just("..".to_string()),
            1 => Just(".".to_string()),
            1 => Just(String::new()),
            1 => Just("/etc".to_string()),
            1 => Just("a\0".to_string()),
            1 => "[a-c]{1,3}",
        ]
    }

    fn hostile_listing() -> impl Strategy<Value = PathList> {
        let entry = (
            prop::collection::vec(hostile_component(), 1..4),
            prop_oneof![Just(Dir), Just(File), Just(Symlink)],
        );
        (prop_oneof![Just(Dir), Just(File)], prop::collection::vec(entry, 0..8)).prop_map(|(root, rest)| {
            let mut entries = vec![ListedPath {
                path: Vec::new(),
                meta: meta(root),
            }];
            entries.extend(rest.into_iter().map(|(parts, kind)| ListedPath {
                path: parts.join("/").into_bytes(),
                meta: meta(kind),
            }));
            PathList {
                root: b"/r".to_vec(),
                entries,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// For any listing, either it is refused, or every path it yields stays inside the
        /// destination and never passes through a symlink or file it listed.
        #[test]
        fn an_accepted_listing_stays_inside_dest(list in hostile_listing(), recursive in any::<bool>()) {
            let raws: Vec<Vec<u8>> = list.entries.iter().map(|e| e.path.clone()).collect();
            if let Ok(listing) = validate(list, b"r", recursive) {
                let mut created = HashMap::new();
                for (entry, raw) in listing.entries.iter().zip(&raws) {
                    prop_assert!(lands_inside(&created, raw), "{raw:?} escapes");
                    let joined: Vec<u8> = entry.path.iter().map(Name::as_bytes).collect::<Vec<_>>().join(&b'/');
                    prop_assert_eq!(&joined, raw);
                    let key: Vec<Vec<u8>> = entry.path.iter().map(|n| n.0.clone()).collect();
                    prop_assert!(created.insert(key, entry.meta.kind).is_none());
                }
            }
        }

        /// A tree listed the way the agent lists one (parents first, plain names) always passes.
        #[test]
        fn a_plain_tree_is_accepted(names in prop::collection::btree_set("[a-z]{1,4}", 0..6)) {
            let mut entries = vec![("".to_string(), Dir)];
            for name in &names {
                entries.push((name.clone(), Dir));
                entries.push((format!("{name}/f"), File));
                entries.push((format!("{name}/l"), Symlink));
            }
            let entries: Vec<(&str, PathKind)> = entries.iter().map(|(p, k)| (p.as_str(), *k)).collect();
            prop_assert!(validate(list(&entries), b"tree", true).is_ok());
        }
    }
}

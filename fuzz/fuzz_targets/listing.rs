//! Fuzz target: the client's check of a download's listing (`remora_client::listing::validate`),
//! which stands between a hostile host's `PathList` and the code that creates files.
//!
//! Input, split at `\n` (so no listed path holds a newline; every other byte can appear):
//! byte 0 is flags (bit 0: `-r`), then the path asked for, the root the host names, and one line
//! per listed path: its first byte the kind (`% 4`: file, directory, symlink, unknown), the rest
//! the path.
//!
//! Checks, on top of "no panic":
//! - what is accepted stays inside the destination: the first entry is the root, every other
//!   one is made of plain components (not empty, `.` or `..`, no `/` or NUL) whose parent was
//!   listed before it as a directory, nothing is listed twice, every kind is known, and without
//!   `-r` or for a root that is no directory there is one entry; the entries are the host's, in
//!   order, and the root's name is a plain component: the asked path's file name, else the host's;
//! - it is accepted exactly when a reference check of those rules (written apart from the code
//!   under test, over component lists) accepts it, so no well-formed listing is refused either.

#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use remora_client::listing::{base_name, validate, Listing, Name};
use remora_wire::{ListedPath, PathKind, PathList, PathMeta};

struct Case {
    list: PathList,
    asked: Vec<u8>,
    recursive: bool,
}

fn kind(byte: u8) -> PathKind {
    match byte % 4 {
        0 => PathKind::File,
        1 => PathKind::Dir,
        2 => PathKind::Symlink,
        _ => PathKind::Unknown,
    }
}

fn listed(line: &[u8]) -> ListedPath {
    let (kind_byte, path) = line.split_first().map_or((0, &[][..]), |(k, p)| (*k, p));
    ListedPath {
        path: path.to_vec(),
        meta: PathMeta {
            kind: kind(kind_byte),
            ..PathMeta::default()
        },
    }
}

fn case(input: &[u8]) -> Option<Case> {
    let (&flags, rest) = input.split_first()?;
    let mut lines = rest.split(|&b| b == b'\n');
    let asked = lines.next()?.to_vec();
    let root = lines.next()?.to_vec();
    Some(Case {
        list: PathList {
            root,
            entries: lines.map(listed).collect(),
        },
        asked,
        recursive: flags & 1 == 1,
    })
}

/// `raw` as plain components, or `None`; the root's path is empty (no components).
fn plain_components(raw: &[u8]) -> Option<Vec<&[u8]>> {
    if raw.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&[u8]> = raw.split(|&b| b == b'/').collect();
    let plain = |part: &&[u8]| !part.is_empty() && *part != b"." && *part != b".." && !part.contains(&0);
    parts.iter().all(plain).then_some(parts)
}

/// The reference: would a careful reader of the rules accept this listing?
fn acceptable(case: &Case) -> bool {
    let entries = &case.list.entries;
    let has_name = Name::new(&base_name(&case.asked)).is_some() || Name::new(&base_name(&case.list.root)).is_some();
    let Some(first) = entries.first() else {
        return false;
    };
    let single = !case.recursive || first.meta.kind != PathKind::Dir;
    if !has_name || !first.path.is_empty() || (single && entries.len() != 1) {
        return false;
    }
    let mut kinds: HashMap<Vec<&[u8]>, PathKind> = HashMap::new();
    for entry in entries {
        let Some(parts) = plain_components(&entry.path) else {
            return false;
        };
        let parent_is_dir = match parts.split_last() {
            None => true,
            Some((_, parent)) => kinds.get(parent) == Some(&PathKind::Dir),
        };
        if entry.meta.kind == PathKind::Unknown || !parent_is_dir || kinds.insert(parts, entry.meta.kind).is_some() {
            return false;
        }
    }
    true
}

/// Every property an accepted listing promises; panics naming the first one broken.
fn check_accepted(listing: &Listing, list: &PathList, asked: &[u8], recursive: bool) {
    assert_eq!(listing.root, list.root, "the root is the host's");
    let expected_name = Name::new(&base_name(asked)).or_else(|| Name::new(&base_name(&list.root)));
    assert_eq!(Some(&listing.name), expected_name.as_ref(), "the root's name");
    assert_eq!(listing.entries.len(), list.entries.len(), "every listed path, no more");
    let first = &listing.entries[0];
    assert!(first.path.is_empty() && first.raw.is_empty(), "the root comes first");
    if !recursive || first.meta.kind != PathKind::Dir {
        assert_eq!(listing.entries.len(), 1, "a single path");
    }
    let mut dirs: HashSet<Vec<Name>> = HashSet::new();
    let mut seen: HashSet<Vec<Name>> = HashSet::new();
    for (entry, host) in listing.entries.iter().zip(&list.entries) {
        assert_eq!(
            (&entry.raw, &entry.meta),
            (&host.path, &host.meta),
            "entries in the host's order"
        );
        assert_ne!(entry.meta.kind, PathKind::Unknown, "a known kind");
        for name in &entry.path {
            assert_eq!(Name::new(name.as_bytes()).as_ref(), Some(name), "a plain component");
        }
        let joined = entry.path.iter().map(Name::as_bytes).collect::<Vec<_>>().join(&b'/');
        assert_eq!(joined, entry.raw, "the components are the raw path");
        if let Some((_, parent)) = entry.path.split_last() {
            assert!(
                dirs.contains(parent),
                "{:?}: the parent was listed before, as a directory",
                entry.raw
            );
        }
        assert!(seen.insert(entry.path.clone()), "{:?} listed twice", entry.raw);
        if entry.meta.kind == PathKind::Dir {
            dirs.insert(entry.path.clone());
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some(case) = case(input) else {
        return;
    };
    let reference = acceptable(&case);
    let list = case.list.clone();
    match validate(case.list, &case.asked, case.recursive) {
        Ok(listing) => {
            assert!(reference, "accepted, but the reference refuses {list:?}");
            check_accepted(&listing, &list, &case.asked, case.recursive);
        }
        Err(err) => assert!(!reference, "refused ({err}), but the reference accepts {list:?}"),
    }
});

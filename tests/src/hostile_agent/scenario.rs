//! What the hostile agent answers, by scenario. A download (`GetPath`) is answered by the
//! listing its path's last component names; every file it lists holds [`CONTENT`].

use std::{os::unix::ffi::OsStrExt, path::Path};

use remora_wire::{AgentBody, ClientBody, FileData, FileEnd, ListedPath, PathKind, PathList, PathMeta};
use sha2::{Digest, Sha256};

use super::World;

/// The bytes of every file the hostile agent sends.
pub const CONTENT: &[u8] = b"ssh-ed25519 AAAA-the-hosts-key attacker\n";

/// Listing scenarios: the name a test downloads, and what the host lists for it.
pub const LISTINGS: &[&str] = &[
    "absolute",
    "dotdot",
    "symlink-then-file",
    "extra-without-r",
    "setuid",
    "plain-tree",
];

/// The replies to `body`, or `None` for a request no scenario answers.
pub fn answer(world: &World, body: ClientBody) -> Option<Vec<AgentBody>> {
    match body {
        ClientBody::GetPath(get) => {
            let root = Path::new(std::ffi::OsStr::from_bytes(&get.path));
            let name = root.file_name()?.to_str()?;
            let entries = listing(world, name)?;
            let root = world.dir.join("remote").join(name);
            let list = PathList {
                root: root.as_os_str().as_bytes().to_vec(),
                entries,
            };
            Some(vec![AgentBody::PathList(list)])
        }
        ClientBody::ReadFile(read) => Some(file(read.offset)),
        _ => None,
    }
}

/// `CONTENT` from `offset`, then its size and SHA-256.
fn file(offset: u64) -> Vec<AgentBody> {
    let from = (offset as usize).min(CONTENT.len());
    vec![
        AgentBody::FileData(FileData {
            offset: from as u64,
            data: CONTENT[from..].to_vec(),
        }),
        AgentBody::FileEnd(FileEnd {
            size: CONTENT.len() as u64,
            sha256: data_encoding::HEXLOWER.encode(&Sha256::digest(CONTENT)),
        }),
    ]
}

fn entry(path: &[u8], kind: PathKind, mode: u32) -> ListedPath {
    ListedPath {
        path: path.to_vec(),
        meta: PathMeta {
            kind,
            size: if kind == PathKind::File {
                CONTENT.len() as u64
            } else {
                0
            },
            mode,
            mtime: 1_000_000_000,
            mtime_nanos: 0,
            link_target: Vec::new(),
        },
    }
}

fn link(path: &[u8], target: &Path) -> ListedPath {
    let mut link = entry(path, PathKind::Symlink, 0o777);
    link.meta.link_target = target.as_os_str().as_bytes().to_vec();
    link
}

/// The entries of the listing scenario `name` (see [`LISTINGS`]).
fn listing(world: &World, name: &str) -> Option<Vec<ListedPath>> {
    use PathKind::{Dir, File};
    let outside = world.outside();
    let keys = outside.join("authorized_keys");
    let root = entry(b"", Dir, 0o755);
    Some(match name {
        // An absolute path: scp's CVE-2019-6111 class.
        "absolute" => vec![root, entry(keys.as_os_str().as_bytes(), File, 0o644)],
        // Up and out of DEST/dotdot: DEST/dotdot/../../outside is the test dir's outside/.
        "dotdot" => vec![root, entry(b"../../outside/authorized_keys", File, 0o644)],
        // A link the copy itself makes, then a file "inside" it.
        "symlink-then-file" => vec![
            root,
            link(b"keys", &outside),
            entry(b"keys/authorized_keys", File, 0o644),
        ],
        // Asked without -r for one file, more paths come.
        "extra-without-r" => vec![entry(b"", File, 0o644), entry(b"more", File, 0o644)],
        // Set-uid, set-gid and sticky bits, for a copy with -p.
        "setuid" => vec![
            root,
            entry(b"tool", File, 0o6755),
            entry(b"shared", Dir, 0o3777),
            entry(b"shared/tool", File, 0o4711),
        ],
        // A well-formed tree: what an honest agent lists (for links found on disk).
        "plain-tree" => vec![
            root,
            entry(b"sub", Dir, 0o755),
            entry(b"sub/authorized_keys", File, 0o600),
        ],
        _ => return None,
    })
}

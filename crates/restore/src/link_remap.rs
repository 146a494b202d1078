//! Link remaps: a file whose path no longer named it at the dump, but
//! that had links elsewhere, was given a hard link then
//! (`link_remap.<id>`, the dump's `link_remap` module); `remap-fpath.img`
//! ties its file entry (LINKED) to the regular-file entry of that link.
//! Every fd, mapping or executable of the file is opened through the
//! link, so that it is the same inode again, and once every fd of the
//! tree is open the links are removed, as CRIU removes them. A restore
//! that fails leaves them (as CRIU does), so that it can be tried again.
//!
//! Beyond CRIU: when the file's old name is free, the file is linked
//! there too and opened by it, then that name is removed as well, so
//! that /proc shows the file as it did at the dump (`NAME (deleted)`,
//! not `link_remap.N (deleted)`); the names made so go whether the
//! restore succeeds or fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result};

/// The link remaps of a restore.
#[derive(Debug, Default)]
pub struct Links {
    /// file id → the id of its link's regular-file entry.
    remaps: BTreeMap<u32, u32>,
    /// The links opened through.
    used: BTreeSet<PathBuf>,
    /// Old names the files were linked at again, to open them by.
    named: BTreeSet<PathBuf>,
    /// Directories made for them (removed since the dump), in the order
    /// made.
    dirs: Vec<PathBuf>,
}

impl Links {
    /// Reads the LINKED entries of `remap-fpath.img`; each must lead to a
    /// regular-file entry of `files`.
    pub fn load(dir: &ImageDir, files: &BTreeMap<u32, Box<pb::FileEntry>>) -> Result<Links> {
        let mut l = Links::default();
        if !dir.exists(ImageFile::RemapFpath) {
            return Ok(l);
        }
        let name = ImageFile::RemapFpath.name();
        for r in dir.read_all::<pb::RemapFilePathEntry>(ImageFile::RemapFpath)? {
            // Without a type: CRIU's oldest images, where it is LINKED
            // unless the ghost bit is set. rcriu reads typed ones only.
            if r.remap_type != Some(pb::RemapType::Linked as i32) {
                continue;
            }
            if files.get(&r.remap_id).is_none_or(|f| f.reg.is_none()) {
                return Err(Error::invalid(
                    &name,
                    format!(
                        "file {} is remapped to the link {}, which is no regular-file entry of files.img",
                        r.orig_id, r.remap_id
                    ),
                ));
            }
            if !files.contains_key(&r.orig_id) {
                return Err(Error::invalid(
                    &name,
                    format!(
                        "a link remap of file {}, which files.img does not have",
                        r.orig_id
                    ),
                ));
            }
            if l.remaps.insert(r.orig_id, r.remap_id).is_some() {
                return Err(Error::invalid(
                    &name,
                    format!("file {} is remapped twice", r.orig_id),
                ));
            }
        }
        Ok(l)
    }

    /// Whether file entry `id` is opened through a link.
    pub fn is_linked(&self, id: u32) -> bool {
        self.remaps.contains_key(&id)
    }

    /// The path to open file entry `id` (named `name` at the dump) by,
    /// when it was link-remapped: its old name linked again when that is
    /// free, else its link (`path_of` turns an entry's name into a path
    /// from the restore's root).
    pub fn path_of(
        &mut self,
        files: &BTreeMap<u32, Box<pb::FileEntry>>,
        id: u32,
        name: &Path,
        path_of: impl Fn(&pb::RegFileEntry) -> PathBuf,
    ) -> Result<Option<PathBuf>> {
        let Some(lid) = self.remaps.get(&id) else {
            return Ok(None);
        };
        let reg = files
            .get(lid)
            .and_then(|f| f.reg.as_deref())
            .expect("Links::load checked that every link is a regular-file entry");
        let link = path_of(reg);
        let meta = std::fs::symlink_metadata(&link).map_err(|e| Error::Io {
            what: format!(
                "file {id} was link-remapped at the dump to {}, which is gone (a dump whose process ran on removes its links, as CRIU's does)",
                link.display()
            ),
            source: e,
        })?;
        self.used.insert(link.clone());
        if self.named.contains(name) && same_file(name, &meta) {
            return Ok(Some(name.to_owned()));
        }
        match link_again(&link, name, &mut self.dirs) {
            Ok(()) => {
                log::debug!(
                    "file {id} opened by its old name {}, linked again from {}",
                    name.display(),
                    link.display()
                );
                self.named.insert(name.to_owned());
                Ok(Some(name.to_owned()))
            }
            Err(e) => {
                log::debug!(
                    "file {id} opened through its link {} ({} is taken: {e})",
                    link.display(),
                    name.display()
                );
                Ok(Some(link))
            }
        }
    }

    /// Removes the old names the files were linked at again, and the
    /// directories made for them.
    fn unlink_named(&mut self) -> Result<()> {
        let mut first = Ok(());
        for p in std::mem::take(&mut self.named) {
            if let Err(e) = remove(&p)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        for d in std::mem::take(&mut self.dirs).iter().rev() {
            if let Err(e) = std::fs::remove_dir(d)
                && first.is_ok()
            {
                first = Err(Error::file("removing the directory made for", d)(e));
            }
        }
        first
    }

    /// Removes every link of the images (as CRIU does once the tree is
    /// restored), opened through or not.
    pub fn unlink_all(
        &mut self,
        files: &BTreeMap<u32, Box<pb::FileEntry>>,
        path_of: impl Fn(&pb::RegFileEntry) -> PathBuf,
    ) -> Result<()> {
        let named = self.unlink_named();
        let mut all = std::mem::take(&mut self.used);
        for lid in std::mem::take(&mut self.remaps).values() {
            if let Some(reg) = files.get(lid).and_then(|f| f.reg.as_deref()) {
                all.insert(path_of(reg));
            }
        }
        let mut first = named;
        for p in all {
            if let Err(e) = remove(&p)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

impl Drop for Links {
    /// A failed restore: the old names linked again go, the links made
    /// at the dump stay (as CRIU leaves them).
    fn drop(&mut self) {
        if let Err(e) = self.unlink_named() {
            log::error!("{e}");
        }
    }
}

/// Links `link` at `name` again, making the directories above it that
/// are gone (recorded in `dirs`, mode 0700); what it made is undone when
/// it fails.
fn link_again(link: &Path, name: &Path, dirs: &mut Vec<PathBuf>) -> std::io::Result<()> {
    match std::fs::hard_link(link, name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        r => return r,
    }
    let mut missing = Vec::new();
    let mut up = name.parent();
    while let Some(d) = up {
        if d.as_os_str().is_empty() || std::fs::symlink_metadata(d).is_ok() {
            break;
        }
        missing.push(d.to_owned());
        up = d.parent();
    }
    let mut made = Vec::new();
    let mut r = Ok(());
    for d in missing.into_iter().rev() {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&d) {
            r = Err(e);
            break;
        }
        made.push(d);
    }
    if r.is_ok() {
        r = std::fs::hard_link(link, name);
    }
    match r {
        Ok(()) => dirs.extend(made),
        Err(_) => {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    r
}

/// Whether `p` is the file `meta` describes.
fn same_file(p: &Path, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

fn remove(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => {
            log::info!("link remap {} removed", p.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::file("removing the link remap", p)(e)),
    }
}

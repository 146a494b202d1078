//! Link remaps: a file whose path no longer named it at the dump, but
//! that had links elsewhere, was given a hard link then
//! (`link_remap.<id>`, [the dump's `link_remap`]); `remap-fpath.img`
//! ties its file entry (LINKED) to the regular-file entry of that link.
//! Every fd, mapping or executable of the file is opened through the
//! link, so that it is the same inode again, and once every fd of the
//! tree is open the links are removed, as CRIU removes them. A restore
//! that fails leaves them (as CRIU does), so that it can be tried again.
//!
//! [the dump's `link_remap`]: ../../rcriu_dump/link_remap/index.html

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

    /// The path to open file entry `id` by, when it was link-remapped:
    /// its link's (`path_of` turns an entry's name into a path from the
    /// restore's root).
    pub fn path_of(
        &mut self,
        files: &BTreeMap<u32, Box<pb::FileEntry>>,
        id: u32,
        path_of: impl Fn(&pb::RegFileEntry) -> PathBuf,
    ) -> Result<Option<PathBuf>> {
        let Some(lid) = self.remaps.get(&id) else {
            return Ok(None);
        };
        let reg = files
            .get(lid)
            .and_then(|f| f.reg.as_ref())
            .expect("Links::load checked that every link is a regular-file entry");
        let path = path_of(reg);
        if let Err(e) = std::fs::symlink_metadata(&path) {
            return Err(Error::Io {
                what: format!(
                    "file {id} was link-remapped at the dump to {}, which is gone (a dump whose process ran on removes its links, as CRIU's does)",
                    path.display()
                ),
                source: e,
            });
        }
        log::debug!("file {id} opened through its link {}", path.display());
        self.used.insert(path.clone());
        Ok(Some(path))
    }

    /// Removes every link of the images (as CRIU does once the tree is
    /// restored), opened through or not.
    pub fn unlink_all(
        &mut self,
        files: &BTreeMap<u32, Box<pb::FileEntry>>,
        path_of: impl Fn(&pb::RegFileEntry) -> PathBuf,
    ) -> Result<()> {
        let mut all = std::mem::take(&mut self.used);
        for lid in std::mem::take(&mut self.remaps).values() {
            if let Some(reg) = files.get(lid).and_then(|f| f.reg.as_ref()) {
                all.insert(path_of(reg));
            }
        }
        let mut first = Ok(());
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

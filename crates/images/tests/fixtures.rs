//! The dump written by upstream CRIU 4.2 in tests/fixtures: crit 4.2's
//! values come out, the same bytes go back in, and the typed API reads it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcriu_images::json::{self, Value};
use rcriu_images::pages::{PE_LAZY, PE_PRESENT, PagesReader};
use rcriu_images::{ImageDir, ImageFile, Kind, open_image};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn dump() -> PathBuf {
    fixtures().join("criu-4.2/counter")
}

/// Every image of the dump (not the raw pages) and crit's JSON of it.
fn images() -> Vec<(PathBuf, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(dump())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pages-")
        })
        .map(|p| {
            let json = fixtures()
                .join("crit-4.2-json/counter")
                .join(format!("{}.json", p.file_name().unwrap().to_str().unwrap()));
            (p, json)
        })
        .collect();
    out.sort();
    assert_eq!(
        out.len(),
        12,
        "the fixture dump has 12 images besides pages-1.img"
    );
    out
}

#[test]
fn decodes_to_crit_4_2_values() {
    for (img, json_path) in images() {
        let theirs: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        let ours = json::decode_image(open_image(&img).unwrap(), false).unwrap();
        assert_eq!(ours, theirs, "{}", img.display());
        // And the text parses back to the same values.
        let text = json::to_text(&ours, false);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), theirs);
    }
}

#[test]
fn crit_4_2_json_encodes_to_the_same_bytes() {
    for (img, json_path) in images() {
        let v = json::parse(&std::fs::read_to_string(&json_path).unwrap(), "fixture").unwrap();
        let mut out = Vec::new();
        json::encode_image(&v, "fixture", &mut out).unwrap();
        assert_eq!(out, std::fs::read(&img).unwrap(), "{}", img.display());
        // The pretty form too.
        let pretty = json::decode_image(open_image(&img).unwrap(), true).unwrap();
        let mut out2 = Vec::new();
        json::encode_image(&pretty, "fixture", &mut out2).unwrap();
        assert_eq!(out2, out, "{} (pretty)", img.display());
    }
}

#[test]
fn pretty_forms() {
    let mm = json::decode_image(open_image(&dump().join("mm-30000.img")).unwrap(), true).unwrap();
    let e = &mm["entries"][0];
    assert_eq!(e["mm_start_code"], "0x401000");
    assert_eq!(e["vmas"][0]["prot"], "PROT_READ");
    assert_eq!(e["vmas"][0]["flags"], "MAP_PRIVATE");
    assert_eq!(
        e["vmas"][0]["status"],
        "VMA_AREA_REGULAR | VMA_FILE_PRIVATE"
    );
    let core =
        json::decode_image(open_image(&dump().join("core-30000.img")).unwrap(), true).unwrap();
    let c = &core["entries"][0];
    assert_eq!(c["tc"]["task_state"], "Alive");
    // hex is inherited by nested messages.
    assert_eq!(c["thread_info"]["gpregs"]["cs"], "0x33");
    assert_eq!(c["thread_info"]["gpregs"]["mode"], "NATIVE");
    let text = json::to_text(&core, true);
    assert!(text.starts_with("{\n    \"magic\": \"CORE\",\n    \"entries\": [\n        {\n"));
}

#[test]
fn typed_access() {
    let d = ImageDir::open(dump()).unwrap();
    let inv = d.inventory().unwrap();
    assert_eq!(inv.img_version, 2);
    assert_eq!(inv.fdinfo_per_id, Some(true));
    let tree = d.pstree().unwrap();
    assert_eq!(tree.len(), 1);
    assert_eq!(
        (tree[0].pid, tree[0].ppid, tree[0].threads.as_slice()),
        (30000, 0, &[30000][..])
    );
    let core = d.core(30000).unwrap();
    assert_eq!(core.tc.as_ref().unwrap().comm, b"counter");
    let ti = core.thread_info.as_ref().unwrap();
    assert_eq!(ti.fpregs.xsave.as_ref().unwrap().xstate_bv, 0x2a2);
    let ids = d.ids(30000).unwrap();
    let fds = d.fdinfo(ids.files_id).unwrap();
    assert_eq!(fds.iter().map(|f| f.fd).collect::<Vec<_>>(), [0, 1, 2]);
    let files = d.files().unwrap();
    assert_eq!(
        files[0].reg.as_deref().unwrap().name,
        b"/tmp/rcriu-fixtures/counter"
    );
    assert!(d.timens(0).unwrap().is_some());
    assert!(d.timens(1).unwrap().is_none());
    assert_eq!(
        d.stats_dump().unwrap().unwrap().dump.unwrap().pages_written,
        1039
    );
    // A kind that is not the file's is refused.
    let e = d
        .reader(ImageFile::Core(30000))
        .unwrap()
        .read_next::<rcriu_images::pb::MmEntry>();
    assert!(e.unwrap_err().to_string().contains("core-30000.img"));
}

#[test]
fn pagemap_and_pages_stream() {
    let d = ImageDir::open(dump()).unwrap();
    let mut pm = d.pagemap(30000).unwrap();
    assert_eq!(pm.pages_id(), 1);
    let mut pages = d.pages(pm.pages_id()).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let copy = ImageDir::create(out_dir.path().join("copy")).unwrap();
    let mut pm_out = copy.create_pagemap(30000, 1).unwrap();
    let mut pages_out = copy.create_pages(1).unwrap();
    let (mut runs, mut present, mut lazy) = (0, 0, 0);
    let mut buf = Vec::new();
    while let Some(run) = pm.next_run().unwrap() {
        runs += 1;
        pm_out.add(run.vaddr, run.nr_pages, run.flags).unwrap();
        if run.flags & PE_PRESENT != 0 {
            assert_eq!(run.pages_offset, Some(pages.offset()));
            present += run.nr_pages;
            buf.resize(run.len() as usize, 0);
            pages.read_pages(&mut buf).unwrap();
            pages_out.write_pages(&buf).unwrap();
        }
        if run.flags & PE_LAZY != 0 {
            lazy += run.nr_pages;
        }
    }
    pm_out.finish().unwrap();
    assert_eq!((runs, present, lazy), (11, 1039, 1031));
    assert_eq!(pm.pages_len(), pages.len());
    assert_eq!(pages_out.offset(), pages.len());
    drop(pages_out);
    for f in [ImageFile::Pagemap(30000), ImageFile::Pages(1)] {
        assert_eq!(
            std::fs::read(copy.file_path(f)).unwrap(),
            std::fs::read(d.file_path(f)).unwrap(),
            "{}",
            f.name()
        );
        let mode = std::fs::metadata(copy.file_path(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.name());
    }
    let mode = std::fs::metadata(copy.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // Reading past the end is an error naming the file and offset.
    let mut big = vec![0u8; 8192];
    let e = pages
        .read_pages_at(&mut big, pages.len() - 4096)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("at offset {}", pages.len() - 4096)),
        "{e}"
    );
    let p = PagesReader::open(&d.file_path(ImageFile::Pages(1))).unwrap();
    assert_eq!(p.len(), 4_255_744);
}

#[test]
fn writes_through_image_dir() {
    let d = ImageDir::open(dump()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = ImageDir::create(dir.path()).unwrap();
    out.write_one(ImageFile::Inventory, &d.inventory().unwrap())
        .unwrap();
    out.write_all(ImageFile::Fdinfo(2), &d.fdinfo(2).unwrap())
        .unwrap();
    out.write_one(ImageFile::Core(30000), &d.core(30000).unwrap())
        .unwrap();
    out.write_one(ImageFile::StatsDump, &d.stats_dump().unwrap().unwrap())
        .unwrap();
    for f in [
        ImageFile::Inventory,
        ImageFile::Fdinfo(2),
        ImageFile::Core(30000),
        ImageFile::StatsDump,
    ] {
        assert_eq!(
            std::fs::read(out.file_path(f)).unwrap(),
            std::fs::read(d.file_path(f)).unwrap(),
            "{}",
            f.name()
        );
    }
    assert_eq!(
        open_image(&out.file_path(ImageFile::StatsDump))
            .unwrap()
            .kind(),
        Kind::Stats
    );
    // Raw files hold no entries.
    assert!(out.writer(ImageFile::Pages(1)).is_err());
}

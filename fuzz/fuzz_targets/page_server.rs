//! The page server's side of the protocol fed arbitrary bytes, as a
//! hostile client would send them: one session reading the input (from a
//! memfd, which the server may `splice` from as from a socket, or, when
//! the first byte is odd, only read, as it reads a TLS stream) and
//! writing into an images directory whose `parent` has a pagemap (so
//! that OPEN2 and PARENT answer yes for process 1).
//!
//! Nothing may panic or hang (libFuzzer's `-timeout`); nothing may
//! appear outside the images directory; in it, only the link to the
//! parent and `pagemap-*.img` / `pages-*.img`. A session that fails
//! leaves no image; one that ends with CLOSE leaves each process's
//! pages image exactly as long as its pagemap's present runs.
#![no_main]

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rcriu_images::ImageDir;
use rcriu_images::pages::{PAGE_SIZE, PE_PRESENT};
use rcriu_page_server::PageStream;
use rcriu_page_server::server::Session;

/// The client's bytes; answers go nowhere. With `copied`, it has no fd
/// to splice (as a TLS stream).
struct Peer(std::fs::File, bool);

impl Read for Peer {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}

impl Write for Peer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PageStream for Peer {
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.1).then(|| self.0.as_fd())
    }
}

/// `top/` holding `images/` (linked to `../prev`) and `prev/`.
fn top() -> &'static PathBuf {
    static TOP: OnceLock<PathBuf> = OnceLock::new();
    TOP.get_or_init(|| {
        let top = std::env::temp_dir().join(format!("rcriu-fuzz-ps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        std::fs::create_dir_all(top.join("prev")).expect("the fuzz directory");
        std::fs::write(top.join("prev/pagemap-1.img"), b"").expect("the parent pagemap");
        let dir = ImageDir::create(top.join("images")).expect("the images directory");
        dir.link_parent(Path::new("../prev"))
            .expect("the parent link");
        top
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("listing a directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fn image(n: &str) -> bool {
    (n.starts_with("pagemap-") || n.starts_with("pages-")) && n.ends_with(".img")
}

fuzz_target!(|data: &[u8]| {
    let top = top();
    let path = top.join("images");
    let memfd =
        rustix::fs::memfd_create("ps-input", rustix::fs::MemfdFlags::CLOEXEC).expect("a memfd");
    let mut input = std::fs::File::from(memfd);
    input.write_all(data).expect("writing the input");
    input.rewind().expect("rewinding the input");
    let dir = ImageDir::open(&path).expect("the images directory");
    let copied = data.first().is_some_and(|b| b & 1 == 1);
    let result = Session::new(&dir, "the fuzzer").serve(&mut Peer(input, copied), false);

    assert_eq!(
        names(top),
        ["images", "prev"],
        "written outside the images directory"
    );
    assert_eq!(
        names(&top.join("prev")),
        ["pagemap-1.img"],
        "the parent changed"
    );
    let inside = names(&path);
    for n in &inside {
        assert!(n == "parent" || image(n), "{n} in the images directory");
    }
    match result {
        Err(_) => {
            let left: Vec<_> = inside.iter().filter(|n| image(n)).collect();
            assert!(left.is_empty(), "a failed session left {left:?}");
        }
        Ok(_) => {
            for n in &inside {
                let Some(pid) = n
                    .strip_prefix("pagemap-")
                    .and_then(|s| s.strip_suffix(".img"))
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let mut pm = dir.pagemap(pid).expect("a pagemap the server wrote");
                let mut bytes = 0u64;
                while let Some(r) = pm.next_run().expect("a run the server wrote") {
                    if r.flags & PE_PRESENT != 0 {
                        bytes += r.nr_pages * PAGE_SIZE;
                    }
                }
                let pages = path.join(format!("pages-{}.img", pm.pages_id()));
                let len = std::fs::metadata(&pages).map_or(0, |m| m.len());
                assert_eq!(len, bytes, "{n}: its pages image");
            }
        }
    }
    for n in inside.iter().filter(|n| image(n)) {
        std::fs::remove_file(path.join(n)).expect("cleaning up");
    }
});

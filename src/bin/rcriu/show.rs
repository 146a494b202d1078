//! `rcriu show`: one image as crit's `show` prints it, a summary of a
//! whole dump directory, or a container checkpoint archive described
//! ([`crate::archive`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcriu::images::pages::{PE_LAZY, PE_PARENT, PE_PRESENT};
use rcriu::images::pb::{self, FdTypes};
use rcriu::images::{self, ImageDir, ImageFile};

/// `rcriu show FILE|DIR`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "rcriu show",
    about = "Show an image (as crit show), summarise a dump directory or describe a container checkpoint archive"
)]
pub struct Args {
    /// An image file, a directory of images, or a container checkpoint
    /// archive (podman's `checkpoint --export`, CRI-O's).
    pub path: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.path.is_dir() {
        print!("{}", summary(&args.path)?);
    } else if crate::archive::is_archive(&args.path) {
        print!("{}", crate::archive::describe(&args.path)?);
    } else {
        let value = super::decode::decode_from(Some(&args.path), true)?;
        println!("{}", images::json::to_text(&value, true));
    }
    Ok(())
}

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const VMA_STACK: u32 = 1 << 1;
const VMA_VSYSCALL: u32 = 1 << 2;
const VMA_VDSO: u32 = 1 << 3;
const VMA_HEAP: u32 = 1 << 5;
const VMA_FILE_PRIVATE: u32 = 1 << 6;
const VMA_FILE_SHARED: u32 = 1 << 7;
const VMA_ANON_SHARED: u32 = 1 << 8;
const VMA_SYSVIPC: u32 = 1 << 10;
const VMA_SOCKET: u32 = 1 << 11;
const VMA_VVAR: u32 = 1 << 12;
const MAP_GROWSDOWN: u32 = 0x100;

/// What a file of `files.img` is, in a few words.
fn describe_file(files: &[pb::FileEntry], id: u32) -> String {
    let Some(f) = files.iter().find(|f| f.id == id) else {
        return format!("file {id} (not in files.img)");
    };
    let kind = FdTypes::try_from(f.r#type).map_or_else(
        |_| format!("type {}", f.r#type),
        |t| t.as_str_name().to_owned(),
    );
    let detail = if let Some(r) = &f.reg {
        text(&r.name)
    } else if let Some(p) = &f.pipe {
        format!("pipe[{}]", p.pipe_id)
    } else if let Some(p) = &f.fifo {
        format!("fifo[{}]", p.pipe_id)
    } else if let Some(u) = &f.usk {
        format!("unix socket ino {} peer {}", u.ino, u.peer)
    } else if let Some(s) = &f.isk {
        format!("inet socket ino {} port {}", s.ino, s.src_port)
    } else {
        String::new()
    };
    if detail.is_empty() {
        kind
    } else {
        format!("{kind} {detail}")
    }
}

fn vma_what(v: &pb::VmaEntry, files: &[pb::FileEntry]) -> String {
    let s = v.status;
    let mut what = if s & VMA_SYSVIPC != 0 {
        format!("sysv shm {}", v.shmid)
    } else if s & VMA_ANON_SHARED != 0 {
        format!("shared anon {}", v.shmid)
    } else if s & VMA_SOCKET != 0 {
        "packet socket ring".to_owned()
    } else if s & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
        let name =
            u32::try_from(v.shmid).map_or_else(|_| "?".to_owned(), |id| describe_file(files, id));
        let name = name.strip_prefix("REG ").unwrap_or(&name).to_owned();
        if v.pgoff != 0 {
            format!("{name} +{:#x}", v.pgoff)
        } else {
            name
        }
    } else if s & VMA_STACK != 0 {
        "[stack]".to_owned()
    } else if s & VMA_VSYSCALL != 0 {
        "[vsyscall]".to_owned()
    } else if s & VMA_VDSO != 0 {
        "[vdso]".to_owned()
    } else if s & VMA_VVAR != 0 {
        "[vvar]".to_owned()
    } else if s & VMA_HEAP != 0 {
        "[heap]".to_owned()
    } else if v.flags & MAP_GROWSDOWN != 0 {
        "[stack?]".to_owned()
    } else {
        String::new()
    };
    if s & VMA_FILE_SHARED != 0 {
        what.push_str(" (shared)");
    }
    what
}

fn prot(p: u32) -> String {
    [(1, 'r'), (2, 'w'), (4, 'x')]
        .iter()
        .map(|&(bit, c)| if p & bit != 0 { c } else { '-' })
        .collect()
}

/// A summary of the dump in `dir`: process tree, memory, files.
pub fn summary(dir: &Path) -> anyhow::Result<String> {
    let d = ImageDir::open(dir)?;
    let mut out = String::new();
    let inv = d.inventory()?;
    writeln!(out, "dump in {}", dir.display())?;
    writeln!(
        out,
        "  image version {}{}",
        inv.img_version,
        inv.dump_criu_run_id
            .as_ref()
            .map(|id| format!(", run {}", text(id)))
            .unwrap_or_default()
    )?;
    let files = d.files()?;
    let tree = d.pstree()?;
    writeln!(
        out,
        "\nprocesses\n  {:>7} {:>7} {:>7} {:>7}  {:<8} COMM",
        "PID", "PPID", "PGID", "SID", "THREADS"
    )?;
    let mut cores = Vec::new();
    for p in &tree {
        let core = d
            .core(p.pid)
            .with_context(|| format!("reading the core of {}", p.pid))?;
        let comm = core
            .tc
            .as_ref()
            .map(|tc| text(&tc.comm))
            .unwrap_or_default();
        let depth = depth_of(&tree, p.pid);
        writeln!(
            out,
            "  {:>7} {:>7} {:>7} {:>7}  {:<8} {}{}",
            p.pid,
            p.ppid,
            p.pgid,
            p.sid,
            p.threads.len(),
            "  ".repeat(depth),
            comm
        )?;
        cores.push((p, core, comm));
    }
    for (p, core, comm) in &cores {
        writeln!(out, "\nprocess {} ({comm})", p.pid)?;
        let arch =
            pb::core_entry::March::try_from(core.mtype).map_or("unknown", |m| m.as_str_name());
        let state = core.tc.as_ref().map_or(0, |tc| tc.task_state);
        let state = match state {
            1 => "alive",
            3 => "zombie",
            6 => "stopped",
            _ => "unknown state",
        };
        write!(out, "  {arch}, {state}")?;
        if let Some(ti) = &core.thread_info {
            write!(out, ", ip {:#x} sp {:#x}", ti.gpregs.ip, ti.gpregs.sp)?;
        }
        writeln!(out)?;
        if let Some(creds) = core.thread_core.as_ref().and_then(|t| t.creds.as_ref()) {
            writeln!(out, "  uid {} gid {}", creds.uid, creds.gid)?;
        }
        let ids = d.ids(p.pid).ok();
        if let Ok(mm) = d.mm(p.pid) {
            let total: u64 = mm.vmas.iter().map(|v| v.end.saturating_sub(v.start)).sum();
            writeln!(
                out,
                "  memory: {} areas, {} mapped",
                mm.vmas.len(),
                size(total)
            )?;
            let mut dumped = vec![0u64; mm.vmas.len()];
            let mut pages_line = String::new();
            if let Ok(mut pm) = d.pagemap(p.pid) {
                let (mut present, mut lazy, mut parent) = (0u64, 0u64, 0u64);
                while let Some(run) = pm.next_run()? {
                    if run.flags & PE_PRESENT != 0 {
                        present += run.nr_pages;
                    }
                    if run.flags & PE_LAZY != 0 {
                        lazy += run.nr_pages;
                    }
                    if run.flags & PE_PARENT != 0 {
                        parent += run.nr_pages;
                    }
                    for (i, v) in mm.vmas.iter().enumerate() {
                        let lo = run.vaddr.max(v.start);
                        let hi = run.end().min(v.end);
                        if hi > lo && run.flags & PE_PRESENT != 0 {
                            dumped[i] += hi - lo;
                        }
                    }
                }
                let file = d.file_path(ImageFile::Pages(pm.pages_id().into()));
                let on_disk = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                pages_line = format!(
                    "  pages: {present} in pages-{}.img ({}, file {}){}{}",
                    pm.pages_id(),
                    size(present * 4096),
                    size(on_disk),
                    if lazy > 0 {
                        format!(", {lazy} lazy")
                    } else {
                        String::new()
                    },
                    if parent > 0 {
                        format!(", {parent} in the parent")
                    } else {
                        String::new()
                    },
                );
            }
            writeln!(
                out,
                "    {:<33} {:>9} {:>9} {:<4} WHAT",
                "START-END", "SIZE", "DUMPED", "PROT"
            )?;
            for (v, dumped) in mm.vmas.iter().zip(&dumped) {
                let line = format!(
                    "    {:012x}-{:012x}     {:>9} {:>9} {:<4} {}",
                    v.start,
                    v.end,
                    size(v.end.saturating_sub(v.start)),
                    if *dumped > 0 {
                        size(*dumped)
                    } else {
                        "-".into()
                    },
                    prot(v.prot),
                    vma_what(v, &files)
                );
                writeln!(out, "{}", line.trim_end())?;
            }
            if !pages_line.is_empty() {
                writeln!(out, "{pages_line}")?;
            }
        }
        if let Some(ids) = &ids {
            let fds = d.fdinfo(ids.files_id)?;
            writeln!(out, "  fds (table {}): {}", ids.files_id, fds.len())?;
            for fd in &fds {
                writeln!(out, "    {:>4}: {}", fd.fd, describe_file(&files, fd.id))?;
            }
        }
        if let Ok(fs) = d.fs(p.pid) {
            let name = |id| {
                let s = describe_file(&files, id);
                s.strip_prefix("REG ").map(str::to_owned).unwrap_or(s)
            };
            writeln!(out, "  cwd {}, root {}", name(fs.cwd_id), name(fs.root_id))?;
        }
    }
    if let Some(sc) = d.seccomp()? {
        writeln!(out, "\nseccomp: {} filters", sc.seccomp_filters.len())?;
    }
    if let Some(st) = d.stats_dump()?
        && let Some(ds) = st.dump
    {
        writeln!(
            out,
            "\ndump stats: frozen {} us (freezing {} us), memory dump {} us, write {} us; pages scanned {}, written {}, lazy {}",
            ds.frozen_time,
            ds.freezing_time,
            ds.memdump_time,
            ds.memwrite_time,
            ds.pages_scanned,
            ds.pages_written,
            ds.pages_lazy
        )?;
    }
    writeln!(out, "\nfiles")?;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        let what = match ImageFile::parse(&name) {
            Some(f) => match f.kind() {
                Some(k) => match d.reader(f).and_then(|mut r| {
                    let mut n = 0;
                    while r.next_raw()?.is_some() {
                        n += 1;
                    }
                    Ok(n)
                }) {
                    Ok(1) if k.payload() == images::Payload::None => format!("{k}, 1 entry"),
                    Ok(n) if k.payload() == images::Payload::None => format!("{k}, {n} entries"),
                    Ok(_) => format!("{k}"),
                    Err(e) => format!("{k}, unreadable: {e}"),
                },
                None => "raw".to_owned(),
            },
            None => "not an image".to_owned(),
        };
        writeln!(out, "  {name:<24} {:>10}  {what}", size(len))?;
    }
    Ok(out)
}

fn depth_of(tree: &[pb::PstreeEntry], pid: u32) -> usize {
    let mut depth = 0;
    let mut cur = pid;
    while let Some(p) = tree.iter().find(|p| p.pid == cur) {
        if p.ppid == 0 || depth > tree.len() {
            break;
        }
        depth += 1;
        cur = p.ppid;
    }
    depth
}

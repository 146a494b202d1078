//! The pages of a process sent to a page server (criu's `--page-server`)
//! instead of written to `pages-N.img`: the process's pagemap is opened
//! on the server, then each run of the plan is announced (`ADD_F`, with
//! its flags) and, when PRESENT, followed by its bytes, which the
//! parasite `vmsplice`s into the page pipe and rcriu `splice`s into the
//! socket, as it would into the image: the runs in a row the parasite can
//! read in one command, rcriu writing each run's header between their
//! pages as they leave the pipe. The server writes the pagemap and pages
//! images; nothing of the pages is written locally.
//!
//! The runs are the plan's (the pagemap a local dump writes); a run may
//! hold pages of areas the task cannot read, read through
//! `/proc/PID/mem` instead, as [`pages::copy_unreadable`] does.
//!
//! Through TLS (criu's `--tls`) the bytes are encrypted on their way, so
//! nothing is spliced: the pages of the frozen process are read into
//! memory (`process_vm_readv`, `/proc/PID/mem` for what it cannot read)
//! and written through the TLS session, as criu reads its page pipe into
//! gnutls.
//!
//! A round of a pre-dump chain sends its `PE_PARENT` runs as CRIU's
//! dump does: `ADD_F` with the parent flag and no bytes; the server
//! writes them as entries `in_parent`. Whether it may is asked first
//! ([`open`]): the pagemap is opened before the pages are planned, and
//! the server says whether its directory has a parent pagemap for the
//! process (`--prev-images-dir` given to the server); when it has none,
//! the round is dumped whole, as CRIU's dump does.

use std::os::fd::AsFd;

use rcriu_compel::Parasite;
use rcriu_compel::abi::IoVec;
use rcriu_images::pages::PE_PRESENT;
use rcriu_page_server::{Client, Dst};
use rcriu_proc::Pid;

use crate::pages::Plan;
use crate::{Error, Result};

/// Opens the pagemap of `pid` on the server; returns whether the server
/// has its parent pagemap (the pages a tracked round keeps in the parent
/// may be sent as `PE_PARENT` runs only then).
pub fn open(pid: Pid, client: &mut Client) -> Result<bool> {
    let has = client
        .open(Dst::Pid(pid as u32))
        .map_err(|source| Error::PageServer { pid, source })?;
    log::debug!(
        "the page server at {} has {} parent pagemap for {pid}",
        client.peer(),
        if has { "a" } else { "no" }
    );
    Ok(has)
}

/// Sends the pages of `pid` planned in `plan` through `client`, its
/// pagemap opened by [`open`]; returns the bytes sent.
pub fn send(pid: Pid, parasite: &mut Parasite, client: &mut Client, plan: &Plan) -> Result<u64> {
    let ps = |source| Error::PageServer { pid, source };
    let send_err = |peer: &str, source| Error::PagesSend {
        pid,
        peer: peer.to_owned(),
        source,
    };
    let dst = Dst::Pid(pid as u32);
    let mut cursor = 0;
    let pieces: Vec<Vec<(IoVec, bool)>> = plan
        .runs
        .iter()
        .map(|r| {
            if r.flags & PE_PRESENT == 0 {
                Vec::new()
            } else {
                cut(&plan.iovs, &mut cursor, r.vaddr, r.end())
            }
        })
        .collect();
    // Plain TCP: the pages go straight from the parasite's pipe into the
    // socket, the runs' headers written between them from a copy of it.
    // Through TLS there is no socket to splice into.
    let sock = client
        .sock()
        .map(|s| s.try_clone_to_owned())
        .transpose()
        .map_err(|e| Error::sys("duplicating the page server's socket", pid)(e))?;
    let mut sent = 0;
    let mut i = 0;
    while i < plan.runs.len() {
        if let Some(sock) = &sock {
            // As many runs in a row as the parasite can read, in one go.
            let mut j = i;
            let (mut ranges, mut marks, mut bytes) = (Vec::new(), Vec::new(), 0u64);
            while j < plan.runs.len() && pieces[j].iter().all(|(_, readable)| *readable) {
                marks.push(bytes);
                for (v, _) in &pieces[j] {
                    ranges.push(*v);
                    bytes += v.len;
                }
                j += 1;
            }
            if j > i {
                let runs = &plan.runs[i..j];
                let peer = client.peer().to_owned();
                let mut header = |k: usize, buf: &mut Vec<u8>| {
                    let r = &runs[k];
                    buf.extend_from_slice(&rcriu_page_server::client::add_header(
                        dst, r.vaddr, r.nr_pages, r.flags,
                    ));
                    Ok(())
                };
                sent += parasite
                    .dump_pages_marked(&ranges, sock.as_fd(), &marks, &mut header)
                    .map_err(|source| send_err(&peer, source))?;
                i = j;
                continue;
            }
        }
        // One run: through TLS, or with pages the process cannot read
        // (written before an mprotect), read through /proc/PID/mem.
        let r = &plan.runs[i];
        client.add(dst, r.vaddr, r.nr_pages, r.flags).map_err(ps)?;
        for (v, readable) in &pieces[i] {
            sent += match (readable, &sock) {
                (true, Some(sock)) => parasite
                    .dump_pages(std::slice::from_ref(v), sock.as_fd())
                    .map_err(|source| send_err(client.peer(), source))?,
                (true, None) => copy_read(pid, v, client)?,
                (false, _) => copy_unreadable(pid, v, client)?,
            };
        }
        i += 1;
    }
    Ok(sent)
}

/// The parts of `iovs` (sorted, not overlapping) within `[lo, hi)`,
/// starting the search at `*cursor`, which is left at the first range
/// reaching past `hi`.
fn cut(iovs: &[(IoVec, bool)], cursor: &mut usize, lo: u64, hi: u64) -> Vec<(IoVec, bool)> {
    let mut out = Vec::new();
    while let Some(&(v, r)) = iovs.get(*cursor) {
        let end = v.base + v.len;
        if end <= lo {
            *cursor += 1;
            continue;
        }
        if v.base >= hi {
            break;
        }
        let (a, b) = (v.base.max(lo), end.min(hi));
        out.push((
            IoVec {
                base: a,
                len: b - a,
            },
            r,
        ));
        if end > hi {
            break;
        }
        *cursor += 1;
    }
    out
}

/// Sends the pages of `v`, in an area the task cannot read, read
/// through /proc/PID/mem.
fn copy_unreadable(pid: Pid, v: &IoVec, client: &mut Client) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/mem");
    let mem = std::fs::File::open(&path).map_err(Error::file(pid, &path))?;
    let mut buf = vec![0u8; (v.len as usize).min(1 << 20)];
    let mut done = 0;
    while done < v.len {
        let n = ((v.len - done) as usize).min(buf.len());
        mem.read_exact_at(&mut buf[..n], v.base + done)
            .map_err(Error::file(pid, &path))?;
        client
            .send_pages(&buf[..n])
            .map_err(|source| Error::PageServer { pid, source })?;
        done += n as u64;
    }
    Ok(done)
}

/// Sends the pages of `v` read from the frozen process
/// (`process_vm_readv`; /proc/PID/mem where it stops short), for a
/// connection that cannot take them spliced (TLS).
fn copy_read(pid: Pid, v: &IoVec, client: &mut Client) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/mem");
    let mut mem: Option<std::fs::File> = None;
    let mut buf = vec![0u8; (v.len as usize).min(COPY_CHUNK)];
    let mut done = 0;
    while done < v.len {
        let n = ((v.len - done) as usize).min(buf.len());
        let at = v.base + done;
        let got = rcriu_compel::sys::process_vm_read(pid, at, &mut buf[..n]).unwrap_or(0);
        if got < n {
            if mem.is_none() {
                mem = Some(std::fs::File::open(&path).map_err(Error::file(pid, &path))?);
            }
            if let Some(m) = &mem {
                m.read_exact_at(&mut buf[got..n], at + got as u64)
                    .map_err(Error::file(pid, &path))?;
            }
        }
        client
            .send_pages(&buf[..n])
            .map_err(|source| Error::PageServer { pid, source })?;
        done += n as u64;
    }
    Ok(done)
}

/// The bytes read and sent at a time through TLS.
const COPY_CHUNK: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(base: u64, len: u64, r: bool) -> (IoVec, bool) {
        (IoVec { base, len }, r)
    }

    #[test]
    fn runs_cut_the_ranges_at_their_ends() {
        // Two runs (flags differ) over one range, then a run over two
        // ranges (readability differs).
        let iovs = [v(0x1000, 0x3000, true), v(0x4000, 0x1000, false)];
        let mut c = 0;
        let got = |c: &mut usize, lo, hi| {
            cut(&iovs, c, lo, hi)
                .iter()
                .map(|(x, r)| (x.base, x.len, *r))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(&mut c, 0x1000, 0x2000), vec![(0x1000, 0x1000, true)]);
        assert_eq!(
            got(&mut c, 0x2000, 0x5000),
            vec![(0x2000, 0x2000, true), (0x4000, 0x1000, false)]
        );
        assert_eq!(c, 2);
        assert!(got(&mut c, 0x9000, 0xa000).is_empty());
    }
}

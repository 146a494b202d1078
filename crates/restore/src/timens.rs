//! The time namespace: offsets that make the monotonic and boot clocks go
//! on from their values at dump time (as CRIU computes them).

use rcriu_images::pb;

use crate::{Error, Result};

const NSEC: i64 = 1_000_000_000;

/// The lines to write to `/proc/self/timens_offsets` for a namespace whose
/// clocks read `entry` at dump time.
pub fn offsets(entry: &pb::TimensEntry) -> Result<[String; 2]> {
    // Our own namespace's offsets: the host's raw clock is ours minus them.
    let own = rcriu_proc::Task::open_self()
        .and_then(|mut t| t.timens_offsets())
        .map_err(|e| Error::Host {
            what: "reading rcriu's time namespace offsets",
            source: std::io::Error::other(e),
        })?;
    let mut lines = [String::new(), String::new()];
    for (i, (clock, dumped)) in [
        (libc::CLOCK_MONOTONIC, &entry.monotonic),
        (libc::CLOCK_BOOTTIME, &entry.boottime),
    ]
    .into_iter()
    .enumerate()
    {
        let now = clock_now(clock)?;
        let (sec, nsec) = if clock == libc::CLOCK_MONOTONIC {
            own.monotonic
        } else {
            own.boottime
        };
        let own_off = sec * NSEC + nsec;
        let host_now = now - own_off;
        let want = dumped.tv_sec as i64 * NSEC + dumped.tv_nsec as i64;
        let off = want - host_now;
        lines[i] = format!(
            "{clock} {} {}\n",
            off.div_euclid(NSEC),
            off.rem_euclid(NSEC)
        );
    }
    Ok(lines)
}

fn clock_now(clock: libc::clockid_t) -> Result<i64> {
    let ts = crate::sys::clock_gettime(clock).map_err(Error::host("reading a clock"))?;
    Ok(ts.0 * NSEC + ts.1)
}

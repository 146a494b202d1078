//! A thread's credentials, in CRIU's order: groups, then the ids (with
//! SECURE_NO_SETUID_FIXUP so that the capabilities survive the change),
//! securebits, the bounding set, the three capability sets, the ambient
//! set, and no_new_privs last.

use rcriu_blob_rt::nr::*;
use rcriu_blob_rt::syscall::{addr, addr_mut, call, value};
use rcriu_parasite_abi::restorer::creds_item::*;
use rcriu_parasite_abi::restorer::{CREDS_GROUPS, CREDS_NO_NEW_PRIVS, Creds};

use crate::{Fail, Res, ok};

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    eff: u32,
    prm: u32,
    inh: u32,
}

pub fn restore(c: &Creds) -> Res {
    if c.flags & CREDS_GROUPS != 0 {
        // SAFETY: rcriu wrote `nr_groups` u32 at `groups`, read by the
        // kernel.
        let r = unsafe { call(NR_SETGROUPS, c.nr_groups, c.groups, 0, 0) };
        ok(r, GROUPS)?;
    }
    set_ids(c)?;
    if value(NR_PRCTL, PR_GET_SECUREBITS, 0, 0) != c.secbits as i64 {
        ok(
            value(NR_PRCTL, PR_SET_SECUREBITS, c.secbits as u64, 0),
            SECBITS,
        )?;
    }
    let in_set = |set: &[u32; 2], cap: u32| set[(cap / 32) as usize] & (1 << (cap % 32)) != 0;
    let last = c.last_cap.min(63);
    for cap in 0..=last {
        if in_set(&c.cap_bnd, cap) {
            continue;
        }
        let r = value(NR_PRCTL, PR_CAPBSET_DROP, cap as u64, 0);
        // As CRIU: a drop that fails is fine when no_new_privs is to be set
        // and the capability is not permitted (no exec can gain it then).
        if r < 0 && (c.flags & CREDS_NO_NEW_PRIVS == 0 || in_set(&c.cap_prm, cap)) {
            return Err(Fail(BOUND + cap, r));
        }
    }
    let header: [u32; 2] = [LINUX_CAPABILITY_VERSION_3, 0];
    let mut data = [CapData::default(); 2];
    for (i, d) in data.iter_mut().enumerate() {
        *d = CapData {
            eff: c.cap_eff[i],
            prm: c.cap_prm[i],
            inh: c.cap_inh[i],
        };
    }
    // SAFETY: the kernel reads the header and two cap data structs.
    let r = unsafe { call(NR_CAPSET, addr(&header), addr(&data), 0, 0) };
    ok(r, CAPSET)?;
    for cap in 0..=last {
        if in_set(&c.cap_amb, cap) {
            let r = value(NR_PRCTL, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap as u64);
            ok(r, AMBIENT + cap)?;
        }
    }
    if c.flags & CREDS_NO_NEW_PRIVS != 0 {
        ok(value(NR_PRCTL, PR_SET_NO_NEW_PRIVS, 1, 0), NO_NEW_PRIVS)?;
    }
    Ok(())
}

/// The uids and gids, when they differ from the current ones (setting them
/// takes CAP_SETUID / CAP_SETGID).
fn set_ids(c: &Creds) -> Res {
    let fsuid = value(NR_SETFSUID, u32::MAX as u64, 0, 0) as u32;
    let fsgid = value(NR_SETFSGID, u32::MAX as u64, 0, 0) as u32;
    let mut u = [0u32; 3];
    let mut g = [0u32; 3];
    // SAFETY: the kernel writes one u32 to each of the three addresses.
    let ru = unsafe {
        call(
            NR_GETRESUID,
            addr_mut(&mut u[0]),
            addr_mut(&mut u[1]),
            addr_mut(&mut u[2]),
            0,
        )
    };
    // SAFETY: as above.
    let rg = unsafe {
        call(
            NR_GETRESGID,
            addr_mut(&mut g[0]),
            addr_mut(&mut g[1]),
            addr_mut(&mut g[2]),
            0,
        )
    };
    if ru == 0
        && rg == 0
        && u == [c.uids[0], c.uids[1], c.uids[2]]
        && g == [c.gids[0], c.gids[1], c.gids[2]]
        && fsuid == c.uids[3]
        && fsgid == c.gids[3]
    {
        return Ok(());
    }
    // Keep the capabilities across the change of uids; securebits are set
    // to the dumped ones right after.
    if u[1] == 0 {
        ok(
            value(NR_PRCTL, PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0),
            SECBITS_FIXUP,
        )?;
    }
    let [r, e, s, fs] = c.uids.map(u64::from);
    ok(value(NR_SETRESUID, r, e, s), UIDS)?;
    value(NR_SETFSUID, fs, 0, 0);
    if value(NR_SETFSUID, u32::MAX as u64, 0, 0) as u32 != c.uids[3] {
        return Err(Fail(FSUID, -EPERM));
    }
    let [r, e, s, fs] = c.gids.map(u64::from);
    ok(value(NR_SETRESGID, r, e, s), GIDS)?;
    value(NR_SETFSGID, fs, 0, 0);
    if value(NR_SETFSGID, u32::MAX as u64, 0, 0) as u32 != c.gids[3] {
        return Err(Fail(FSGID, -EPERM));
    }
    Ok(())
}

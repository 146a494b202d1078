//! The names of image files.

use crate::kind::Kind;

macro_rules! files {
    (
        fixed { $($fv:ident $fname:literal $fkind:expr;)* }
        dec { $($dv:ident $dpre:literal $dsuf:literal $dkind:expr;)* }
        hex { $($hv:ident $hpre:literal $hsuf:literal $hkind:expr;)* }
    ) => {
        /// An image file of a dump, named as CRIU names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ImageFile {
            $(#[doc = concat!("`", $fname, "`")] $fv,)*
            $(#[doc = concat!("`", $dpre, "<id>", $dsuf, "`")] $dv(u64),)*
            $(#[doc = concat!("`", $hpre, "<id in hex>", $hsuf, "`")] $hv(u64),)*
        }

        impl ImageFile {
            /// The file name.
            pub fn name(&self) -> String {
                match *self {
                    $(ImageFile::$fv => $fname.to_owned(),)*
                    $(ImageFile::$dv(id) => format!(concat!($dpre, "{}", $dsuf), id),)*
                    $(ImageFile::$hv(id) => format!(concat!($hpre, "{:x}", $hsuf), id),)*
                }
            }

            /// The kind of image it holds; `None` for raw files (pages,
            /// network dumps, tarballs).
            pub fn kind(&self) -> Option<Kind> {
                match *self {
                    $(ImageFile::$fv => $fkind,)*
                    $(ImageFile::$dv(_) => $dkind,)*
                    $(ImageFile::$hv(_) => $hkind,)*
                }
            }

            /// The file a name stands for, if CRIU writes files so named.
            pub fn parse(name: &str) -> Option<ImageFile> {
                $(if name == $fname { return Some(ImageFile::$fv); })*
                let mut best: Option<(usize, ImageFile)> = None;
                $(
                    if let Some(id) = strip(name, $dpre, $dsuf, 10) {
                        if best.is_none_or(|(l, _)| $dpre.len() > l) {
                            best = Some(($dpre.len(), ImageFile::$dv(id)));
                        }
                    }
                )*
                $(
                    if let Some(id) = strip(name, $hpre, $hsuf, 16) {
                        if best.is_none_or(|(l, _)| $hpre.len() > l) {
                            best = Some(($hpre.len(), ImageFile::$hv(id)));
                        }
                    }
                )*
                best.map(|(_, f)| f)
            }
        }
    };
}

fn strip(name: &str, prefix: &str, suffix: &str, radix: u32) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

files! {
    fixed {
        Inventory     "inventory.img"     Some(Kind::Inventory);
        Pstree        "pstree.img"        Some(Kind::Pstree);
        Files         "files.img"         Some(Kind::Files);
        RegFiles      "reg-files.img"     Some(Kind::RegFiles);
        ExtFiles      "ext-files.img"     Some(Kind::ExtFiles);
        NsFiles       "ns-files.img"      Some(Kind::NsFiles);
        Eventfd       "eventfd.img"       Some(Kind::EventfdFile);
        Eventpoll     "eventpoll.img"     Some(Kind::EventpollFile);
        EventpollTfd  "eventpoll-tfd.img" Some(Kind::EventpollTfd);
        Signalfd      "signalfd.img"      Some(Kind::Signalfd);
        Inotify       "inotify.img"       Some(Kind::InotifyFile);
        InotifyWd     "inotify-wd.img"    Some(Kind::InotifyWd);
        Fanotify      "fanotify.img"      Some(Kind::FanotifyFile);
        FanotifyMark  "fanotify-mark.img" Some(Kind::FanotifyMark);
        Pipes         "pipes.img"         Some(Kind::Pipes);
        PipesData     "pipes-data.img"    Some(Kind::PipesData);
        Fifo          "fifo.img"          Some(Kind::Fifo);
        FifoData      "fifo-data.img"     Some(Kind::FifoData);
        Unixsk        "unixsk.img"        Some(Kind::Unixsk);
        Inetsk        "inetsk.img"        Some(Kind::Inetsk);
        Packetsk      "packetsk.img"      Some(Kind::Packetsk);
        Netlinksk     "netlinksk.img"     Some(Kind::NetlinkSk);
        SkQueues      "sk-queues.img"     Some(Kind::SkQueues);
        RemapFpath    "remap-fpath.img"   Some(Kind::RemapFpath);
        Memfd         "memfd.img"         Some(Kind::MemfdInode);
        BinfmtMisc    "binfmt-misc.img"   Some(Kind::BinfmtMisc);
        Tty           "tty.img"           Some(Kind::TtyFiles);
        TtyInfo       "tty-info.img"      Some(Kind::TtyInfo);
        TtyData       "tty-data.img"      Some(Kind::TtyData);
        FileLocks     "filelocks.img"     Some(Kind::FileLocks);
        Tunfile       "tunfile.img"       Some(Kind::Tunfile);
        Cgroup        "cgroup.img"        Some(Kind::Cgroup);
        Timerfd       "timerfd.img"       Some(Kind::Timerfd);
        Cpuinfo       "cpuinfo.img"       Some(Kind::Cpuinfo);
        Seccomp       "seccomp.img"       Some(Kind::Seccomp);
        BpfmapFile    "bpfmap-file.img"   Some(Kind::BpfmapFile);
        BpfmapData    "bpfmap-data.img"   Some(Kind::BpfmapData);
        Apparmor      "apparmor.img"      Some(Kind::Apparmor);
        Pidfd         "pidfd.img"         Some(Kind::Pidfd);
        StatsDump     "stats-dump"        Some(Kind::Stats);
        StatsRestore  "stats-restore"     Some(Kind::Stats);
        IrmapCache    "irmap-cache"       Some(Kind::IrmapCache);
    }
    dec {
        Fdinfo        "fdinfo-"        ".img"    Some(Kind::Fdinfo);
        Pagemap       "pagemap-"       ".img"    Some(Kind::Pagemap);
        ShmemPagemap  "pagemap-shmem-" ".img"    Some(Kind::Pagemap);
        Pages         "pages-"         ".img"    None;
        Core          "core-"          ".img"    Some(Kind::Core);
        Ids           "ids-"           ".img"    Some(Kind::Ids);
        Mm            "mm-"            ".img"    Some(Kind::Mm);
        Vmas          "vmas-"          ".img"    Some(Kind::Vmas);
        Sigacts       "sigacts-"       ".img"    Some(Kind::Sigact);
        Itimers       "itimers-"       ".img"    Some(Kind::Itimers);
        PosixTimers   "posix-timers-"  ".img"    Some(Kind::PosixTimers);
        Creds         "creds-"         ".img"    Some(Kind::Creds);
        Rlimit        "rlimit-"        ".img"    Some(Kind::Rlimit);
        SignalS       "signal-s-"      ".img"    Some(Kind::Signal);
        SignalP       "signal-p-"      ".img"    Some(Kind::Signal);
        Fs            "fs-"            ".img"    Some(Kind::Fs);
        Utsns         "utsns-"         ".img"    Some(Kind::Utsns);
        IpcVar        "ipcns-var-"     ".img"    Some(Kind::IpcVar);
        IpcShm        "ipcns-shm-"     ".img"    Some(Kind::IpcnsShm);
        IpcMsg        "ipcns-msg-"     ".img"    Some(Kind::IpcnsMsg);
        IpcSem        "ipcns-sem-"     ".img"    Some(Kind::IpcnsSem);
        Mountpoints   "mountpoints-"   ".img"    Some(Kind::Mnts);
        Netdev        "netdev-"        ".img"    Some(Kind::Netdev);
        Netns         "netns-"         ".img"    Some(Kind::Netns);
        Userns        "userns-"        ".img"    Some(Kind::Userns);
        Timens        "timens-"        ".img"    Some(Kind::Timens);
        Pidns         "pidns-"         ".img"    Some(Kind::Pidns);
        Autofs        "autofs-"        ".img"    Some(Kind::Autofs);
        BinfmtMiscOld "binfmt-misc-"   ".img"    Some(Kind::BinfmtMisc);
        Ifaddr        "ifaddr-"        ".img"    None;
        Route         "route-"         ".img"    None;
        Route6        "route6-"        ".img"    None;
        Rule          "rule-"          ".img"    None;
        Iptables      "iptables-"      ".img"    None;
        Ip6tables     "ip6tables-"     ".img"    None;
        Nftables      "nftables-"      ".img"    None;
        NetnsCt       "netns-ct-"      ".img"    None;
        NetnsExp      "netns-exp-"     ".img"    None;
        TmpfsImg      "tmpfs-"         ".tar.gz.img" None;
        TmpfsDev      "tmpfs-dev-"     ".tar.gz.img" None;
    }
    hex {
        GhostFile     "ghost-file-"    ".img"    Some(Kind::GhostFile);
        TcpStream     "tcp-stream-"    ".img"    Some(Kind::TcpStream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in [
            ImageFile::Inventory,
            ImageFile::Core(30000),
            ImageFile::Pagemap(7),
            ImageFile::ShmemPagemap(7),
            ImageFile::Pages(1),
            ImageFile::GhostFile(0x1f),
            ImageFile::TmpfsDev(3),
            ImageFile::StatsDump,
        ] {
            assert_eq!(ImageFile::parse(&f.name()), Some(f), "{}", f.name());
        }
        assert_eq!(ImageFile::GhostFile(31).name(), "ghost-file-1f.img");
        assert_eq!(ImageFile::parse("core-.img"), None);
        assert_eq!(ImageFile::parse("core-12x.img"), None);
        assert_eq!(ImageFile::parse("restore.log"), None);
    }
}

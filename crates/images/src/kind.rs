//! Image kinds: the magic numbers and what each kind of image holds.

/// `IMG_COMMON_MAGIC`: the first word of most images.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// `IMG_SERVICE_MAGIC`: the first word of `stats-*` and `irmap-cache`.
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// What precedes the kind magic in a file of this kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Nothing: `inventory.img` starts with its kind magic.
    Bare,
    /// [`IMG_COMMON_MAGIC`].
    Common,
    /// [`IMG_SERVICE_MAGIC`].
    Service,
}

impl Head {
    /// The word written before the kind magic, if any.
    pub fn word(self) -> Option<u32> {
        match self {
            Head::Bare => None,
            Head::Common => Some(IMG_COMMON_MAGIC),
            Head::Service => Some(IMG_SERVICE_MAGIC),
        }
    }
}

/// Raw bytes that follow an entry in the image, and how long they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// None.
    None,
    /// `pipe_data_entry.bytes` bytes (pipes-data, fifo-data).
    PipeData,
    /// `sk_packet_entry.length` bytes (sk-queues).
    SkQueue,
    /// `inq_len` bytes of receive queue then `outq_len` of send queue.
    TcpStream,
    /// `keys_bytes + values_bytes` (bpfmap-data).
    BpfmapData,
    /// `nsems` u16 values, padded to 8 bytes (ipcns-sem).
    IpcSem,
    /// `qnum` (`ipc_msg`, `msize` bytes padded to 8) pairs (ipcns-msg).
    IpcMsg,
    /// `size` bytes padded to 4, unless `in_pagemaps` (ipcns-shm).
    IpcShm,
    /// The rest of the file, or chunk entries each followed by their
    /// bytes (ghost-file).
    GhostFile,
}

macro_rules! kinds {
    ($($variant:ident $name:literal $magic:literal $head:ident $entry:literal $payload:ident;)*) => {
        /// A kind of image, named as crit names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Kind {
            $(
                #[doc = concat!("`", $name, "`: entries of `", $entry, "`.")]
                $variant,
            )*
        }

        impl Kind {
            /// Every kind.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// crit's name of the kind (the `"magic"` of its JSON).
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name,)* }
            }

            /// The kind magic.
            pub fn magic(self) -> u32 {
                match self { $(Kind::$variant => $magic,)* }
            }

            /// What precedes the kind magic.
            pub fn head(self) -> Head {
                match self { $(Kind::$variant => Head::$head,)* }
            }

            /// The protobuf message of the kind's entries (for pagemap,
            /// of all entries but the first, a `pagemap_head`).
            pub fn entry_message(self) -> &'static str {
                match self { $(Kind::$variant => $entry,)* }
            }

            /// The raw payload that follows each entry.
            pub fn payload(self) -> Payload {
                match self { $(Kind::$variant => Payload::$payload,)* }
            }
        }
    };
}

kinds! {
    Inventory     "INVENTORY"      0x58313116 Bare    "inventory_entry"       None;
    Pstree        "PSTREE"         0x50273030 Common  "pstree_entry"          None;
    Fdinfo        "FDINFO"         0x56213732 Common  "fdinfo_entry"          None;
    Pagemap       "PAGEMAP"        0x56084025 Common  "pagemap_entry"         None;
    Core          "CORE"           0x55053847 Common  "core_entry"            None;
    Ids           "IDS"            0x54432030 Common  "task_kobj_ids_entry"   None;
    Vmas          "VMAS"           0x54123737 Common  "vma_entry"             None;
    Pipes         "PIPES"          0x56513555 Common  "pipe_entry"            None;
    PipesData     "PIPES_DATA"     0x56453709 Common  "pipe_data_entry"       PipeData;
    Fifo          "FIFO"           0x58364939 Common  "fifo_entry"            None;
    FifoData      "FIFO_DATA"      0x59333054 Common  "pipe_data_entry"       PipeData;
    Sigact        "SIGACT"         0x55344201 Common  "sa_entry"              None;
    Unixsk        "UNIXSK"         0x54373943 Common  "unix_sk_entry"         None;
    Inetsk        "INETSK"         0x56443851 Common  "inet_sk_entry"         None;
    Packetsk      "PACKETSK"       0x60454618 Common  "packet_sock_entry"     None;
    Itimers       "ITIMERS"        0x57464056 Common  "itimer_entry"          None;
    PosixTimers   "POSIX_TIMERS"   0x52603957 Common  "posix_timer_entry"     None;
    SkQueues      "SK_QUEUES"      0x56264026 Common  "sk_packet_entry"       SkQueue;
    Utsns         "UTSNS"          0x54473203 Common  "utsns_entry"           None;
    Creds         "CREDS"          0x54023547 Common  "creds_entry"           None;
    IpcVar        "IPC_VAR"        0x53115007 Common  "ipc_var_entry"         None;
    IpcnsShm      "IPCNS_SHM"      0x46283044 Common  "ipc_shm_entry"         IpcShm;
    IpcnsMsg      "IPCNS_MSG"      0x55453737 Common  "ipc_msg_entry"         IpcMsg;
    IpcnsSem      "IPCNS_SEM"      0x59573019 Common  "ipc_sem_entry"         IpcSem;
    RegFiles      "REG_FILES"      0x50363636 Common  "reg_file_entry"        None;
    ExtFiles      "EXT_FILES"      0x59255641 Common  "ext_file_entry"        None;
    Fs            "FS"             0x51403912 Common  "fs_entry"              None;
    Mm            "MM"             0x57492820 Common  "mm_entry"              None;
    RemapFpath    "REMAP_FPATH"    0x59133954 Common  "remap_file_path_entry" None;
    GhostFile     "GHOST_FILE"     0x52583605 Common  "ghost_file_entry"      GhostFile;
    TcpStream     "TCP_STREAM"     0x51465506 Common  "tcp_stream_entry"      TcpStream;
    EventfdFile   "EVENTFD_FILE"   0x44523722 Common  "eventfd_file_entry"    None;
    EventpollFile "EVENTPOLL_FILE" 0x45023858 Common  "eventpoll_file_entry"  None;
    EventpollTfd  "EVENTPOLL_TFD"  0x44433746 Common  "eventpoll_tfd_entry"   None;
    Signalfd      "SIGNALFD"       0x57323820 Common  "signalfd_entry"        None;
    InotifyFile   "INOTIFY_FILE"   0x48424431 Common  "inotify_file_entry"    None;
    InotifyWd     "INOTIFY_WD"     0x54562009 Common  "inotify_wd_entry"      None;
    Mnts          "MNTS"           0x55563928 Common  "mnt_entry"             None;
    Netdev        "NETDEV"         0x57373951 Common  "net_device_entry"      None;
    Netns         "NETNS"          0x55933752 Common  "netns_entry"           None;
    TtyFiles      "TTY_FILES"      0x59433025 Common  "tty_file_entry"        None;
    TtyInfo       "TTY_INFO"       0x59453036 Common  "tty_info_entry"        None;
    TtyData       "TTY_DATA"       0x59413026 Common  "tty_data_entry"        None;
    FileLocks     "FILE_LOCKS"     0x54323616 Common  "file_lock_entry"       None;
    Rlimit        "RLIMIT"         0x57113925 Common  "rlimit_entry"          None;
    FanotifyFile  "FANOTIFY_FILE"  0x55096122 Common  "fanotify_file_entry"   None;
    FanotifyMark  "FANOTIFY_MARK"  0x56506035 Common  "fanotify_mark_entry"   None;
    Signal        "SIGNAL"         0x59255647 Common  "siginfo_entry"         None;
    NetlinkSk     "NETLINK_SK"     0x58005614 Common  "netlink_sk_entry"      None;
    NsFiles       "NS_FILES"       0x61394011 Common  "ns_file_entry"         None;
    Tunfile       "TUNFILE"        0x57143751 Common  "tunfile_entry"         None;
    Cgroup        "CGROUP"         0x59383330 Common  "cgroup_entry"          None;
    Timerfd       "TIMERFD"        0x50493712 Common  "timerfd_entry"         None;
    Cpuinfo       "CPUINFO"        0x61404013 Common  "cpuinfo_entry"         None;
    Userns        "USERNS"         0x55474906 Common  "userns_entry"          None;
    Seccomp       "SECCOMP"        0x64413049 Common  "seccomp_entry"         None;
    BinfmtMisc    "BINFMT_MISC"    0x67343323 Common  "binfmt_misc_entry"     None;
    Autofs        "AUTOFS"         0x49353943 Common  "autofs_entry"          None;
    Files         "FILES"          0x56303138 Common  "file_entry"            None;
    MemfdInode    "MEMFD_INODE"    0x48453499 Common  "memfd_inode_entry"     None;
    Timens        "TIMENS"         0x43114433 Common  "timens_entry"          None;
    Pidns         "PIDNS"          0x61157326 Common  "pidns_entry"           None;
    BpfmapFile    "BPFMAP_FILE"    0x57506142 Common  "bpfmap_file_entry"     None;
    BpfmapData    "BPFMAP_DATA"    0x64324033 Common  "bpfmap_data_entry"     BpfmapData;
    Apparmor      "APPARMOR"       0x59423047 Common  "apparmor_entry"        None;
    Pidfd         "PIDFD"          0x54435556 Common  "pidfd_entry"           None;
    Stats         "STATS"          0x57093306 Service "stats_entry"           None;
    IrmapCache    "IRMAP_CACHE"    0x57004059 Service "irmap_cache_entry"     None;
}

impl Kind {
    /// The kind with this kind magic.
    pub fn from_magic(magic: u32) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.magic() == magic)
    }

    /// The kind crit calls `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_are_unique_and_found() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(Kind::from_magic(k.magic()), Some(*k));
            assert_eq!(Kind::from_name(k.name()), Some(*k));
            assert!(Kind::ALL[i + 1..].iter().all(|o| o.magic() != k.magic()));
        }
        assert_eq!(Kind::from_magic(IMG_COMMON_MAGIC), None);
        assert_eq!(Kind::from_magic(0), None);
        assert_eq!(Kind::from_name("PAGES"), None);
    }
}

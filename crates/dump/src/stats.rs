//! `stats-dump`: how long the dump took and what it wrote, in CRIU's
//! fields (microseconds), for `crit show` and podman's `--print-stats`.

use std::time::Duration;

use rcriu_images::pb;

/// The statistics of a dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// The whole dump, from the start to the last image written (not in
    /// `stats-dump`, which has no such field).
    pub total_time: Duration,
    /// Seizing the task.
    pub freezing_time: Duration,
    /// From the task seized to the task released (or killed).
    pub frozen_time: Duration,
    /// Choosing and writing the pages.
    pub memdump_time: Duration,
    /// Moving the pages into the pages image (part of `memdump_time`: the
    /// parasite's pages are spliced into the image as they come).
    pub memwrite_time: Duration,
    /// CRIU's count of pages looked at.
    pub pages_scanned: u64,
    /// Pages written to `pages-N.img`.
    pub pages_written: u64,
    /// Pages kept in the parent's images (`PE_PARENT`), not written.
    pub pages_skipped_parent: u64,
    /// Pages left to the lazy-pages daemon (`--lazy-pages`), CRIU's
    /// `pages_lazy`.
    pub pages_lazy: u64,
    /// Page-dump commands sent to the parasite (CRIU's page pipe
    /// buffers).
    pub page_pipe_bufs: u64,
    /// Pages of shared memory (memfds, shared anonymous memory) looked at.
    pub shpages_scanned: u64,
    /// Pages of shared memory written, each to its inode's pages image.
    pub shpages_written: u64,
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl DumpStats {
    pub fn entry(&self) -> pb::StatsEntry {
        pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: us(self.freezing_time),
                frozen_time: us(self.frozen_time),
                memdump_time: us(self.memdump_time),
                memwrite_time: us(self.memwrite_time),
                pages_scanned: self.pages_scanned,
                pages_skipped_parent: self.pages_skipped_parent,
                pages_written: self.pages_written,
                irmap_resolve: Some(0),
                pages_lazy: self.pages_lazy,
                page_pipes: Some(1),
                page_pipe_bufs: Some(self.page_pipe_bufs),
                shpages_scanned: Some(self.shpages_scanned),
                shpages_skipped_parent: Some(0),
                shpages_written: Some(self.shpages_written),
            }),
            restore: None,
        }
    }
}

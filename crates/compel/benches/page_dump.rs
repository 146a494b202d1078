//! Parasite page dumping of 1 GiB of touched anonymous memory into a file
//! on tmpfs, against `dd if=/dev/zero of=/dev/shm/... bs=1M count=1024` in
//! the same run. Needs root.
//!
//! `cargo bench -p rcriu-compel --bench page_dump`

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rcriu_compel::abi::IoVec;
use rcriu_compel::{Parasite, Seized};
use rcriu_test_support::{Workload, require_root};

const MIB: u64 = 1024;

fn page_dump(c: &mut Criterion) {
    require_root();
    let w = Workload::start("bigmem", &[&MIB.to_string()]);
    let (addr, len) = (w.fact_u64("addr"), w.fact_u64("len"));
    let out = format!("/dev/shm/rcriu-bench-pages-{}", std::process::id());
    let dd_out = format!("/dev/shm/rcriu-bench-dd-{}", std::process::id());

    let mut g = c.benchmark_group("1GiB-to-tmpfs");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Bytes(len));

    g.bench_function("dd", |b| {
        b.iter(|| {
            let st = Command::new("dd")
                .args([
                    "if=/dev/zero",
                    &format!("of={dd_out}"),
                    "bs=1M",
                    "count=1024",
                ])
                .stderr(std::process::Stdio::null())
                .status()
                .expect("running dd");
            assert!(st.success());
        })
    });

    let seized = Seized::seize(w.pid).expect("seizing");
    let mut p = Parasite::infect(&seized).expect("infecting");
    g.bench_function("parasite-vmsplice", |b| {
        b.iter(|| {
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&out)
                .expect("opening the output");
            let n = p
                .dump_pages(&[IoVec { base: addr, len }], f.as_fd())
                .expect("dumping pages");
            assert_eq!(n, len);
        })
    });
    g.finish();
    p.cure().expect("curing");
    seized.release().expect("releasing");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&dd_out);
    w.verdict().expect("the memory is intact");
}

criterion_group!(benches, page_dump);
criterion_main!(benches);

//! Entries decoded and encoded per second (core, pagemap), and pages
//! streamed per second through rcriu-images against a plain read/write
//! copy of the same file, in the same run.

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use rcriu_images::pages::{PE_PRESENT, PagemapReader, PagemapWriter};
use rcriu_images::pb::{CoreEntry, PagemapEntry};
use rcriu_images::{ImageDir, ImageFile, ImageReader, ImageWriter, Kind};

fn dump() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/criu-4.2/counter")
}

fn entries(c: &mut Criterion) {
    let core_img = std::fs::read(dump().join("core-30000.img")).unwrap();
    let core: CoreEntry = ImageReader::new(core_img.as_slice(), "core")
        .unwrap()
        .expect_next()
        .unwrap();
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut r = ImageReader::new(black_box(core_img.as_slice()), "core").unwrap();
            black_box(r.expect_next::<CoreEntry>().unwrap())
        })
    });
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            let mut w = ImageWriter::new(&mut out, Kind::Core, "core").unwrap();
            w.write(black_box(&core)).unwrap();
            w.finish().unwrap();
        })
    });
    g.finish();

    let pm_img = std::fs::read(dump().join("pagemap-30000.img")).unwrap();
    let runs: Vec<PagemapEntry> = {
        let mut r = ImageReader::new(pm_img.as_slice(), "pagemap").unwrap();
        r.expect_next::<rcriu_images::pb::PagemapHead>().unwrap();
        r.read_all().unwrap()
    };
    let mut g = c.benchmark_group("pagemap");
    g.throughput(Throughput::Elements(runs.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let r = ImageReader::new(black_box(pm_img.as_slice()), "pagemap").unwrap();
            let mut pm = PagemapReader::new(r).unwrap();
            while let Some(run) = pm.next_run().unwrap() {
                black_box(run);
            }
        })
    });
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            let mut w = PagemapWriter::new(&mut out, 1, "pagemap").unwrap();
            for e in &runs {
                w.add(e.vaddr, e.nr_pages.unwrap_or(0), e.flags.unwrap_or(0))
                    .unwrap();
            }
            w.finish().unwrap();
        })
    });
    g.finish();
    let _ = PagemapEntry::default().encoded_len();
}

/// The pages of the fixture, made 16 times larger (64 MiB) so the copy is
/// dominated by moving pages: the pagemap repeated at higher addresses.
fn big_dump(dir: &Path) -> ImageDir {
    let src = ImageDir::open(dump()).unwrap();
    let out = ImageDir::create(dir.join("big")).unwrap();
    let pages = std::fs::read(src.file_path(ImageFile::Pages(1))).unwrap();
    let mut runs = Vec::new();
    let mut pm = src.pagemap(30000).unwrap();
    while let Some(r) = pm.next_run().unwrap() {
        runs.push(r);
    }
    let mut w = out.create_pagemap(1, 1).unwrap();
    let mut p = out.create_pages(1).unwrap();
    for copy in 0..16u64 {
        for r in &runs {
            w.add(r.vaddr + (copy << 40), r.nr_pages, r.flags).unwrap();
        }
        p.write_pages(&pages).unwrap();
    }
    w.finish().unwrap();
    out
}

fn pages(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let big = big_dump(tmp.path());
    let src = big.file_path(ImageFile::Pages(1));
    let len = std::fs::metadata(&src).unwrap().len();
    let dst_dir = ImageDir::create(tmp.path().join("out")).unwrap();
    let mut g = c.benchmark_group("pages");
    g.throughput(Throughput::Bytes(len));
    g.sample_size(20);
    let mut buf = vec![0u8; 1 << 20];
    g.bench_function("plain copy", |b| {
        b.iter(|| {
            let mut i = File::open(&src).unwrap();
            let mut o = File::create(dst_dir.path().join("plain.img")).unwrap();
            loop {
                let n = i.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                o.write_all(&buf[..n]).unwrap();
            }
        })
    });
    g.bench_function("rcriu-images stream", |b| {
        b.iter(|| {
            let mut pm = big.pagemap(1).unwrap();
            let mut input = big.pages(pm.pages_id()).unwrap();
            let mut output = dst_dir.create_pages(1).unwrap();
            let mut pending = 0usize;
            while let Some(run) = pm.next_run().unwrap() {
                if run.flags & PE_PRESENT == 0 {
                    continue;
                }
                let mut left = run.len() as usize;
                while left > 0 {
                    let n = left.min(buf.len() - pending);
                    input.read_pages(&mut buf[pending..pending + n]).unwrap();
                    pending += n;
                    left -= n;
                    if pending == buf.len() {
                        output.write_pages(&buf).unwrap();
                        pending = 0;
                    }
                }
            }
            output.write_pages(&buf[..pending]).unwrap();
            assert_eq!(output.offset(), len);
        })
    });
    g.finish();
}

criterion_group!(benches, entries, pages);
criterion_main!(benches);

//! `rcriu show ARCHIVE`: a container checkpoint as podman's `checkpoint
//! --export` and CRI-O's (the kubelet's checkpoint API) write it — a tar,
//! plain, gzip'd or zstd'd, holding `config.dump`, `spec.dump`,
//! `network.status`, `stats-dump`, `checkpoint/` (CRIU's images) and
//! `rootfs-diff.tar` — described as checkpointctl shows it: the
//! container, its image, engine and runtime, its address and sizes, then
//! its processes, memory and open files, its mounts.
//!
//! The archive is unpacked by GNU tar (which finds the compression) into
//! a directory of rcriu's own, mode 0700, removed afterwards.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Whether `path` starts as a tar, a gzip or a zstd stream does.
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let head = &head[..n];
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}

/// A directory removed on drop.
struct Unpacked(PathBuf);

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unpack(archive: &Path) -> anyhow::Result<Unpacked> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "rcriu-show-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("making {}", dir.display()))?;
    let dir = Unpacked(dir);
    let out = Command::new("tar")
        .arg("--extract")
        .arg("--no-same-owner")
        .arg("--file")
        .arg(archive)
        .arg("--directory")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running tar on {}", archive.display()))?;
    if !out.status.success() {
        bail!(
            "unpacking {}: tar failed ({}): {}",
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(dir)
}

fn json(dir: &Path, name: &str, archive: &Path) -> anyhow::Result<Value> {
    let path = dir.join(name);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{}: no {name} (not a container checkpoint)",
            archive.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("{}: reading {name}", archive.display()))
}

/// The bytes of every file under `path`.
fn du(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn field<'a>(v: &'a Value, keys: &[&str]) -> &'a str {
    keys.iter().find_map(|k| v[*k].as_str()).unwrap_or("-")
}

/// The description of the checkpoint archive `archive`.
pub fn describe(archive: &Path) -> anyhow::Result<String> {
    let dir = unpack(archive)?;
    let d = &dir.0;
    let config = json(d, "config.dump", archive)?;
    let spec = json(d, "spec.dump", archive)?;
    let annotations = &spec["annotations"];
    let engine = match annotations["io.container.manager"].as_str() {
        Some("libpod") => "Podman",
        _ if annotations["io.kubernetes.cri-o.Name"].is_string() => "CRI-O",
        Some(other) => other,
        None => "-",
    };
    let ip = std::fs::read(d.join("network.status"))
        .ok()
        .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        .and_then(|n| {
            n.as_object()?.values().find_map(|net| {
                net["interfaces"].as_object()?.values().find_map(|i| {
                    let ip = i["subnets"][0]["ipnet"].as_str()?;
                    Some(ip.split('/').next().unwrap_or(ip).to_owned())
                })
            })
        })
        .unwrap_or_else(|| "-".into());
    let id = field(&config, &["id"]);
    let row = [
        ("CONTAINER", field(&config, &["name"]).to_owned()),
        (
            "IMAGE",
            field(&config, &["rootfsImageName", "RawImageName"]).to_owned(),
        ),
        ("ID", id.chars().take(12).collect()),
        ("RUNTIME", field(&config, &["runtime"]).to_owned()),
        ("CREATED", field(&config, &["createdTime"]).to_owned()),
        ("ENGINE", engine.to_owned()),
        ("IP", ip),
        ("CHKPT SIZE", crate::show::size(du(&d.join("checkpoint")))),
        (
            "ROOT FS DIFF SIZE",
            crate::show::size(du(&d.join("rootfs-diff.tar"))),
        ),
    ];
    let mut out = String::new();
    writeln!(out, "container checkpoint {}\n", archive.display())?;
    let widths: Vec<usize> = row.iter().map(|(h, v)| h.len().max(v.len())).collect();
    let line = |cells: Vec<&str>| {
        let l: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        l.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(row.iter().map(|(h, _)| *h).collect()))?;
    writeln!(
        out,
        "{}",
        line(row.iter().map(|(_, v)| v.as_str()).collect())
    )?;
    if let Some(args) = spec["process"]["args"].as_array() {
        let args: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        writeln!(out, "\ncommand: {}", args.join(" "))?;
    }
    if let Some(mounts) = spec["mounts"].as_array() {
        writeln!(
            out,
            "\nmounts\n  {:<24} {:<8} SOURCE",
            "DESTINATION", "TYPE"
        )?;
        for m in mounts {
            writeln!(
                out,
                "  {:<24} {:<8} {}",
                field(m, &["destination"]),
                field(m, &["type"]),
                field(m, &["source"])
            )?;
        }
    }
    let images = d.join("checkpoint");
    if !images.is_dir() {
        bail!("{}: no checkpoint/ (the images)", archive.display());
    }
    writeln!(out)?;
    let summary = crate::show::summary(&images)
        .with_context(|| format!("{}: reading checkpoint/", archive.display()))?;
    // The summary names the directory it read, which is gone: the
    // archive's checkpoint/ instead.
    let summary = summary.replacen(
        &format!("dump in {}", images.display()),
        "images in checkpoint/",
        1,
    );
    out.push_str(&summary);
    Ok(out)
}

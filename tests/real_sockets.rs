//! Real programs with sockets, dumped and restored through rcriu's
//! command line as a user would: each one serves before the dump, is gone
//! after it (nothing answers: the negative control), and serves again
//! once restored, and no more once the restored process is killed.
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::{HANG_GUARD, TempDir, in_new_session, signal, wait_exit};

/// A port free on 127.0.0.1 now (the kernel's choice).
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a port");
    l.local_addr().expect("its address").port()
}

/// `GET path` over HTTP/1.0: the status line and the body, or why not.
fn get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// Waits until the server on `port` answers (it listens once it has
/// bound): connection refused means not yet.
fn wait_serving(port: u16, pid: i32) {
    let start = Instant::now();
    loop {
        match get(port, "/") {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => panic!("asking the server on port {port}: {e}"),
        }
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the server ended before it served"
        );
        assert!(start.elapsed() < HANG_GUARD, "the server never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `python3 -m http.server` on 127.0.0.1 serving `www`, in its
/// own session, with `extra` options; returns its pid and port once it
/// answers.
fn start_server(home: &Path, www: &Path, extra: &[&str]) -> (i32, u16) {
    let port = free_port();
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(www)
        .args(extra)
        .arg(port.to_string());
    let pid = spawn_server(cmd, home);
    wait_serving(port, pid);
    (pid, port)
}

/// Starts the server `cmd` in its own session, in `home`, its output in
/// `server.log` there; its pid (reaped through wait_exit: the Child
/// itself is not waited for).
fn spawn_server(mut cmd: Command, home: &Path) -> i32 {
    let log = std::fs::File::create(home.join("server.log")).unwrap();
    cmd.current_dir(home)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    in_new_session(&mut cmd);
    let child = cmd.spawn().expect("starting the server");
    let pid = child.id() as i32;
    std::mem::forget(child);
    pid
}

/// `rcriu dump` of `pid` into `images` (made here), with `extra`, which
/// kills it; `between` runs once it ended, with its wait status; then
/// `rcriu restore -d` with `extra`.
fn dump_then_restore(pid: i32, images: &Path, extra: &[&str], between: impl FnOnce(i32)) {
    std::fs::create_dir(images).unwrap();
    let pid_arg = pid.to_string();
    let mut dump = vec!["dump", "-t", &pid_arg];
    dump.extend_from_slice(extra);
    let out = rcriu(&dump, images);
    assert!(
        out.status.success(),
        "dump: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_of(images)
    );
    between(wait_exit(pid).expect("the dumped server ends"));
    let mut restore = vec!["restore", "-d"];
    restore.extend_from_slice(extra);
    let out = rcriu(&restore, images);
    assert!(
        out.status.success(),
        "restore: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_of(images)
    );
}

/// One HTTP/1.1 request on a connection kept open: the status line and
/// the body (its Content-Length).
fn get_on(s: &mut TcpStream, path: &str) -> std::io::Result<(String, String)> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::Error::other(format!(
                "the connection ended in the headers: {:?}",
                String::from_utf8_lossy(&head)
            )));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .ok_or_else(|| std::io::Error::other(format!("no Content-Length: {head:?}")))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn rcriu(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(args)
        .arg("-D")
        .arg(dir)
        .args(["-v4", "-o", "rcriu.log"])
        .stdin(Stdio::null())
        .output()
        .expect("running rcriu")
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("rcriu.log")).unwrap_or_default()
}

/// Asserts that the server's end of `client` is gone (the negative
/// control of a connection that carried on).
fn connection_ends(client: &mut TcpStream) {
    let mut b = [0u8; 1];
    client.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let r = client.read(&mut b);
    let ended = match &r {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(ended, "the connection ends with the restored server: {r:?}");
}

/// Kills the restored `pid` (ours to reap: this process is a subreaper).
fn kill_and_reap(pid: i32) {
    signal(pid, libc::SIGKILL);
    wait_exit(pid).expect("the restored server ends");
}

#[test]
fn python_http_server_serves_after_restore() {
    let _g = common::setup();
    let t = TempDir::new("real-python-http");
    let www = t.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.txt"), "served before the dump\n").unwrap();
    let (pid, port) = start_server(t.path(), &www, &[]);
    let (status, body) = get(port, "/index.txt").expect("a page before the dump");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "served before the dump\n");

    dump_then_restore(pid, &t.path().join("images"), &[], |status| {
        // The dump killed it: once its pid is gone, nothing serves.
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{status:#x}"
        );
        let e = get(port, "/index.txt").expect_err("nothing serves between dump and restore");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    });
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the restored pid");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("http.server"),
        "{cmdline:?}"
    );
    let (status, body) = get(port, "/index.txt").expect("a page after the restore");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "served before the dump\n");
    // It serves what it never saw before the dump, and more than once.
    std::fs::write(www.join("new.txt"), "written after the restore\n").unwrap();
    for _ in 0..3 {
        let (status, body) = get(port, "/new.txt").expect("a new page");
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, "written after the restore\n");
    }
    let (status, _) = get(port, "/absent.txt").unwrap();
    assert!(status.contains(" 404 "), "{status}");
    // It was the restored process that served.
    kill_and_reap(pid);
    let e = get(port, "/index.txt").expect_err("nothing serves once it is killed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
}

#[test]
fn a_client_s_connection_to_python_carries_on_across_the_dump() {
    let _g = common::setup();
    let t = TempDir::new("real-python-keepalive");
    let www = t.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.txt"), "one connection\n").unwrap();
    let (pid, port) = start_server(t.path(), &www, &["--protocol", "HTTP/1.1"]);
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (status, body) = get_on(&mut client, "/index.txt").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "one connection\n");

    // Negative control: without --tcp-established the connection is
    // refused by name, and the server serves on untouched.
    let refused = t.path().join("refused");
    std::fs::create_dir(&refused).unwrap();
    let out = rcriu(&["dump", "-t", &pid.to_string()], &refused);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tcp-established"), "{err}");
    let (status, _) = get_on(&mut client, "/index.txt").expect("served after the refusal");
    assert!(status.contains(" 200 "), "{status}");

    let images = t.path().join("images");
    dump_then_restore(pid, &images, &["--tcp-established"], |_| {
        let e = get(port, "/index.txt").expect_err("no new connection between dump and restore");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    });
    // The same connection, opened before the dump, is served again.
    std::fs::write(www.join("after.txt"), "after the restore\n").unwrap();
    for (path, want) in [
        ("/index.txt", "one connection\n"),
        ("/after.txt", "after the restore\n"),
    ] {
        let (status, body) = get_on(&mut client, path).expect("served on the old connection");
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, want);
    }
    kill_and_reap(pid);
    connection_ends(&mut client);
}

/// One line of a RESP reply (without its CRLF).
fn resp_line(r: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if r.read(&mut b)? == 0 {
            return Err(std::io::Error::other("the connection ended in a reply"));
        }
        line.push(b[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// A redis command (inline) on `s` and its reply, flattened: a bulk
/// string's bytes, an array's items joined by spaces, a status or an
/// error as its line.
fn redis(s: &mut TcpStream, cmd: &str) -> std::io::Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "{cmd}\r\n")?;
    fn reply(s: &mut TcpStream) -> std::io::Result<String> {
        let line = resp_line(s)?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let n = |t: &str| {
            t.parse::<i64>()
                .map_err(|_| std::io::Error::other(format!("a bad reply: {line:?}")))
        };
        match kind {
            "$" if n(rest)? < 0 => Ok("(nil)".into()),
            "$" => {
                let mut body = vec![0u8; n(rest)? as usize + 2];
                s.read_exact(&mut body)?;
                body.truncate(body.len() - 2);
                Ok(String::from_utf8_lossy(&body).into_owned())
            }
            "*" => {
                let items = (0..n(rest)?.max(0))
                    .map(|_| reply(s))
                    .collect::<std::io::Result<Vec<_>>>()?;
                Ok(items.join(" "))
            }
            _ => Ok(line),
        }
    }
    reply(s)
}

/// Runs the server `cmd` (listening on 127.0.0.1:`port`) with a client
/// connected: `before` on that connection, a dump with
/// --tcp-established (the server is gone, nothing listens), a restore,
/// then `after` on the old connection and on a new one; the connection
/// ends with the restored server once it is killed.
fn connected_across_dump(
    cmd: Command,
    port: u16,
    home: &Path,
    before: impl FnOnce(&mut TcpStream),
    after: impl FnOnce(&mut TcpStream, &mut TcpStream),
) {
    let pid = spawn_server(cmd, home);
    let start = Instant::now();
    let mut client = loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => panic!("connecting to the server: {e}"),
        }
        assert!(start.elapsed() < HANG_GUARD, "the server never listened");
        std::thread::sleep(Duration::from_millis(10));
    };
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    before(&mut client);
    dump_then_restore(pid, &home.join("images"), &["--tcp-established"], |_| {
        let e = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .expect_err("nothing listens between the dump and the restore");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    });
    let mut other = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    after(&mut client, &mut other);
    kill_and_reap(pid);
    connection_ends(&mut client);
}

/// redis-server (Debian's) with a client connected: the keys it set and
/// its connection carry on across the dump and restore, the server takes
/// new clients again, and nothing answers in between.
#[test]
fn redis_keeps_its_data_and_a_client_s_connection() {
    let _g = common::setup();
    let t = TempDir::new("real-redis");
    let port = free_port();
    let mut cmd = Command::new("/usr/bin/redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(t.path());
    connected_across_dump(
        cmd,
        port,
        t.path(),
        |c| {
            assert_eq!(redis(c, "PING").unwrap(), "+PONG");
            assert_eq!(redis(c, "SET before dumped").unwrap(), "+OK");
            assert_eq!(redis(c, "RPUSH list a b c").unwrap(), ":3");
        },
        |c, other| {
            // The old connection: the data, and a write after the restore.
            assert_eq!(redis(c, "GET before").unwrap(), "dumped");
            assert_eq!(redis(c, "LRANGE list 0 -1").unwrap(), "a b c");
            assert_eq!(redis(c, "SET after restored").unwrap(), "+OK");
            assert_eq!(redis(c, "GET missing").unwrap(), "(nil)");
            // A new client sees it all.
            assert_eq!(redis(other, "GET after").unwrap(), "restored");
            assert_eq!(redis(other, "DBSIZE").unwrap(), ":3");
        },
    );
}

/// A memcached request (text protocol) and its reply up to its last
/// line (`END`, `STORED`, a number, ...).
fn memcached(s: &mut TcpStream, req: &str, last: impl Fn(&str) -> bool) -> String {
    write!(s, "{req}\r\n").unwrap();
    let mut lines = Vec::new();
    loop {
        let line = resp_line(s).expect("a reply line from memcached");
        let done = last(&line);
        lines.push(line);
        if done {
            return lines.join(" ");
        }
    }
}

/// memcached (Debian's; four worker threads, libevent on epoll) with a
/// client connected: items, a counter and the connection carry on.
#[test]
fn memcached_keeps_its_items_and_a_client_s_connection() {
    let _g = common::setup();
    let t = TempDir::new("real-memcached");
    let port = free_port();
    let mut cmd = Command::new("/usr/bin/memcached");
    cmd.args(["-u", "root", "-l", "127.0.0.1", "-U", "0", "-t", "4", "-p"])
        .arg(port.to_string());
    let end = |l: &str| l == "END";
    let one = |_: &str| true;
    connected_across_dump(
        cmd,
        port,
        t.path(),
        |c| {
            assert_eq!(memcached(c, "set k 0 0 6\r\ndumped", one), "STORED");
            assert_eq!(memcached(c, "set n 0 0 1\r\n5", one), "STORED");
            assert_eq!(memcached(c, "incr n 1", one), "6");
        },
        |c, other| {
            assert_eq!(memcached(c, "get k", end), "VALUE k 0 6 dumped END");
            assert_eq!(memcached(c, "incr n 1", one), "7");
            assert_eq!(memcached(other, "get n", end), "VALUE n 0 1 7 END");
            assert_eq!(memcached(other, "get missing", end), "END");
        },
    );
}

/// A Go HTTP server (Debian's Go): its goroutines, threads, netpoller
/// (epoll), timers and signal handlers on alternate stacks.
const GO_SERVER: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	var hits int64
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hit %d\n", atomic.AddInt64(&hits, 1))
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		panic(err)
	}
}
"#;

/// Builds [`GO_SERVER`] in `dir` (its build cache kept in cargo's target
/// directory, so that the standard library is compiled once).
fn build_go_server(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("go-server");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("main.go"), GO_SERVER).unwrap();
    std::fs::write(src.join("go.mod"), "module goserver\n\ngo 1.19\n").unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go");
    let bin = src.join("server");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GOCACHE", cache.join("cache"))
        .env("GOPATH", cache.join("path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .output()
        .expect("running go build (Debian's golang-go package)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// A Go HTTP server counts its hits on across the dump and restore (its
/// memory, threads and listening socket are back); nothing answers in
/// between, nor once the restored server is killed.
#[test]
fn a_go_http_server_counts_on_after_restore() {
    let _g = common::setup();
    let t = TempDir::new("real-go-http");
    let bin = build_go_server(t.path());
    let port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.arg(port.to_string());
    let pid = spawn_server(cmd, t.path());
    wait_serving(port, pid);
    // wait_serving asked once.
    let (_, body) = get(port, "/").unwrap();
    assert_eq!(body, "hit 2\n");

    dump_then_restore(pid, &t.path().join("images"), &[], |_| {
        let e = get(port, "/").expect_err("nothing serves between dump and restore");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    });
    for n in 3..6 {
        let (status, body) = get(port, "/").expect("served after the restore");
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, format!("hit {n}\n"), "the count carries on");
    }
    // A signal the Go runtime handles (on its alternate stack) leaves it
    // serving.
    signal(pid, libc::SIGURG);
    let (_, body) = get(port, "/").expect("served after a signal");
    assert_eq!(body, "hit 6\n");
    kill_and_reap(pid);
    let e = get(port, "/").expect_err("nothing serves once it is killed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
}

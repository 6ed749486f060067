//! Real databases for tests: a SQLite file in a temp dir, and a throwaway PostgreSQL cluster started
//! from the machine's PostgreSQL binaries (Debian `postgresql`), on a free loopback port.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "convene-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PostgreSQL server of our own, stopped (and its files removed) on drop.
pub struct TempPostgres {
    bin: PathBuf,
    data: TempDir,
    pub url: String,
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect(
        "PostgreSQL binaries not found under /usr/lib/postgresql (apt-get install postgresql)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Run a PostgreSQL tool; as root, as the `postgres` user (PostgreSQL refuses to run as root).
fn run_pg(bin: &Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let output = if is_root() {
        Command::new("runuser")
            .arg("-u")
            .arg("postgres")
            .arg("--")
            .arg(&exe)
            .args(args)
            .output()
    } else {
        Command::new(&exe).args(args).output()
    };
    let output = output.unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TempPostgres {
    pub fn start() -> Self {
        let bin = postgres_bin();
        let data = TempDir::new("pg");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data.0)
                .status();
            assert!(
                ok.map(|s| s.success()).unwrap_or(false),
                "chown of the cluster dir failed"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = data.0.display().to_string();
        run_pg(
            &bin,
            "initdb",
            &[
                "-D",
                &dir,
                "-A",
                "trust",
                "-U",
                "convene",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!("-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = format!("{dir}/server.log");
        run_pg(
            &bin,
            "pg_ctl",
            &["-D", &dir, "-l", &log, "-o", &opts, "-w", "start"],
        );
        Self {
            bin,
            data,
            url: format!("postgres://convene@127.0.0.1:{port}/postgres"),
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let dir = self.data.0.display().to_string();
        run_pg(
            &self.bin,
            "pg_ctl",
            &["-D", &dir, "-m", "immediate", "-w", "stop"],
        );
    }
}

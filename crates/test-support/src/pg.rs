//! A temporary PostgreSQL server for the tests: `initdb` into a temporary folder, started on a
//! free loopback port, stopped (and deleted) on drop. As root it runs as the `postgres` user,
//! since PostgreSQL refuses to run as root. A missing server is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("SPARKIFY_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect(
        "no PostgreSQL server found (looked in /usr/lib/postgresql/*/bin and SPARKIFY_PG_BIN); \
         scripts/test.sh installs Debian's postgresql package",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("sparkify-pg")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown to postgres failed");
        }
        let mut server = PgServer {
            port: 0,
            bin,
            dir,
            as_postgres,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // Another process may take the port between here and the start; then we try again.
        let started = crate::ports::on_a_free_port(|port| {
            let opts = format!(
                "-p {port} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                server.dir.path().display()
            );
            let log = server.dir.path().join("server.log");
            let ok = server.try_run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            ok.then_some(port)
        });
        if let Some(port) = started {
            server.port = port;
            return server;
        }
        let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe).args(args);
            c
        } else {
            let mut c = Command::new(exe);
            c.args(args);
            c
        }
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let out = self
            .command(tool, args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        out.status.success()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool, args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A login role `user` (a superuser, so that a load may create tables) that must give
    /// `password` (SCRAM) to connect over TCP; every other role still connects without one.
    pub fn add_password_user(&self, user: &str, password: &str) {
        self.psql(&format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{password}'"
        ));
        let hba = self.data().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        // The first matching line wins.
        let rule = format!("host all \"{user}\" 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, rule + &rules).unwrap();
        self.run("pg_ctl", &["-D", self.data().to_str().unwrap(), "reload"]);
        // The postmaster rereads the file on SIGHUP; give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    /// Runs `sql` with the server's own client, `psql`, stopping at the first error; what it
    /// printed, unaligned and without headers.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

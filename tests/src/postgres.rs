//! A real PostgreSQL server on 127.0.0.1, the database OpenBao's database secrets engine issues credentials for.
//!
//! Each [`Postgres`] is a fresh cluster in a temporary directory: `initdb` with a generated superuser password,
//! then `postgres` listening only on 127.0.0.1 at an ephemeral port, with its Unix socket inside the temporary
//! directory. Every login, over TCP and over the socket, is a `scram-sha-256` password login, so credentials
//! OpenBao issues are checked exactly as an application would use them.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, `initdb` and `postgres` run as the `postgres`
//! user, which then owns the temporary directory; otherwise they run as the current user. The client side
//! (`psql`) runs as whoever runs the tests.
//!
//! The server binaries are looked up on `PATH`, in `/usr/local/bin`, then in `/usr/lib/postgresql/<version>/bin`
//! (newest first); a missing server fails the test with a message saying what to install.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::Signal;
use rand::Rng;
use rand::distr::Alphanumeric;
use tempfile::TempDir;

use crate::process::{self, Probe, ServerProcess, Shutdown};

/// The superuser `initdb` creates; OpenBao's database engine connects as it to manage roles.
const SUPERUSER: &str = "courier_admin";
/// The database every connection uses; `initdb` always creates it.
const DATABASE: &str = "postgres";
/// A fresh cluster answers in well under a second; 30 s leaves room for a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// Longest a single `psql` run may take, connection included; a stuck client must not hang a test.
const PSQL_TIMEOUT: Duration = Duration::from_secs(20);
/// Seconds `psql` waits for the connection itself.
const CONNECT_TIMEOUT_SECS: &str = "5";
/// How long an immediate shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server logs once it has bound its TCP port (messages are forced to English).
const LISTENING: &str = "listening on IPv4 address \"127.0.0.1\"";
/// What `psql` prints when the server refused the login itself, as opposed to the connection failing. The
/// server says "password authentication failed" for a wrong password, an unknown role and an expired one alike.
const LOGIN_REFUSALS: &[&str] = &[
    "password authentication failed for user",
    "is not permitted to log in",
    "no password supplied",
];

/// A running PostgreSQL cluster on 127.0.0.1, stopped and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    // Fields drop in order: the server stops before its directory is removed.
    server: ServerProcess,
    client: Client,
    password: String,
    data_dir: PathBuf,
    _dir: TempDir,
}

impl Postgres {
    /// Creates a cluster and starts it, retrying on a new port when the chosen one was taken meanwhile.
    pub async fn start() -> anyhow::Result<Self> {
        let binaries = Binaries::find()?;
        let owner = ServerUser::for_current_process()?;
        let password: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();

        let dir = tempfile::Builder::new()
            .prefix("courier-postgres-")
            .tempdir()
            .context("cannot create a temporary directory for PostgreSQL")?;
        let data_dir = dir.path().join("data");
        owner.give(dir.path())?;
        init_cluster(&binaries, owner, dir.path(), &data_dir, &password).await?;

        // Dropping a server that lost its port stops it; the cluster stays for the next attempt.
        let (server, client) =
            process::start_on_fresh_ports("PostgreSQL", process::PORT_ATTEMPTS, || async {
                let port = process::free_port()?;
                let client = Client {
                    psql: binaries.psql.clone(),
                    port,
                    passfile: dir.path().join("no-passfile"),
                };
                let server = spawn(&binaries, owner, dir.path(), &data_dir, port)?;
                let at = format!("127.0.0.1:{port}");
                server
                    .wait_ready(&at, READY_TIMEOUT, READY_POLL, || {
                        probe(&server, &client, &password)
                    })
                    .await?;
                Ok((server, client))
            })
            .await?;
        Ok(Self {
            server,
            client,
            password,
            data_dir,
            _dir: dir,
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.client.port
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's generated password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The cluster's data directory, inside the temporary directory removed on drop.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The `connection_url` OpenBao's `postgresql-database-plugin` wants: OpenBao fills in `{{username}}` and
    /// `{{password}}` from the connection's `username` and `password` fields.
    pub fn connection_url_for_openbao(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.client.port
        )
    }

    /// Everything the server has logged so far, including why it refused each login.
    pub fn logs(&self) -> String {
        self.server.logs()
    }

    /// Logs in over TCP as `user` with `password` and checks who the server says we are.
    ///
    /// `Ok(false)` when the server refused the login (wrong password, unknown or expired role, role without
    /// `LOGIN`); `Err` when the login could not even be tried, or succeeded as someone else.
    pub async fn can_login(&self, user: &str, password: &str) -> anyhow::Result<bool> {
        let output = self
            .client
            .run(user, password, "select current_user")
            .await?;
        if output.status.success() {
            let current = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if current == user {
                return Ok(true);
            }
            bail!("logged in as {user:?}, but the server says current_user is {current:?}");
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if is_login_refusal(&stderr) {
            Ok(false)
        } else {
            bail!(
                "psql could not try a login as {user:?} on 127.0.0.1:{}: {stderr}",
                self.client.port
            )
        }
    }

    /// Whether a role named `name` exists, asked as the superuser.
    pub async fn role_exists(&self, name: &str) -> anyhow::Result<bool> {
        let sql = format!(
            "select exists (select 1 from pg_roles where rolname = {})",
            quote_literal(name)?
        );
        let answer = self.query(&sql).await?;
        match answer.trim() {
            "t" => Ok(true),
            "f" => Ok(false),
            other => bail!("unexpected answer to whether role {name:?} exists: {other:?}"),
        }
    }

    /// Runs `sql` as the superuser and returns the rows as `psql -tA` prints them: one row a line, columns
    /// separated by `|`. Fails with the server's message when any statement fails.
    pub async fn query(&self, sql: &str) -> anyhow::Result<String> {
        let output = self.client.run(SUPERUSER, &self.password, sql).await?;
        if !output.status.success() {
            bail!(
                "psql as the superuser failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout).context("psql printed something that is not UTF-8")
    }
}

/// Starts `postgres` in the foreground, so it is our child; an immediate shutdown (SIGQUIT, what
/// `pg_ctl stop -m immediate` sends) stops it. The postmaster waits for its backends before it exits, so once it
/// is reaped the port is closed.
fn spawn(
    binaries: &Binaries,
    owner: ServerUser,
    dir: &Path,
    data_dir: &Path,
    port: u16,
) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new(&binaries.postgres);
    for (name, value) in server_env(dir) {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("port={port}"))
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        // A throwaway cluster: durability buys nothing and costs time on a busy machine.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "shared_buffers=32MB", "-c", "lc_messages=C"])
        .current_dir(dir);
    owner.apply_std(&mut command);
    ServerProcess::spawn(
        "PostgreSQL",
        &mut command,
        &dir.join(format!("postgres-{port}.log")),
        Shutdown::Signal {
            signal: Signal::SIGQUIT,
            grace: STOP_TIMEOUT,
        },
    )
}

/// Runs `psql` against the server over TCP.
#[derive(Debug)]
struct Client {
    psql: PathBuf,
    port: u16,
    /// A path that never exists, so libpq never reads a password file.
    passfile: PathBuf,
}

impl Client {
    /// Runs `psql -c sql` as `user`, never prompting, with no settings from the environment or files.
    async fn run(&self, user: &str, password: &str, sql: &str) -> anyhow::Result<Output> {
        let mut command = tokio::process::Command::new(&self.psql);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(name);
            }
        }
        command
            .args([
                "-X",
                "-w",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", DATABASE, "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGPASSFILE", &self.passfile)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS)
            .env("PGAPPNAME", "courier-tests")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(PSQL_TIMEOUT, command.output()).await {
            Ok(output) => output.with_context(|| format!("cannot run {}", self.psql.display())),
            Err(_) => bail!(
                "psql as {user:?} on 127.0.0.1:{} took longer than {PSQL_TIMEOUT:?}",
                self.port
            ),
        }
    }
}

/// A real superuser login: ready when the server answers `select 1`.
async fn probe(server: &ServerProcess, client: &Client, password: &str) -> Probe {
    let output = match client.run(SUPERUSER, password, "select 1").await {
        Ok(output) => output,
        Err(error) => return Probe::Fatal(error),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if output.status.success() {
        if stdout == "1" {
            return Probe::Ready;
        }
        return Probe::Fatal(anyhow!("`select 1` answered {stdout:?}"));
    }
    // Until our server has bound its port, whatever answered there is someone else: the port was taken after we
    // picked it, and our server is about to exit saying so.
    if is_login_refusal(&stderr) && server.logs().contains(LISTENING) {
        return Probe::Fatal(anyhow!(
            "the server refused the superuser's own password: {stderr}"
        ));
    }
    Probe::NotYet(stderr)
}

fn is_login_refusal(stderr: &str) -> bool {
    LOGIN_REFUSALS
        .iter()
        .any(|refusal| stderr.contains(refusal))
}

/// `value` as an SQL string literal (the server has `standard_conforming_strings` on, as by default).
fn quote_literal(value: &str) -> anyhow::Result<String> {
    if value.contains('\0') {
        bail!("an SQL string cannot hold a NUL character: {value:?}");
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// The server programs, all from one installation.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

impl Binaries {
    fn find() -> anyhow::Result<Self> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        dirs.push(PathBuf::from("/usr/local/bin"));
        dirs.extend(versioned_bin_dirs());
        let mut initdb_without_server = None;
        for initdb in dirs
            .iter()
            .map(|dir| dir.join("initdb"))
            .filter(|path| path.is_file())
        {
            // `/usr/local/bin/initdb` may be a link into the real installation; its siblings live there.
            let mut homes = Vec::new();
            if let Ok(real) = initdb.canonicalize()
                && let Some(parent) = real.parent()
            {
                homes.push(parent.to_path_buf());
            }
            if let Some(parent) = initdb.parent() {
                homes.push(parent.to_path_buf());
            }
            let sibling = |name: &str| {
                homes
                    .iter()
                    .map(|home| home.join(name))
                    .find(|path| path.is_file())
            };
            let Some(postgres) = sibling("postgres") else {
                initdb_without_server.get_or_insert(initdb);
                continue;
            };
            let psql = sibling("psql")
                .or_else(|| dirs.iter().map(|dir| dir.join("psql")).find(|path| path.is_file()))
                .context("PostgreSQL's client `psql` was not found; install it (e.g. `apt-get install postgresql-client`)")?;
            return Ok(Self {
                initdb,
                postgres,
                psql,
            });
        }
        match initdb_without_server {
            Some(initdb) => bail!(
                "found {} but no `postgres` server program next to it",
                initdb.display()
            ),
            None => bail!(
                "PostgreSQL's `initdb` was found neither on PATH, nor in /usr/local/bin, nor in \
                 /usr/lib/postgresql/<version>/bin; install the PostgreSQL server (e.g. `apt-get install postgresql`)"
            ),
        }
    }
}
/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn versioned_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            (version, entry.path().join("bin"))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// The account the server runs as: `postgres` when we are root (PostgreSQL refuses root), else ourselves.
#[derive(Debug, Clone, Copy)]
enum ServerUser {
    Current,
    Other { uid: u32, gid: u32 },
}

impl ServerUser {
    fn for_current_process() -> anyhow::Result<Self> {
        if id(&["-u"])? != 0 {
            return Ok(Self::Current);
        }
        let missing = "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to run it as; \
                       create one (e.g. `useradd --system postgres`)";
        let uid = id(&["-u", "postgres"]).context(missing)?;
        let gid = id(&["-g", "postgres"]).context(missing)?;
        Ok(Self::Other { uid, gid })
    }

    /// Makes `path` the server user's own.
    fn give(&self, path: &Path) -> anyhow::Result<()> {
        if let Self::Other { uid, gid } = *self {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("cannot hand {} to uid {uid}", path.display()))?;
        }
        Ok(())
    }

    fn apply_std(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        if let Self::Other { uid, gid } = *self {
            command.uid(uid).gid(gid);
        }
    }

    fn apply_tokio(&self, command: &mut tokio::process::Command) {
        if let Self::Other { uid, gid } = *self {
            command.uid(uid).gid(gid);
        }
    }
}

/// Runs `id args` and parses the number it prints.
fn id(args: &[&str]) -> anyhow::Result<u32> {
    let output = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `id`")?;
    if !output.status.success() {
        bail!(
            "`id {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("`id {}` printed {text:?}, not a number", args.join(" ")))
}

/// Environment changes for the server programs: no libpq variables, a home of their own, a predictable locale.
fn server_env(home: &Path) -> Vec<(OsString, Option<OsString>)> {
    let mut changes: Vec<(OsString, Option<OsString>)> = std::env::vars_os()
        .filter(|(name, _)| name.to_string_lossy().starts_with("PG"))
        .map(|(name, _)| (name, None))
        .collect();
    changes.push(("HOME".into(), Some(home.into())));
    changes.push(("LC_ALL".into(), Some("C".into())));
    changes
}

/// `initdb` with the superuser's password and password logins everywhere.
async fn init_cluster(
    binaries: &Binaries,
    owner: ServerUser,
    dir: &Path,
    data_dir: &Path,
    password: &str,
) -> anyhow::Result<()> {
    let pwfile = dir.join("superuser-password");
    std::fs::write(&pwfile, format!("{password}\n"))
        .with_context(|| format!("cannot write {}", pwfile.display()))?;
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", pwfile.display()))?;
    owner.give(&pwfile)?;

    let mut command = tokio::process::Command::new(&binaries.initdb);
    for (name, value) in server_env(dir) {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .arg("--pgdata")
        .arg(data_dir)
        .args(["--username", SUPERUSER])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args([
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            "--no-sync",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    owner.apply_tokio(&mut command);
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {}", binaries.initdb.display()))?;
    let _ = std::fs::remove_file(&pwfile);
    if !output.status.success() {
        bail!(
            "{} failed with {} (the temporary directory {} must be reachable by the user the server runs as):\n{}{}",
            binaries.initdb.display(),
            output.status,
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Exactly the logins the tests need: passwords over the socket and from 127.0.0.1, nothing else.
    let hba = data_dir.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "# Written by the Courier test fixture.\n\
         local all all               scram-sha-256\n\
         host  all all 127.0.0.1/32  scram-sha-256\n",
    )
    .with_context(|| format!("cannot write {}", hba.display()))?;
    owner.give(&hba)?;
    Ok(())
}

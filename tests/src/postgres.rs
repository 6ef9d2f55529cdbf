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
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::Rng;
use rand::distr::Alphanumeric;
use tempfile::TempDir;

use crate::watchdog::ExitWatchdog;

/// The superuser `initdb` creates; OpenBao's database engine connects as it to manage roles.
const SUPERUSER: &str = "courier_admin";
/// The database every connection uses; `initdb` always creates it.
const DATABASE: &str = "postgres";
/// A fresh cluster answers in well under a second; 30 s leaves room for a machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// New ports tried when the server loses the race for the one it was given.
const PORT_ATTEMPTS: usize = 5;
/// Longest a single `psql` run may take, connection included; a stuck client must not hang a test.
const PSQL_TIMEOUT: Duration = Duration::from_secs(20);
/// Seconds `psql` waits for the connection itself.
const CONNECT_TIMEOUT_SECS: &str = "5";
/// How long an immediate shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a stopping server is checked on.
const STOP_POLL: Duration = Duration::from_millis(20);

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
    _server: Server,
    client: Client,
    password: String,
    log_path: PathBuf,
    data_dir: PathBuf,
    _dir: TempDir,
}

/// Why one start attempt failed: only a lost port race is worth another attempt.
enum StartError {
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
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

        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log_path = dir.path().join(format!("postgres-{port}.log"));
            let client = Client {
                psql: binaries.psql.clone(),
                port,
                passfile: dir.path().join("no-passfile"),
            };
            let mut server =
                Server::spawn(&binaries, owner, dir.path(), &data_dir, port, &log_path)?;
            match wait_ready(&mut server, &client, &password, &log_path).await {
                Ok(()) => {
                    return Ok(Self {
                        _server: server,
                        client,
                        password,
                        log_path,
                        data_dir,
                        _dir: dir,
                    });
                }
                Err(StartError::Fatal(error)) => return Err(error),
                // Dropping the server stops it; the cluster stays for the next attempt.
                Err(StartError::PortTaken(error)) => last_error = Some(error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("no attempt was made"))
            .context(format!(
                "PostgreSQL did not start after {PORT_ATTEMPTS} attempts on fresh ports"
            )))
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
        read_log(&self.log_path)
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

/// The `postgres` process, shut down on drop.
#[derive(Debug)]
struct Server {
    child: Child,
    _watchdog: ExitWatchdog,
}

impl Server {
    /// Starts `postgres` in the foreground, so it is our child, logging to `log_path`.
    fn spawn(
        binaries: &Binaries,
        owner: ServerUser,
        dir: &Path,
        data_dir: &Path,
        port: u16,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .context("cannot duplicate the log file handle")?;
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
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        owner.apply_std(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot run {}", binaries.postgres.display()))?;
        match ExitWatchdog::watch(child.id()) {
            Ok(watchdog) => Ok(Self {
                child,
                _watchdog: watchdog,
            }),
            Err(error) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                Err(anyhow!(error).context("cannot start the PostgreSQL exit watchdog"))
            }
        }
    }

    /// An immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` sends), then SIGKILL if it lingers.
    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // Not yet reaped, so the pid still names our child.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(STOP_POLL),
                Ok(Some(_)) | Err(_) => return,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The postmaster waits for its backends before it exits, so once it is reaped the port is closed.
        self.stop();
    }
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

/// Polls with a real superuser login until the server answers `select 1`.
async fn wait_ready(
    server: &mut Server,
    client: &Client,
    password: &str,
    log_path: &Path,
) -> Result<(), StartError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = server
            .child
            .try_wait()
            .map_err(|e| StartError::Fatal(e.into()))?
        {
            return Err(exited_early(status, log_path));
        }
        let output = client
            .run(SUPERUSER, password, "select 1")
            .await
            .map_err(StartError::Fatal)?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if output.status.success() {
            if stdout == "1" {
                return Ok(());
            }
            return Err(StartError::Fatal(anyhow!(
                "PostgreSQL on 127.0.0.1:{} answered `select 1` with {stdout:?}",
                client.port
            )));
        }
        // Until our server has bound its port, whatever answered there is someone else: the port was taken
        // after we picked it, and our server is about to exit saying so.
        if is_login_refusal(&stderr) && read_log(log_path).contains(LISTENING) {
            return Err(StartError::Fatal(anyhow!(
                "PostgreSQL on 127.0.0.1:{} refused the superuser's own password: {stderr}; log:\n{}",
                client.port,
                read_log(log_path)
            )));
        }
        if Instant::now() >= deadline {
            return Err(StartError::Fatal(anyhow!(
                "PostgreSQL on 127.0.0.1:{} not ready after {READY_TIMEOUT:?} (last probe: {stderr}); log:\n{}",
                client.port,
                read_log(log_path)
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

fn exited_early(status: ExitStatus, log_path: &Path) -> StartError {
    let logs = read_log(log_path);
    let error = anyhow!("PostgreSQL exited during start-up with {status}; log:\n{logs}");
    if logs.contains("Address already in use") {
        StartError::PortTaken(error)
    } else {
        StartError::Fatal(error)
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
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

/// A port nobody listens on right now; the server may still lose it before binding, hence the retries.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("bound socket has no address")?
        .port())
}

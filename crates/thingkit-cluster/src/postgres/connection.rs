//! One PostgreSQL connection owned by its own thread, driven over a channel.
//!
//! The blocking `postgres` client runs a small tokio runtime of its own and panics when it is
//! called from inside another runtime (the server is tokio). So each store keeps its client on a
//! dedicated std thread and sends it closures; the caller waits for the answer at most
//! `call_timeout`. A closure that fails because the connection broke is run once more on a
//! fresh connection, so every closure must be idempotent (all of the stores' writes are: upserts
//! and deletes of whole records).

use std::sync::mpsc;
use std::time::Duration;

use ::postgres::{Client, NoTls};

use super::config::PostgresConfig;
use crate::error::Error;

/// A closure's failure: PostgreSQL's error (a broken connection is retried once), or an error
/// of ours that ends the call as it is.
pub(crate) enum Failure {
    Pg(::postgres::Error),
    Other(Error),
}

impl From<::postgres::Error> for Failure {
    fn from(e: ::postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

/// Runs once on every new connection (before any call), e.g. to apply migrations.
pub(crate) type Setup = Box<dyn Fn(&mut Client) -> Result<(), Failure> + Send>;

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// The caller's side: send closures, wait for their answers.
pub(crate) struct Connection {
    jobs: mpsc::Sender<Job>,
    call_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the connection thread and connects (running `setup`) before returning, so a bad
    /// URL or a schema that is too new is reported by `open`.
    pub(crate) fn open(
        config: &PostgresConfig,
        thread_name: &str,
        setup: Setup,
    ) -> Result<Self, Error> {
        let pg = config.client_config()?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let mut session = Session {
            config: pg,
            statement_timeout: config.statement_timeout,
            client: None,
            setup,
        };
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut session);
                }
            })
            .map_err(|e| Error::Config(format!("cannot start a connection thread: {e}")))?;
        let connection = Connection {
            jobs,
            call_timeout: config.call_timeout,
        };
        connection.call("connect", |_| Ok(()))?;
        Ok(connection)
    }

    /// Runs `f` on the connection thread (connecting first if needed) and waits for its answer.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl Fn(&mut Client) -> Result<R, Failure> + Send + 'static,
    ) -> Result<R, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session: &mut Session| {
            let _ = tx.send(session.run(operation, &f));
        });
        self.jobs.send(job).map_err(|_| Error::Closed)?;
        match rx.recv_timeout(self.call_timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout {
                operation,
                after: self.call_timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }
}

/// The connection thread's side.
struct Session {
    config: ::postgres::Config,
    statement_timeout: Duration,
    client: Option<Client>,
    setup: Setup,
}

impl Session {
    fn run<R>(
        &mut self,
        operation: &'static str,
        f: &dyn Fn(&mut Client) -> Result<R, Failure>,
    ) -> Result<R, Error> {
        let mut retried = false;
        loop {
            let client = self.client()?;
            match f(client) {
                Ok(r) => return Ok(r),
                Err(Failure::Other(e)) => return Err(e),
                Err(Failure::Pg(e)) => {
                    let broken = is_broken(&e);
                    if broken {
                        self.client = None;
                    }
                    if broken && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(pg_error(operation, &e));
                }
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, Error> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut client = self
                .config
                .connect(NoTls)
                .map_err(|e| pg_error("connect", &e))?;
            // Acknowledged means on disk: refuse a server-wide `synchronous_commit = off` for
            // our sessions. A statement that runs longer than `statement_timeout` is cancelled
            // by the server, so a stuck call frees the connection thread.
            client
                .batch_execute(&format!(
                    "SET synchronous_commit = on; SET statement_timeout = {}",
                    self.statement_timeout.as_millis()
                ))
                .map_err(|e| pg_error("connect", &e))?;
            match (self.setup)(&mut client) {
                Ok(()) => {}
                Err(Failure::Pg(e)) => return Err(pg_error("migrate", &e)),
                Err(Failure::Other(e)) => return Err(e),
            }
            self.client = Some(client);
        }
        self.client.as_mut().ok_or(Error::Closed)
    }
}

/// Whether `e` means the connection is gone (rather than a statement refused).
fn is_broken(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O error, a timeout, a protocol error.
        None => e.as_db_error().is_none(),
        Some(code) => {
            let code = code.code();
            // Class 08: connection exception; class 57P: operator intervention (shutdown,
            // crash shutdown, cannot connect now).
            code.starts_with("08") || code.starts_with("57P")
        }
    }
}

/// PostgreSQL's error as ours: the server's SQLSTATE and message, or the client's message.
pub(crate) fn pg_error(operation: &'static str, e: &::postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Postgres {
            operation,
            code: Some(db.code().code().to_owned()),
            message: match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_owned(),
            },
        },
        None => Error::Postgres {
            operation,
            code: e.code().map(|c| c.code().to_owned()),
            message: e.to_string(),
        },
    }
}

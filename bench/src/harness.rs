//! What every measurement of one `herd` invocation shares: the options, the binaries, the
//! secrets, the admin database connection and the Redis client; and the two things every
//! measurement does with them: set up a fresh, isolated Herald deployment, and tear it down.
//!
//! A [`Stage`] is one such deployment: a fresh database, a fresh Redis prefix, a fake X, and the
//! processes started on them. [`Stage::teardown`] stops the processes, drops the database and
//! deletes the prefix's keys, whatever happened in between, so a failed measurement leaves
//! nothing behind on a shared machine.

use anyhow::Context;

use crate::{
    database::{Admin, BenchDb},
    fake_x::{FakeX, Received},
    herald::{Binaries, Deployment, Process, Secrets},
    keys,
    options::Options,
};

/// The shared context of one invocation.
pub struct Harness {
    /// The options.
    pub options: Options,
    /// The tree under test.
    pub binaries: Binaries,
    /// The run's secrets.
    pub secrets: Secrets,
    /// Encrypts the connections' tokens with `secrets.fernet_key`.
    pub cipher: fernet::Fernet,
    /// Creates and drops databases.
    pub admin: Admin,
    /// Redis.
    pub redis: redis::Client,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cipher holds key material and has no Debug of its own.
        f.debug_struct("Harness")
            .field("options", &self.options)
            .field("binaries", &self.binaries)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Checks the binaries, generates the secrets and connects to PostgreSQL and Redis.
    pub async fn new(options: Options) -> anyhow::Result<Self> {
        let binaries = Binaries::find(&options.bin_dir)?;
        let secrets = Secrets::generate();
        let cipher = fernet::Fernet::new(&secrets.fernet_key).context("the generated Fernet key is invalid")?;
        let admin = Admin::connect(&options.admin_url).await?;
        let redis = redis::Client::open(options.redis_url.as_str()).context("--redis-url is malformed")?;
        keys::connect(&redis).await?;
        std::fs::create_dir_all(&options.log_dir)
            .with_context(|| format!("cannot create {}", options.log_dir.display()))?;
        Ok(Self { options, binaries, secrets, cipher, admin, redis })
    }

    /// A fresh deployment: new database, new Redis prefix, a fake X; `api migrate` applied.
    pub async fn stage(&self) -> anyhow::Result<Stage> {
        let db = self.admin.create().await?;
        let fake = match FakeX::start().await {
            Ok(fake) => fake,
            Err(error) => {
                let _ = self.admin.drop_db(db).await;
                return Err(error);
            }
        };
        let deployment = Deployment {
            binaries: self.binaries.clone(),
            secrets: self.secrets.clone(),
            database_url: db.url.clone(),
            redis_url: self.options.redis_url.clone(),
            queue_prefix: format!("herald-bench-{}", uuid::Uuid::new_v4().simple()),
            fake_x: fake.base_url.clone(),
            extra_env: self.options.extra_env.clone(),
            log_dir: self.options.log_dir.clone(),
        };
        let stage = Stage { db, fake, deployment, workers: Vec::new(), api: None };
        if let Err(error) = stage.deployment.migrate().await {
            stage.teardown(self).await;
            return Err(error);
        }
        Ok(stage)
    }

    /// Drops every database and key left by interrupted runs.
    pub async fn clean(&self) -> anyhow::Result<()> {
        for name in self.admin.drop_leftovers().await? {
            eprintln!("herd: dropped database {name}");
        }
        let mut conn = keys::connect(&self.redis).await?;
        let deleted = keys::delete(&mut conn, "herald-bench-*").await?;
        eprintln!("herd: deleted {deleted} Redis keys under herald-bench-*");
        Ok(())
    }
}

/// One isolated deployment and the processes running on it.
#[derive(Debug)]
pub struct Stage {
    /// Its database.
    pub db: BenchDb,
    /// Its fake X.
    pub fake: FakeX,
    /// How to start its processes.
    pub deployment: Deployment,
    /// Running workers.
    pub workers: Vec<Process>,
    /// The running api, if any.
    pub api: Option<Process>,
}

impl Stage {
    /// Stops every process (SIGTERM, drain, SIGKILL after the window), stops the fake, drops the
    /// database and deletes the prefix's keys. Returns what the fake received. Failures to
    /// clean up are reported on stderr, not raised: the measurement is already done.
    pub async fn teardown(mut self, harness: &Harness) -> Vec<Received> {
        for process in self.workers.iter_mut().chain(self.api.iter_mut()) {
            if !process.stop().await {
                eprintln!("herd: {} did not drain within the window and was killed", process.name());
            }
        }
        let received = self.fake.stop().await;
        if let Err(error) = harness.admin.drop_db(self.db).await {
            eprintln!("herd: cleanup: {error:#}");
        }
        let prefix = self.deployment.queue_prefix;
        match keys::connect(&harness.redis).await {
            Ok(mut conn) => {
                if let Err(error) = keys::delete(&mut conn, &format!("{prefix}:*")).await {
                    eprintln!("herd: cleanup of {prefix}:*: {error:#}");
                }
            }
            Err(error) => eprintln!("herd: cleanup of {prefix}:*: {error:#}"),
        }
        received
    }
}

//! `glint`: the command operators run.
//!
//! `glint serve` starts the whole service on its embedded defaults (SQLite and a filesystem
//! store in `./glint-data`, no auth, public listener 127.0.0.1:9292): it binds the public
//! listener, then runs the control plane and the data plane as **separate child processes**
//! (this same executable, re-run with a hidden subcommand), restarts a plane that dies, and
//! stops both on SIGINT/SIGTERM. See [`supervisor`].
//!
//! `glint serve --check-config` prints the effective configuration (secrets redacted).
//!
//! `glint manage …` runs the operator commands of `glance-manage` against the configured
//! database (see [`controlplane::manage`]).

mod supervisor;

use clap::{Parser, Subcommand};
use shared::config::{Config, Overrides, ProcessEnv};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "glint",
    version,
    about = "glint: a Glance-compatible image service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the image service (control plane + data plane).
    Serve(ServeArgs),
    /// Operator commands, as glance-manage's: the database schema, purge, metadefs files.
    Manage(ManageArgs),
    /// Internal: run the control plane (started by `glint serve`).
    #[command(hide = true)]
    Controlplane,
    /// Internal: run the data plane (started by `glint serve`).
    #[command(hide = true)]
    Dataplane,
}

/// Flags of `glint serve`; each also reads a `GLINT_*` variable (lower precedence).
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(short, long, env = "GLINT_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the database, the filesystem store and runtime files [default: ./glint-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Public listener host [default: 127.0.0.1].
    #[arg(long)]
    bind_host: Option<String>,
    /// Public listener port; 0 picks a free one [default: 9292].
    #[arg(long)]
    bind_port: Option<u16>,
    /// Admin listener host (/metrics, /healthz, /readyz) [default: 127.0.0.1].
    #[arg(long)]
    admin_host: Option<String>,
    /// Admin listener port; 0 picks a free one [default: 9293].
    #[arg(long)]
    admin_port: Option<u16>,
    /// Database URL [default: sqlite://<data-dir>/glint.db].
    #[arg(long)]
    database_url: Option<String>,
    /// Filesystem store directory [default: <data-dir>/images].
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Data-plane worker threads; 0 = one per core [default: 0].
    #[arg(long)]
    workers: Option<usize>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    check_config: bool,
}

/// `glint manage`: where the database is, and what to do.
#[derive(Debug, clap::Args)]
struct ManageArgs {
    /// TOML configuration file.
    #[arg(short, long, env = "GLINT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: ./glint-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://<data-dir>/glint.db].
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    what: ManageCommand,
}

#[derive(Debug, Subcommand)]
enum ManageCommand {
    /// The database schema.
    #[command(subcommand)]
    Db(DbCommand),
    /// The metadata definitions catalog and Glance's definition files.
    #[command(subcommand)]
    Metadefs(MetadefsCommand),
}

#[derive(Debug, Subcommand)]
enum MetadefsCommand {
    /// Load Glance's metadata definition files (a directory of *.json, e.g. the
    /// etc/glance/metadefs of a Glance installation), all in one transaction.
    Load {
        /// The directory (or one file).
        #[arg(long)]
        path: PathBuf,
        /// Add to namespaces that exist what the files have and they lack.
        #[arg(long)]
        merge: bool,
        /// With --merge: what both have takes the files' version.
        #[arg(long, alias = "prefer_new")]
        prefer_new: bool,
        /// Replace namespaces that exist with the files' versions.
        #[arg(long)]
        overwrite: bool,
    },
    /// Remove every namespace with its content (the standard resource types stay).
    Unload,
    /// Write every namespace to <path>/<namespace>.json, in the format load reads.
    Export {
        /// The directory (made if missing).
        #[arg(long)]
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply the pending schema migrations.
    Sync,
    /// Print the schema version and any pending migrations.
    Version,
    /// Remove what images deleted long ago leave in the database (image rows stay: an id is
    /// never free again).
    Purge {
        /// Rows of images deleted more than this many days ago go.
        #[arg(long, alias = "age_in_days", default_value_t = 30)]
        age_in_days: u32,
        /// At most this many rows per table; -1 for all.
        #[arg(
            long,
            alias = "max_rows",
            default_value_t = 100,
            allow_negative_numbers = true
        )]
        max_rows: i64,
    },
}

fn manage(args: ManageArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        database_url: args.database_url,
        ..Overrides::default()
    };
    let config = match Config::load(args.config.as_deref(), &ProcessEnv, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let command = match args.what {
        ManageCommand::Db(DbCommand::Sync) => controlplane::manage::Command::DbSync,
        ManageCommand::Db(DbCommand::Version) => controlplane::manage::Command::DbVersion,
        ManageCommand::Db(DbCommand::Purge {
            age_in_days,
            max_rows,
        }) => controlplane::manage::Command::DbPurge {
            age_in_days,
            max_rows: u64::try_from(max_rows).ok(),
        },
        ManageCommand::Metadefs(MetadefsCommand::Load {
            path,
            merge,
            prefer_new,
            overwrite,
        }) => controlplane::manage::Command::MetadefsLoad {
            path,
            options: controlplane::db::metadefs::LoadOptions {
                merge,
                prefer_new,
                overwrite,
            },
        },
        ManageCommand::Metadefs(MetadefsCommand::Unload) => {
            controlplane::manage::Command::MetadefsUnload
        }
        ManageCommand::Metadefs(MetadefsCommand::Export { path }) => {
            controlplane::manage::Command::MetadefsExport { path }
        }
    };
    match controlplane::manage::run(&config, command) {
        Ok(out) => {
            print!("{out}");
            Ok(())
        }
        Err(e) => {
            eprintln!("glint manage: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                data_dir: args.data_dir,
                bind_host: args.bind_host,
                bind_port: args.bind_port,
                admin_host: args.admin_host,
                admin_port: args.admin_port,
                database_url: args.database_url,
                store_dir: args.store_dir,
                workers: args.workers,
            };
            let config = match Config::load(args.config.as_deref(), &ProcessEnv, &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
            };
            if args.check_config {
                print!("{}", config.to_redacted_toml());
                return Ok(());
            }
            shared::telemetry::init("glint", config.log.as_deref());
            shared::telemetry::abort_on_panic("glint");
            supervisor::serve(config)
        }
        Command::Manage(args) => manage(args),
        Command::Controlplane => {
            let config = supervisor::plane_config()?;
            supervisor::die_with_parent()?;
            shared::telemetry::init("controlplane", config.log.as_deref());
            shared::telemetry::abort_on_panic("controlplane");
            controlplane::run(config)?;
            Ok(())
        }
        Command::Dataplane => {
            let config = supervisor::plane_config()?;
            supervisor::die_with_parent()?;
            shared::telemetry::init("dataplane", config.log.as_deref());
            shared::telemetry::abort_on_panic("dataplane");
            let fd: i32 = std::env::var(supervisor::LISTEN_FD_ENV)?.parse()?;
            let listener = dataplane::io::inherited_listener(fd)?;
            dataplane::run(config, listener)?;
            Ok(())
        }
    }
}

//! `tundra`: parses the command line, sets up logging and runs the dataplane, or talks to a
//! running one over its control socket (`tundra routes ...`, `tundra stats`).
//!
//! Exit status: 0 after a clean stop, 1 when setting up the dataplane failed (for a flannel node
//! also: etcd not reached within its start timeout) or a flannel node's lease was lost to
//! another node, 2 for an invalid flag or config file (detected before anything on the system
//! is touched). The client
//! commands: 0 on success, 1 if tundra is not reachable or refused the request, 2 for invalid
//! arguments.

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

use tundra::cli::{Cli, Command, RoutesCommand, RunArgs, StatsArgs};
use tundra::config::{Config, Flags};
use tundra::control::client::{self, Client};
use tundra::control::protocol::{Request, RouteSpec};

/// Exit status for an invalid flag or config file (clap's, too).
const EXIT_USAGE: u8 = 2;
/// Exit status when the dataplane could not be set up.
const EXIT_SETUP: u8 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    init_logging();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Routes(args) => routes(args.command),
        Command::Stats(args) => stats(args),
    }
}

fn routes(command: RoutesCommand) -> ExitCode {
    let (control, request) = match command {
        RoutesCommand::List { control } => (control, Request::RoutesList),
        RoutesCommand::Add {
            prefix,
            peer,
            control,
        } => (control, Request::RoutesAdd(RouteSpec { prefix, peer })),
        RoutesCommand::Del { prefix, control } => (control, Request::RoutesDel(prefix)),
    };
    let list = request == Request::RoutesList;
    match ask(&control.control, &request) {
        Ok(result) if list => {
            print!("{}", client::routes_table(&result));
            ExitCode::SUCCESS
        }
        Ok(result) => {
            println!(
                "ok: table version {}, {} routes",
                result["version"], result["routes"]
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn stats(args: StatsArgs) -> ExitCode {
    match ask(&args.control.control, &Request::Stats) {
        Ok(result) if args.json => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Ok(result) => {
            print!("{}", client::stats_summary(&result));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// One request to the control socket at `path`; on failure prints the error, returns status 1.
fn ask(path: &std::path::Path, request: &Request) -> Result<serde_json::Value, ExitCode> {
    Client::connect(path)
        .and_then(|mut c| c.request(request))
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_SETUP)
        })
}

fn run(args: RunArgs) -> ExitCode {
    let flags = Flags::from(args);
    let config = match Config::load(&flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing::debug!(?config, "configuration");
    match tundra::dataplane::run_until_signal(&config, || Config::load(&flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`; invalid directives are ignored).
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

/// Help and version go to stdout as usual; a usage error becomes one line on stderr (clap's
/// first line plus its tips, without the usage block), exit status 2.
fn clap_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("error: invalid command line");
    let tips: Vec<&str> = lines.filter(|l| l.starts_with("tip:")).collect();
    if tips.is_empty() {
        eprintln!("{first} (see 'tundra --help')");
    } else {
        eprintln!("{first} ({})", tips.join("; "));
    }
    ExitCode::from(EXIT_USAGE)
}

/// `error` and its sources, joined by ": ", skipping a source its parent already displays.
fn chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

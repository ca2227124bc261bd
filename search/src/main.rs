//! `earlyexit-search`: finds exit bundles for a backbone on recorded footage, and evaluates them.

// The commands.
mod cli;
mod evaluate;
mod extract;
mod fit;
mod inspect;
mod search;

// What the commands share: the backbone, footage, features, shards and heads.
mod adamw;
mod backbone;
mod features;
mod footage;
mod heads;
mod input;
mod outputs;
mod progress;
mod sample;
mod shard;
mod table;

// The search's domain, its algorithms, and the report that renders what they return.
mod assemble;
mod calibrate;
mod certify;
mod crossfit;
mod gating;
mod goal;
mod latency;
mod nas;
mod paired;
mod placement;
mod problem;
mod refit;
mod report;
mod reuse;
mod select;
mod simulate;

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

fn main() -> ExitCode {
    // As other command-line tools: output piped into `head` ends the program quietly, where
    // Rust's default (SIGPIPE ignored) makes `println!` panic on the broken pipe.
    // SAFETY: called first in main, before any thread starts; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let sub = matches
        .subcommand()
        .map(|(_, m)| m)
        .ok_or_else(|| anyhow!("a subcommand is required"))?;
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Search(args) => {
            let (footage, holdout) = cli::pair_footage(sub)?;
            search::run(&args, &footage, &holdout)
        }
        Command::Extract(args) => extract::run(&args),
        Command::Probe(args) => extract::probe(&args),
        Command::Fit(args) => fit::run(&args),
        Command::Evaluate(args) => {
            let (footage, _) = cli::pair_footage(sub)?;
            evaluate::run(&args, &footage)
        }
    }
}

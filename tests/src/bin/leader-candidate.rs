//! `leader-candidate`: one replica's leadership, alone in its own process, so
//! a test can `kill -9` a leader and see another replica take over. It stands
//! for `SERVICE` on the PostgreSQL database at `DATABASE_URL` (read from the
//! environment, never the command line, where `ps` would show the password),
//! advertises `ADVERTISE_ADDRESS`, prints `leader <fence>` or `follower` on
//! standard output at every change of role, and runs until killed.

use std::io::Write;

use clap::Parser;
use trafego_common::leader::{LeaderArgs, Leadership, Role};

/// Command line of the candidate.
#[derive(Debug, Parser)]
#[command(
    name = "leader-candidate",
    about = "one leadership candidate, for tests"
)]
struct Args {
    /// The PostgreSQL database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The service whose leadership is contended.
    #[arg(long, env = "SERVICE")]
    service: String,
    /// Intervals and the advertised address.
    #[command(flatten)]
    leader: LeaderArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let advertise = args.leader.advertise("127.0.0.1:0");
    let leadership = Leadership::start(
        &args.database_url,
        &args.service,
        &advertise,
        args.leader.settings(),
    );
    let mut role = leadership.role();
    loop {
        let line = match &*role.borrow_and_update() {
            Role::Leader { fence } => format!("leader {fence}"),
            Role::Follower { .. } => "follower".to_string(),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        drop(out);
        if role.changed().await.is_err() {
            return Ok(());
        }
    }
}

//! One module per verb; [`dispatch`] runs the one the command line names
//! and returns the exit code.

mod check;
mod common;
mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

pub use common::Context;

use crate::args::Command;
use crate::error::Result;

/// Runs `command`; returns the process exit code on success.
pub fn dispatch(ctx: &Context, command: Command) -> Result<i32> {
    match command {
        Command::Create(args) => create::run(ctx, &args),
        Command::Start(args) => start::run(ctx, &args.id),
        Command::Run(args) => run::run(ctx, &args),
        Command::State(args) => state::run(ctx, &args.id),
        Command::Kill(args) => kill::run(ctx, &args),
        Command::Delete(args) => delete::run(ctx, &args),
        Command::Exec(args) => exec::run(ctx, &args),
        Command::List(args) => list::run(ctx, &args),
        Command::Ps(args) => ps::run(ctx, &args),
        Command::Pause(args) => pause::pause(ctx, &args.id),
        Command::Resume(args) => pause::resume(ctx, &args.id),
        Command::Update(args) => update::run(ctx, &args),
        Command::Events(args) => events::run(ctx, &args),
        Command::Spec(args) => spec::run(&args),
        Command::Features => features::run(),
        Command::Check => check::run(ctx),
    }
}

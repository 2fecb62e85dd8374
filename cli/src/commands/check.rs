//! `check`: prints one verdict per host feature and runtime class; exits
//! 1 unless every configured class can run here.

use crate::check::probe;
use crate::class;
use crate::commands::common::Context;
use crate::error::Result;

/// `strata check`.
pub fn run(ctx: &Context) -> Result<i32> {
    let config = class::load(ctx.config.as_deref());
    let items = probe(config.as_ref().map_err(|e| e.to_string()));
    for item in &items {
        println!("{item}");
    }
    let blocked: Vec<String> = items
        .iter()
        .filter(|i| i.is_blocked_class() || (i.name == "config" && config.is_err()))
        .map(|i| format!("{}: {}", i.name, i.detail))
        .collect();
    if blocked.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "strata check: not every configured runtime class can run here: {}",
        blocked.join("; ")
    );
    Ok(1)
}

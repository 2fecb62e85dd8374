//! `state`: prints a container's OCI state as indented JSON.

use std::io::Write;

use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::output::StateView;

/// `strata state ID`.
pub fn run(ctx: &Context, id: &str) -> Result<i32> {
    let container = Container::open(ctx, id)?;
    let status = container.status(ctx);
    let view = StateView::new(&container.record, status, String::new());
    let text = serde_json::to_string_pretty(&view)
        .map_err(|e| Error::io("encoding the state", e.into()))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("writing the state", e))?;
    Ok(0)
}

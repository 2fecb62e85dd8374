//! `list`: every container under the root, as a table, JSON or bare ids.

use std::os::unix::fs::MetadataExt;

use crate::args::{Format, ListArgs};
use crate::commands::common::Context;
use crate::error::{Error, Result};
use crate::output::{table, user_name, StateView};

/// `strata list [--format table|json] [--quiet]`.
pub fn run(ctx: &Context, args: &ListArgs) -> Result<i32> {
    let mut views = Vec::new();
    for id in ctx.root.ids()? {
        // Containers come and go meanwhile; one that cannot be read is skipped.
        match view(ctx, &id) {
            Ok(Some(view)) => views.push(view),
            Ok(None) => {}
            Err(e) => log::warn!("{id}: {e}"),
        }
    }
    if args.quiet {
        for view in &views {
            println!("{}", view.id);
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => {
            let text = serde_json::to_string(&views)
                .map_err(|e| Error::io("encoding the list", e.into()))?;
            println!("{text}");
        }
        Format::Table => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            rows.extend(views.iter().map(|v| {
                vec![
                    v.id.clone(),
                    v.pid.to_string(),
                    v.status.clone(),
                    v.bundle.clone(),
                    v.created.clone(),
                    v.owner.clone(),
                ]
            }));
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

/// The state of container `id`, read without taking its lock so a long
/// command on one container does not hold up the list.
fn view(ctx: &Context, id: &str) -> Result<Option<StateView>> {
    let dir = ctx.root.container_dir(id);
    let owner = match std::fs::metadata(&dir) {
        Ok(meta) => user_name(meta.uid()),
        Err(_) => return Ok(None),
    };
    let record = match ctx.root.peek(id) {
        Ok(record) => record,
        Err(Error::NotExist(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let spec = match std::fs::read(&record.config) {
        Ok(text) => serde_json::from_slice(&text).ok(),
        Err(_) => None,
    };
    let frozen = || {
        spec.as_ref()
            .and_then(|spec| ctx.runtime().ok()?.cgroup(id, spec).ok())
            .is_some_and(|cg| cg.is_frozen().unwrap_or(false))
    };
    let status = crate::state::status_of(&dir, &record, frozen);
    Ok(Some(StateView::new(&record, status, owner)))
}

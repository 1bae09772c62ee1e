//! The pull lane: pages of the server's change log, each applied to the mirror tables with its
//! cursor in one local transaction (`store::apply_page`).

use super::api::Api;
use super::retry::retrying;
use super::{ProgressFn, SyncProgress, SyncReport};
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::store::{self, DeviceColumn};

pub(crate) async fn pull_all(
    client: &Client,
    api: &Api,
    progress: ProgressFn<'_>,
    report: &mut SyncReport,
) -> Result<()> {
    let policy = client.options().retry;
    let limit = client
        .options()
        .pull_limit
        .clamp(1, client.limits().max_pull_limit.max(1));
    let mut cursor = client
        .db(|conn| store::device_text(conn, DeviceColumn::PullCursor))
        .await?;
    let device = client.device_id().await?;
    loop {
        let page = retrying(&policy, "pull", |_| {
            api.pull(cursor.as_deref(), limit, device)
        })
        .await?;
        let n = page.changes.len();
        let (next, more, reset) = (page.next.clone(), page.more, page.reset);
        if reset {
            tracing::info!("the server asked for a fresh pull; rebuilding the local mirror");
        }
        // A page lost to a power cut is pulled again with its cursor.
        client
            .db(move |conn| store::relaxed(conn, |conn| store::apply_page(conn, &page)))
            .await?;
        report.pulled += n as u64;
        report.reset |= reset;
        progress(SyncProgress::Pulled { n });
        if !more {
            return Ok(());
        }
        if n == 0 && cursor.as_deref() == Some(next.as_str()) {
            return Err(ClientError::Protocol(
                "the server says more changes wait but the cursor does not move".into(),
            ));
        }
        cursor = Some(next);
    }
}

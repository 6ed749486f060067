//! `convene audit ...`: deliver, verify and search the admin API's audit trail.

use std::path::PathBuf;

use anyhow::{Context, bail};
use convene_admin::audit_log;
use convene_admin::store::audit::AuditQuery;
use time::OffsetDateTime;

use crate::admin_cli::{StoreArgs, open};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every delivered log file in DIR against its signed digest and the hash chain; names each
    /// altered, removed or reordered file and exits non-zero if there is any.
    Verify {
        /// The delivery directory (`<data-dir>/audit`).
        dir: PathBuf,
        /// Public key file [default: DIR/../audit-signing.pub].
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Print matching records, one JSON object per line, oldest first.
    Lookup {
        #[arg(long, value_name = "NAME")]
        event_name: Option<String>,
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
        /// RFC 3339 time, inclusive.
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long, value_name = "TIME")]
        end: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deliver the records not yet delivered into `<data-dir>/audit` now (serve does this periodically).
    Deliver(StoreArgs),
}

fn rfc3339(value: Option<&str>) -> anyhow::Result<String> {
    match value {
        None => Ok(String::new()),
        Some(v) => {
            let t = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("{v:?} is not an RFC 3339 time"))?;
            Ok(convene_admin::store::accounts::timestamp(t))
        }
    }
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { dir, public_key } => {
            let key_path = public_key.unwrap_or_else(|| dir.join("..").join("audit-signing.pub"));
            let key = audit_log::public_key(&key_path)?;
            let problems = audit_log::verify(&dir, &key)?;
            if problems.is_empty() {
                println!("audit trail in {} is intact", dir.display());
                return Ok(());
            }
            for p in &problems {
                eprintln!("{p}");
            }
            bail!("{} problem(s) in the audit trail", problems.len());
        }
        AuditCommand::Lookup {
            event_name,
            principal,
            start,
            end,
            store: args,
        } => {
            let (store, _) = open(&args.data_dir, args.database_url.as_deref()).await?;
            let (start, end) = (rfc3339(start.as_deref())?, rfc3339(end.as_deref())?);
            let query = AuditQuery {
                event_name: event_name.as_deref().unwrap_or(""),
                principal: principal.as_deref().unwrap_or(""),
                start: &start,
                end: &end,
            };
            let mut after = 0;
            loop {
                let rows = store.lookup_audit(&query, after, 500).await?;
                let Some(last) = rows.last() else { break };
                after = last.seq;
                for row in &rows {
                    println!("{}", row.record);
                }
            }
            Ok(())
        }
        AuditCommand::Deliver(args) => {
            let (store, _) = open(&args.data_dir, args.database_url.as_deref()).await?;
            let key = audit_log::signing_key(&args.data_dir)?;
            let dir = args.data_dir.join("audit");
            match audit_log::deliver(
                &store,
                &key,
                &dir,
                "000000000000",
                "us-east-1",
                OffsetDateTime::now_utc(),
            )
            .await?
            {
                Some(path) => println!("{}", path.display()),
                None => println!("nothing to deliver"),
            }
            Ok(())
        }
    }
}

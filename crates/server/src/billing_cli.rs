//! `convene billing ...`: the monthly Active Pro export.

use anyhow::Context;
use time::macros::format_description;
use time::{Date, Month};

use crate::admin_cli::{StoreArgs, open};

#[derive(Debug, clap::Subcommand)]
pub enum BillingCommand {
    /// Print the Active Pro days of a month as CSV (account, user, email, day, reason), one row per
    /// user and day, ordered by account, day and user. Days are UTC; a meeting counts on the day it ended.
    Report {
        /// The month, YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        month: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// First and last day of a `YYYY-MM` month.
fn month_range(month: &str) -> anyhow::Result<(Date, Date)> {
    let first = Date::parse(
        &format!("{month}-01"),
        format_description!("[year]-[month]-[day]"),
    )
    .with_context(|| format!("{month:?} is not a month written YYYY-MM"))?;
    let next = match first.month() {
        Month::December => Date::from_calendar_date(first.year() + 1, Month::January, 1)?,
        m => Date::from_calendar_date(first.year(), m.next(), 1)?,
    };
    Ok((first, next.previous_day().unwrap_or(first)))
}

/// One CSV field, quoted when it must be (RFC 4180).
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

pub async fn run(command: BillingCommand) -> anyhow::Result<()> {
    match command {
        BillingCommand::Report { month, store } => {
            let (from, to) = month_range(&month)?;
            let (db, _) = open(&store.data_dir, store.database_url.as_deref()).await?;
            let days = db.active_pro_days(None, from, to).await?;
            let mut out = String::from("account,user,email,day,reason\n");
            for d in &days {
                let row = [
                    csv(&d.account_id),
                    csv(&d.user_id),
                    csv(d.email.as_deref().unwrap_or("")),
                    csv(&d.day),
                    csv(&d.reason),
                ];
                out.push_str(&row.join(","));
                out.push('\n');
            }
            print!("{out}");
            db.close().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_span_their_days() {
        let (a, b) = month_range("2026-02").unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("2026-02-01".into(), "2026-02-28".into())
        );
        let (_, b) = month_range("2026-12").unwrap();
        assert_eq!(b.to_string(), "2026-12-31");
        assert!(month_range("2026-13").is_err());
        assert!(month_range("Nov").is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv("plain"), "plain");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}

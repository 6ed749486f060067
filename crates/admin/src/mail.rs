//! Outgoing e-mail (invitations). By default messages are written as `.eml` files under
//! `<data-dir>/outbox/`, where an operator (or a mail relay watching the folder) picks them up; with an
//! SMTP URL configured they are delivered over SMTP. Both through `lettre`, so messages are proper
//! RFC 5322 with encoded headers, and SMTP gets STARTTLS/TLS and authentication from the URL.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("address {0:?}: {1}")]
    Address(String, String),
    #[error("building the message: {0}")]
    Build(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("SMTP URL: {0}")]
    SmtpUrl(String),
    #[error("SMTP delivery: {0}")]
    Smtp(String),
}

/// Where mail goes.
#[derive(Clone)]
enum Delivery {
    Folder(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends mail from one sender address.
#[derive(Clone)]
pub struct Mailer {
    delivery: Delivery,
    from: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.delivery {
            Delivery::Folder(dir) => write!(f, "Mailer(folder {})", dir.display()),
            Delivery::Smtp(_) => f.write_str("Mailer(smtp)"),
        }
    }
}

impl Mailer {
    /// Write messages as `<dir>/<id>.eml`.
    pub fn folder(dir: PathBuf, from: &str) -> Self {
        Self {
            delivery: Delivery::Folder(dir),
            from: from.to_owned(),
        }
    }

    /// Deliver over SMTP. The URL is lettre's: `smtp://host:port` (plain, for a local relay),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://user:password@host:465` (TLS).
    pub fn smtp(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::SmtpUrl(e.to_string()))?
            .build();
        Ok(Self {
            delivery: Delivery::Smtp(transport),
            from: from.to_owned(),
        })
    }

    /// Send one message; `id` names the file in folder mode.
    pub async fn send(
        &self,
        id: &str,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), MailError> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| MailError::Address(self.from.clone(), format!("{e}")))?;
        let to_box: Mailbox = to
            .parse()
            .map_err(|e| MailError::Address(to.to_owned(), format!("{e}")))?;
        let message = Message::builder()
            .from(from)
            .to(to_box)
            .subject(subject)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.delivery {
            Delivery::Folder(dir) => {
                let io = |path: &std::path::Path| {
                    let path = path.display().to_string();
                    move |source| MailError::Io { path, source }
                };
                tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
                let path = dir.join(format!("{id}.eml"));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(io(&path))?;
            }
            Delivery::Smtp(transport) => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
            }
        }
        Ok(())
    }
}

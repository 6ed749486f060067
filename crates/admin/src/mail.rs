//! Outgoing e-mail. By default messages are written as `.eml` files under `<data-dir>/outbox/`, where an
//! operator (or a mail relay watching the folder) picks them up; SMTP delivery comes with configuration
//! for it. Messages are built with `lettre`, so they are proper RFC 5322 with encoded headers.

use std::path::PathBuf;

use lettre::Message;
use lettre::message::Mailbox;

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
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub dir: PathBuf,
    pub from: String,
}

impl Outbox {
    /// Write one message as `<dir>/<id>.eml`; returns its path.
    pub fn send(
        &self,
        id: &str,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<PathBuf, MailError> {
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
        let io = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| MailError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(format!("{id}.eml"));
        std::fs::write(&path, message.formatted()).map_err(io(&path))?;
        Ok(path)
    }
}

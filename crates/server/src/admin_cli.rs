//! `convene admin ...`: manage the deployment's administrators (principals) from the shell.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use convene_admin::principals::{self, Credentials};
use convene_admin::secrets::MasterKey;
use convene_admin::store::Store;
use time::OffsetDateTime;

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create the root principal (FullAccess) if there is none; prints its keys as JSON and writes
    /// them to DIR/bootstrap-credentials.json (mode 0600). `convene serve` does this on first start.
    Bootstrap(StoreArgs),
    /// Create a principal and print its keys as JSON: {"AccessKeyId": ..., "SecretAccessKey": ...}.
    CreatePrincipal {
        /// Principal name (1-64 of A-Z a-z 0-9 + = , . @ _ -).
        name: String,
        /// FullAccess, UserManagement, ReadOnly, or a JSON policy document file. Repeatable.
        #[arg(long = "policy", required = true, value_name = "POLICY")]
        policies: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List principals: name, access key id and policies, one JSON object per line (no secrets).
    ListPrincipals(StoreArgs),
    /// Delete a principal; its keys stop working at once.
    DeletePrincipal {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Attach a policy (managed name or JSON document file) to a principal.
    AttachPolicy {
        name: String,
        #[arg(long = "policy", value_name = "POLICY")]
        policy: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Invite a user and print their registration link, without the admin API: the quickest way to a
    /// first user who can host meetings. Uses (or creates) the team account named by --account.
    Invite {
        /// The user's e-mail address.
        email: String,
        /// Team account to add the user to; created if there is none with exactly this name.
        #[arg(long, value_name = "NAME", default_value = "Convene")]
        account: String,
        /// Base URL of the link [default: http://127.0.0.1:8080].
        #[arg(
            long,
            env = "CONVENE_PUBLIC_URL",
            value_name = "URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Detach a policy (managed name, or the policy document file's content) from a principal.
    DetachPolicy {
        name: String,
        #[arg(long = "policy", value_name = "POLICY")]
        policy: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Convene's data directory (where the master key and the SQLite database live).
    #[arg(
        long,
        env = "CONVENE_DATA_DIR",
        value_name = "DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,
    /// Database URL [default: SQLite in the data directory]; postgres://... for PostgreSQL.
    #[arg(long, env = "CONVENE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

/// Open the master key and the store as `serve` would.
pub async fn open(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<(Store, MasterKey)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let master = MasterKey::load_or_create(data_dir)?;
    let url = database_url
        .map(str::to_owned)
        .unwrap_or_else(|| Store::sqlite_url(data_dir));
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    Ok((store, master))
}

fn print(credentials: &Credentials) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(credentials)?);
    Ok(())
}

/// A `--policy` value: a managed policy name, or a file holding a policy document.
fn policy_value(arg: &str) -> anyhow::Result<serde_json::Value> {
    if arg
        .parse::<convene_admin::iam::policy::ManagedPolicy>()
        .is_ok()
    {
        return Ok(serde_json::Value::String(arg.to_owned()));
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!(
            "--policy {arg:?} is neither FullAccess, UserManagement, ReadOnly nor a readable file"
        )
    })?;
    let document: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{arg}: not JSON"))?;
    serde_json::from_value::<convene_admin::iam::policy::PolicyDocument>(document.clone())
        .with_context(|| format!("{arg}: not a valid policy document"))?;
    Ok(document)
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    match command {
        AdminCommand::Bootstrap(args) => {
            let (store, master) = open(&args.data_dir, args.database_url.as_deref()).await?;
            match principals::bootstrap(&store, &master, &args.data_dir, now).await? {
                Some(credentials) => print(&credentials),
                None => bail!("principals exist already; use `convene admin create-principal`"),
            }
        }
        AdminCommand::CreatePrincipal {
            name,
            policies,
            store: args,
        } => {
            let values = policies
                .iter()
                .map(|p| policy_value(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (store, master) = open(&args.data_dir, args.database_url.as_deref()).await?;
            print(&principals::create_principal(&store, &master, &name, &values, now).await?)
        }
        AdminCommand::ListPrincipals(args) => {
            let (store, _) = open(&args.data_dir, args.database_url.as_deref()).await?;
            for p in store.list_principals().await? {
                let policies: serde_json::Value = serde_json::from_str(&p.policies)?;
                let line = serde_json::json!({ "Name": p.name, "AccessKeyId": p.access_key_id, "Policies": policies });
                println!("{line}");
            }
            Ok(())
        }
        AdminCommand::DeletePrincipal { name, store: args } => {
            let (store, _) = open(&args.data_dir, args.database_url.as_deref()).await?;
            if !store.delete_principal(&name).await? {
                bail!("no principal named {name:?}");
            }
            Ok(())
        }
        AdminCommand::AttachPolicy {
            name,
            policy,
            store,
        } => change_policy(&name, &policy, &store, true).await,
        AdminCommand::DetachPolicy {
            name,
            policy,
            store,
        } => change_policy(&name, &policy, &store, false).await,
        AdminCommand::Invite {
            email,
            account,
            public_url,
            store,
        } => invite(&email, &account, &public_url, &store).await,
    }
}

/// `convene admin invite`: account (found or created), user (found or created), invitation, link.
async fn invite(
    email: &str,
    account_name: &str,
    public_url: &str,
    args: &StoreArgs,
) -> anyhow::Result<()> {
    use convene_admin::model::{
        AccountType, EmailStatus, InviteStatus, License, RegistrationStatus, UserType,
    };
    use convene_admin::store::invites::Invite;
    use convene_admin::store::users::CreateUser;

    if !convene_admin::api::users::valid_email(email) {
        bail!("{email:?} is not an e-mail address");
    }
    let (store, _) = open(&args.data_dir, args.database_url.as_deref()).await?;
    let now = time::OffsetDateTime::now_utc();
    let existing = store
        .list_accounts(Some(account_name), None, 200)
        .await?
        .items
        .into_iter()
        .find(|a| a.name == account_name);
    let account = match existing {
        Some(a) => a,
        None => {
            store
                .create_account(account_name, AccountType::Team, License::Pro, now)
                .await?
        }
    };
    let user = match store.user_by_email(email).await? {
        Some(u) if u.account_id.as_ref().is_some_and(|a| *a != account.id) => {
            bail!("{email} is a user of another account")
        }
        Some(u)
            if u.account_id.is_some()
                && u.registration_status != RegistrationStatus::Unregistered =>
        {
            bail!("{email} has registered already; they can sign in")
        }
        Some(u) => u,
        None => {
            let name = email.split('@').next().unwrap_or(email);
            match store
                .create_user(
                    &account.id,
                    email,
                    name,
                    account.default_license,
                    UserType::PrivateUser,
                    now,
                )
                .await?
            {
                CreateUser::Created(u) => *u,
                other => bail!("could not add {email}: {other:?}"),
            }
        }
    };
    let token = convene_admin::secrets::random_hex(32);
    let invite = Invite {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        user_id: user.id.clone(),
        email: user.email.clone(),
        status: InviteStatus::Pending,
        email_status: EmailStatus::NotSent,
    };
    store.create_invite(&invite, &token, now).await?;
    println!(
        "{}/register?invite={token}",
        public_url.trim_end_matches('/')
    );
    eprintln!(
        "{email} is invited to account {:?} ({}); open the link above to choose a name and password",
        account.name, account.id
    );
    store.close().await;
    Ok(())
}

/// Attach (or detach) one policy of a principal.
async fn change_policy(
    name: &str,
    policy: &str,
    args: &StoreArgs,
    attach: bool,
) -> anyhow::Result<()> {
    let value = policy_value(policy)?;
    let (store, _) = open(&args.data_dir, args.database_url.as_deref()).await?;
    let Some(principal) = store.principal_by_name(name).await? else {
        bail!("no principal named {name:?}")
    };
    let mut policies: Vec<serde_json::Value> = serde_json::from_str(&principal.policies)?;
    if attach {
        if !policies.contains(&value) {
            policies.push(value);
        }
    } else {
        let before = policies.len();
        policies.retain(|p| *p != value);
        if policies.len() == before {
            bail!("{name:?} does not have that policy");
        }
    }
    store
        .set_principal_policies(name, &serde_json::Value::Array(policies).to_string())
        .await?;
    Ok(())
}

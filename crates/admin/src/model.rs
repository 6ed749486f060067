//! The control plane's nouns, with the exact wire spellings of the public API model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An account's identifier: a UUID, as the public API uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AccountId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for AccountId {
    type Err = ();
    /// Only well-formed UUIDs: anything else cannot name an account, so lookups never reach storage.
    fn from_str(s: &str) -> Result<Self, ()> {
        uuid::Uuid::parse_str(s)
            .map(|u| Self(u.to_string()))
            .map_err(|_| ())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("{s:?} is not one of {}", names.join(", "))
                })
            }
        }
    };
}

wire_enum!(
    /// The kinds of account in the guide.
    AccountType { Team, EnterpriseDirectory, EnterpriseLWA, EnterpriseOIDC }
);
wire_enum!(
    /// User licences.
    License { Basic, Plus, Pro, ProTrial }
);
wire_enum!(
    /// Whether a user is a person or a shared room device.
    UserType { PrivateUser, SharedDevice }
);
wire_enum!(
    /// Where a user is in registration.
    RegistrationStatus { Unregistered, Registered, Suspended }
);
wire_enum!(
    /// Where an invitation is.
    InviteStatus { Pending, Accepted, Failed }
);
wire_enum!(
    /// Whether an invitation's e-mail went out.
    EmailStatus { NotSent, Sent, Failed }
);
wire_enum!(
    /// Whether an account is usable.
    AccountStatus { Suspended, Active }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in AccountType::ALL {
            assert_eq!(t.as_str().parse::<AccountType>(), Ok(*t));
        }
        assert_eq!(
            serde_json::to_string(&License::ProTrial).unwrap(),
            "\"ProTrial\""
        );
        assert!(
            "pro"
                .parse::<License>()
                .unwrap_err()
                .contains("Basic, Plus, Pro, ProTrial")
        );
    }

    #[test]
    fn account_ids_are_uuids() {
        let id = AccountId::new();
        assert_eq!(id.as_str().parse::<AccountId>(), Ok(id));
        assert!("1 OR 1=1".parse::<AccountId>().is_err());
    }
}

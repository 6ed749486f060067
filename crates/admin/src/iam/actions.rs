//! The `chime:` actions: every action a Convene policy can name, and which managed policy grants it.
//!
//! [`ACTIONS`] is the one table. It holds
//! - every row of the admin guide's "Amazon Chime Actions" table, with its FA / UM / RO column exactly
//!   as the guide gives it (FullAccess, UserManagement, ReadOnly),
//! - the actions the guide names elsewhere (its read-only example policy, its "Request attachments"
//!   section),
//! - one action per operation of the public API model that our HTTP routes serve (`chime:<Operation>`,
//!   as AWS does), plus our own extensions. Where such an operation is a guide row under another name,
//!   it takes that row's columns and says so in [`ActionInfo::guide_name`].
//!
//! The managed policies ([`super::policy::ManagedPolicy`]) are built from these columns, not from
//! wildcards: the guide keeps some `List*`/`Get*` actions out of ReadOnly (`GetMeetingDetails`,
//! `ListApiKeys`, ...), and a wildcard would grant them.
//!
//! IAM compares action names case-insensitively, so two names differing only in case are one action:
//! the guide's `ResetPersonalPin` and the API model's `ResetPersonalPIN` are a single row here, and
//! [`lookup`] ignores case.

/// The service prefix of every action in [`ACTIONS`] (`chime:CreateAccount`).
pub const SERVICE_PREFIX: &str = "chime";

/// One `chime:` action and the managed policies that grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionInfo {
    /// The action name without the `chime:` prefix, e.g. `"CreateAccount"`.
    pub name: &'static str,
    /// The admin guide's name for the same capability, when the guide's action table lists it under
    /// another name (`UpdateAccount` is the guide's `RenameAccount`); the columns below are that row's.
    pub guide_name: Option<&'static str>,
    /// Granted by FullAccess (`AmazonChimeFullAccess`, "FA" in the guide). True for every action.
    pub full_access: bool,
    /// Granted by UserManagement (`AmazonChimeUserManagement`, "UM").
    pub user_management: bool,
    /// Granted by ReadOnly (`AmazonChimeReadOnly`, "RO").
    pub read_only: bool,
}

impl ActionInfo {
    /// The action as policies and requests spell it: `chime:<name>`.
    pub fn qualified_name(&self) -> String {
        format!("{SERVICE_PREFIX}:{}", self.name)
    }
}

/// Which managed policies grant a row: the guide's "Managed Policy" column.
#[derive(Clone, Copy)]
struct Columns {
    user_management: bool,
    read_only: bool,
}

/// "FA": FullAccess only.
const FA: Columns = Columns {
    user_management: false,
    read_only: false,
};
/// "FA, UM".
const FA_UM: Columns = Columns {
    user_management: true,
    read_only: false,
};
/// "FA, UM, RO".
const FA_UM_RO: Columns = Columns {
    user_management: true,
    read_only: true,
};

/// An action listed under its own name (in the guide's table, or new with no guide counterpart).
const fn action(name: &'static str, columns: Columns) -> ActionInfo {
    ActionInfo {
        name,
        guide_name: None,
        full_access: true,
        user_management: columns.user_management,
        read_only: columns.read_only,
    }
}

/// An action that is the guide's row `guide_name` under another name, with that row's columns.
const fn renamed(name: &'static str, guide_name: &'static str, columns: Columns) -> ActionInfo {
    ActionInfo {
        guide_name: Some(guide_name),
        ..action(name, columns)
    }
}

/// Every `chime:` action Convene knows, each exactly once (names compared case-insensitively).
pub const ACTIONS: &[ActionInfo] = &[
    // ---- The guide's "Amazon Chime Actions" table, row by row, columns as printed. ----
    // Accounts. CreateAccount, GetAccount, ListAccounts, DeleteAccount, Get/UpdateAccountSettings are
    // also API-model operations under the same names.
    action("CreateAccount", FA),
    action("RenameAccount", FA),
    action("GetAccountSettings", FA_UM_RO),
    action("UpdateAccountSettings", FA_UM),
    action("ListAccounts", FA_UM_RO),
    action("GetAccount", FA_UM_RO),
    action("DeleteAccount", FA),
    // Users. ListUsers, GetUser, InviteUsers and LogoutUser are also API-model operations.
    action("ListUsers", FA_UM_RO),
    action("GetUser", FA_UM_RO),
    action("GetUserByEmail", FA_UM_RO),
    action("InviteUsers", FA_UM),
    action("SuspendUsers", FA_UM),
    action("ActivateUsers", FA_UM),
    action("UpdateUserLicenses", FA_UM),
    // The guide's `ResetPersonalPin` and the API model's `ResetPersonalPIN` differ only in case, which
    // IAM ignores: one action. It carries the API model's spelling (what our route and AWS's own
    // AmazonChimeUserManagement policy write) and records the guide's.
    renamed("ResetPersonalPIN", "ResetPersonalPin", FA_UM),
    action("LogoutUser", FA_UM),
    // Reports.
    action("ListAccountUsageReports", FA_UM_RO),
    action("GetUserActivitySummary", FA_UM_RO),
    action("GetMeetingDetails", FA_UM),
    action("ListMeetingEvents", FA_UM),
    action("ListMeetingReports", FA_UM),
    // Domains.
    action("ListDomains", FA_UM_RO),
    action("AddDomain", FA),
    action("GetDomain", FA_UM_RO),
    action("DeleteDomain", FA),
    // Active Directory.
    action("AuthorizeDirectory", FA),
    action("UnauthorizeDirectory", FA),
    action("ListDirectories", FA_UM_RO),
    action("ConnectDirectory", FA),
    action("DisconnectDirectory", FA),
    // Okta.
    action("ListApiKeys", FA),
    action("CreateApiKey", FA),
    action("DeleteApiKey", FA),
    action("GetAccountWithOpenIdConfig", FA),
    action("UpdateAccountWithOpenIdConfig", FA),
    action("DeleteAccountWithOpenIdConfig", FA),
    // Directory groups.
    action("ListGroups", FA_UM_RO),
    action("AddOrUpdateGroups", FA),
    action("DeleteGroups", FA),
    // Support.
    action("SubmitSupportRequest", FA_UM),
    // AWS account delegation.
    action("AcceptDelegation", FA),
    action("ValidateDelegation", FA),
    action("ListDelegates", FA_UM_RO),
    action("DeleteDelegation", FA),
    //
    // ---- Named by the guide outside its table. ----
    // In the read-only example policy, so RO (and UM, which grants everything RO does). Its
    // description in AWS's action list is the table's `ListAccountUsageReports` row word for word:
    // the same report under its current name.
    renamed(
        "ListAccountUsageReportData",
        "ListAccountUsageReports",
        FA_UM_RO,
    ),
    // In the read-only example policy; no table row.
    action("GetAccountResource", FA_UM_RO),
    // "Request attachments": the guide says any of the three managed policies allows it. Judgement:
    // FA and UM only. Our ReadOnly grants reads of configuration (List/Get/Describe, as admin-api.md
    // defines it); starting an export of every user's uploaded attachments, or downloading the
    // links to them, is a bulk read of user content, which belongs to user management.
    action("StartDataExport", FA_UM),
    action("RetrieveDataExports", FA_UM),
    //
    // ---- admin-api.md's names for console features the public model lacks. ----
    // The names admin-api.md gives our routes where they differ from the guide's table; same rows.
    renamed(
        "GetUserActivityReportData",
        "GetUserActivitySummary",
        FA_UM_RO,
    ),
    renamed(
        "UpdateAccountOpenIdConfig",
        "UpdateAccountWithOpenIdConfig",
        FA,
    ),
    renamed(
        "DeleteAccountOpenIdConfig",
        "DeleteAccountWithOpenIdConfig",
        FA,
    ),
    //
    // ---- Operations of the public API model (2018-05-01) not in the guide under their own name. ----
    // UpdateAccount renames the account (and sets its default licence): the guide's RenameAccount.
    renamed("UpdateAccount", "RenameAccount", FA),
    // UpdateUser / BatchUpdateUser change a user's LicenseType and UserType: UpdateUserLicenses.
    renamed("UpdateUser", "UpdateUserLicenses", FA_UM),
    renamed("BatchUpdateUser", "UpdateUserLicenses", FA_UM),
    // CreateUser adds a user without an e-mail invitation. No guide row; judgement: the same right
    // as InviteUsers (FA, UM), which is also what AWS's AmazonChimeUserManagement grants.
    action("CreateUser", FA_UM),
    renamed("BatchSuspendUser", "SuspendUsers", FA_UM),
    renamed("BatchUnsuspendUser", "ActivateUsers", FA_UM),
    // Settings. No guide rows; judgement: reading any settings is reading configuration (FA, UM, RO,
    // like GetAccountSettings). Changing a user's settings is user management (FA, UM); changing
    // retention or deployment-wide settings is administration (FA only).
    action("GetUserSettings", FA_UM_RO),
    action("UpdateUserSettings", FA_UM),
    action("GetRetentionSettings", FA_UM_RO),
    action("PutRetentionSettings", FA),
    action("GetGlobalSettings", FA_UM_RO),
    action("UpdateGlobalSettings", FA),
    //
    // ---- Convene's extensions. ----
    // RemoveUsers takes users out of an account. Judgement: user management (FA, UM), like
    // SuspendUsers.
    action("RemoveUsers", FA_UM),
    // LookupEvents reads the audit trail (CloudTrail's name for it). Judgement: a read (FA, UM, RO),
    // as CloudTrail's own LookupEvents is in AWS's ReadOnlyAccess. It is the one ReadOnly action
    // whose verb is not List/Get/Describe, so `chime:Get*`-style policies do not grant it.
    action("LookupEvents", FA_UM_RO),
    // ListActiveProUsers lists the Active Pro (billed) days of an account's users. Judgement: a usage
    // report, so the same columns as ListAccountUsageReports (FA, UM, RO).
    action("ListActiveProUsers", FA_UM_RO),
];

/// The action called `name` (without the `chime:` prefix), compared case-insensitively as IAM does.
pub fn lookup(name: &str) -> Option<&'static ActionInfo> {
    ACTIONS.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The guide's "Amazon Chime Actions" table as printed (its `chime&gt;` and split-word typesetting
    /// glitches repaired): action, "Managed Policy for Amazon Chime" column.
    const GUIDE_TABLE: &[(&str, &str)] = &[
        ("CreateAccount", "FA"),
        ("RenameAccount", "FA"),
        ("GetAccountSettings", "FA, UM, RO"),
        ("UpdateAccountSettings", "FA, UM"),
        ("ListAccounts", "FA, UM, RO"),
        ("GetAccount", "FA, UM, RO"),
        ("DeleteAccount", "FA"),
        ("ListUsers", "FA, UM, RO"),
        ("GetUser", "FA, UM, RO"),
        ("GetUserByEmail", "FA, UM, RO"),
        ("InviteUsers", "FA, UM"),
        ("SuspendUsers", "FA, UM"),
        ("ActivateUsers", "FA, UM"),
        ("UpdateUserLicenses", "FA, UM"),
        ("ResetPersonalPin", "FA, UM"),
        ("LogoutUser", "FA, UM"),
        ("ListAccountUsageReports", "FA, UM, RO"),
        ("GetUserActivitySummary", "FA, UM, RO"),
        ("GetMeetingDetails", "FA, UM"),
        ("ListMeetingEvents", "FA, UM"),
        ("ListMeetingReports", "FA, UM"),
        ("ListDomains", "FA, UM, RO"),
        ("AddDomain", "FA"),
        ("GetDomain", "FA, UM, RO"),
        ("DeleteDomain", "FA"),
        ("AuthorizeDirectory", "FA"),
        ("UnauthorizeDirectory", "FA"),
        ("ListDirectories", "FA, UM, RO"),
        ("ConnectDirectory", "FA"),
        ("DisconnectDirectory", "FA"),
        ("ListApiKeys", "FA"),
        ("CreateApiKey", "FA"),
        ("DeleteApiKey", "FA"),
        ("GetAccountWithOpenIdConfig", "FA"),
        ("UpdateAccountWithOpenIdConfig", "FA"),
        ("DeleteAccountWithOpenIdConfig", "FA"),
        ("ListGroups", "FA, UM, RO"),
        ("AddOrUpdateGroups", "FA"),
        ("DeleteGroups", "FA"),
        ("SubmitSupportRequest", "FA, UM"),
        ("AcceptDelegation", "FA"),
        ("ValidateDelegation", "FA"),
        ("ListDelegates", "FA, UM, RO"),
        ("DeleteDelegation", "FA"),
    ];

    /// The operations admin-api.md says Convene serves, plus our extensions.
    const API_OPERATIONS: &[&str] = &[
        "CreateAccount",
        "ListAccounts",
        "GetAccount",
        "UpdateAccount",
        "DeleteAccount",
        "GetAccountSettings",
        "UpdateAccountSettings",
        "ListUsers",
        "GetUser",
        "UpdateUser",
        "BatchUpdateUser",
        "InviteUsers",
        "CreateUser",
        "BatchSuspendUser",
        "BatchUnsuspendUser",
        "LogoutUser",
        "ResetPersonalPIN",
        "GetUserSettings",
        "UpdateUserSettings",
        "GetRetentionSettings",
        "PutRetentionSettings",
        "GetGlobalSettings",
        "UpdateGlobalSettings",
        "RemoveUsers",
        "LookupEvents",
        "ListActiveProUsers",
    ];

    fn columns_text(a: &ActionInfo) -> String {
        let mut parts = Vec::new();
        if a.full_access {
            parts.push("FA");
        }
        if a.user_management {
            parts.push("UM");
        }
        if a.read_only {
            parts.push("RO");
        }
        parts.join(", ")
    }

    #[test]
    fn names_are_unique_ignoring_case_and_plain_identifiers() {
        let mut seen = HashSet::new();
        for a in ACTIONS {
            assert!(
                !a.name.is_empty() && a.name.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{:?} is not a plain action name",
                a.name
            );
            assert!(
                seen.insert(a.name.to_ascii_lowercase()),
                "{} is listed twice",
                a.name
            );
        }
    }

    #[test]
    fn full_access_contains_user_management_contains_read_only() {
        for a in ACTIONS {
            assert!(a.full_access, "{}: FullAccess grants everything", a.name);
            assert!(
                !a.read_only || a.user_management,
                "{}: RO but not UM",
                a.name
            );
        }
    }

    #[test]
    fn every_guide_row_is_present_with_the_guide_columns() {
        for &(name, columns) in GUIDE_TABLE {
            let a = lookup(name).unwrap_or_else(|| panic!("guide row {name} missing"));
            assert_eq!(columns_text(a), columns, "{name}");
        }
    }

    #[test]
    fn renamed_actions_point_at_a_guide_row_and_copy_its_columns() {
        for a in ACTIONS {
            let Some(guide_name) = a.guide_name else {
                continue;
            };
            let row = GUIDE_TABLE.iter().find(|(n, _)| *n == guide_name);
            let (_, columns) =
                row.unwrap_or_else(|| panic!("{}: no guide row {guide_name}", a.name));
            assert_eq!(
                columns_text(a),
                *columns,
                "{} (guide: {guide_name})",
                a.name
            );
        }
    }

    #[test]
    fn read_only_actions_are_reads_and_the_guide_keeps_some_reads_out() {
        // LookupEvents is CloudTrail's read verb; see its row.
        const READ_ONLY_WITHOUT_READ_VERB: &[&str] = &["LookupEvents"];
        // List/Get actions the guide grants to FA (and perhaps UM) but not RO.
        const READS_NOT_IN_READ_ONLY: &[&str] = &[
            "GetMeetingDetails",
            "ListMeetingEvents",
            "ListMeetingReports",
            "ListApiKeys",
            "GetAccountWithOpenIdConfig",
        ];
        let is_read = |n: &str| ["List", "Get", "Describe"].iter().any(|v| n.starts_with(v));
        for a in ACTIONS.iter().filter(|a| a.read_only) {
            assert!(
                is_read(a.name) || READ_ONLY_WITHOUT_READ_VERB.contains(&a.name),
                "{} is RO",
                a.name
            );
        }
        let mut excluded: Vec<&str> = ACTIONS
            .iter()
            .filter(|a| is_read(a.name) && !a.read_only)
            .map(|a| a.name)
            .collect();
        excluded.sort_unstable();
        let mut expected = READS_NOT_IN_READ_ONLY.to_vec();
        expected.sort_unstable();
        assert_eq!(excluded, expected);
    }

    #[test]
    fn the_guides_other_actions_and_every_api_operation_are_present() {
        let extra = [
            "ListAccountUsageReportData",
            "GetAccountResource",
            "StartDataExport",
            "RetrieveDataExports",
        ];
        for name in extra.iter().chain(API_OPERATIONS) {
            assert!(lookup(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn judgement_calls_are_as_documented() {
        let cases: &[(&str, &str)] = &[
            ("UpdateAccount", "FA"),
            ("BatchSuspendUser", "FA, UM"),
            ("BatchUnsuspendUser", "FA, UM"),
            ("UpdateUser", "FA, UM"),
            ("BatchUpdateUser", "FA, UM"),
            ("ResetPersonalPIN", "FA, UM"),
            ("CreateUser", "FA, UM"),
            ("RemoveUsers", "FA, UM"),
            ("GetUserSettings", "FA, UM, RO"),
            ("UpdateUserSettings", "FA, UM"),
            ("GetRetentionSettings", "FA, UM, RO"),
            ("PutRetentionSettings", "FA"),
            ("GetGlobalSettings", "FA, UM, RO"),
            ("UpdateGlobalSettings", "FA"),
            ("LookupEvents", "FA, UM, RO"),
            ("StartDataExport", "FA, UM"),
            ("RetrieveDataExports", "FA, UM"),
            ("GetAccountResource", "FA, UM, RO"),
        ];
        for &(name, columns) in cases {
            assert_eq!(columns_text(lookup(name).unwrap()), columns, "{name}");
        }
    }

    #[test]
    fn lookup_ignores_case_and_wants_the_bare_name() {
        assert_eq!(
            lookup("createaccount").map(|a| a.name),
            Some("CreateAccount")
        );
        assert_eq!(
            lookup("ResetPersonalPin").map(|a| a.name),
            Some("ResetPersonalPIN")
        );
        assert_eq!(lookup("chime:CreateAccount"), None);
        assert_eq!(lookup(""), None);
        assert_eq!(lookup("CreateAccount*"), None);
        assert_eq!(
            lookup("ListAccounts").unwrap().qualified_name(),
            "chime:ListAccounts"
        );
    }
}

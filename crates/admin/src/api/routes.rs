//! Which operation a request is: method + path + `?operation=` select exactly one, and each operation
//! is exactly one `chime:` action. Routing is a pure function so a test can enumerate it.

use axum::http::Method;

use crate::model::AccountId;

/// Every operation the admin API serves. Each one is the IAM action `chime:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateAccount,
    ListAccounts,
    GetAccount,
    UpdateAccount,
    DeleteAccount,
    GetAccountSettings,
    UpdateAccountSettings,
    ListUsers,
    CreateUser,
    GetUser,
    UpdateUser,
    ResetPersonalPIN,
    LogoutUser,
    BatchSuspendUser,
    BatchUnsuspendUser,
    RemoveUsers,
    InviteUsers,
    BatchUpdateUser,
    GetUserSettings,
    UpdateUserSettings,
    GetRetentionSettings,
    PutRetentionSettings,
    GetGlobalSettings,
    UpdateGlobalSettings,
    LookupEvents,
    ListAccountUsageReportData,
    ListMeetingReports,
    GetMeetingDetails,
    ListMeetingEvents,
    GetUserActivityReportData,
    ListActiveProUsers,
}

impl Operation {
    pub const ALL: &'static [Operation] = &[
        Self::CreateAccount,
        Self::ListAccounts,
        Self::GetAccount,
        Self::UpdateAccount,
        Self::DeleteAccount,
        Self::GetAccountSettings,
        Self::UpdateAccountSettings,
        Self::ListUsers,
        Self::CreateUser,
        Self::GetUser,
        Self::UpdateUser,
        Self::ResetPersonalPIN,
        Self::LogoutUser,
        Self::BatchSuspendUser,
        Self::BatchUnsuspendUser,
        Self::RemoveUsers,
        Self::InviteUsers,
        Self::BatchUpdateUser,
        Self::GetUserSettings,
        Self::UpdateUserSettings,
        Self::GetRetentionSettings,
        Self::PutRetentionSettings,
        Self::GetGlobalSettings,
        Self::UpdateGlobalSettings,
        Self::LookupEvents,
        Self::ListAccountUsageReportData,
        Self::ListMeetingReports,
        Self::GetMeetingDetails,
        Self::ListMeetingEvents,
        Self::GetUserActivityReportData,
        Self::ListActiveProUsers,
    ];

    /// The action name policies grant or deny (without the `chime:` prefix).
    pub fn action(self) -> &'static str {
        match self {
            Self::CreateAccount => "CreateAccount",
            Self::ListAccounts => "ListAccounts",
            Self::GetAccount => "GetAccount",
            Self::UpdateAccount => "UpdateAccount",
            Self::DeleteAccount => "DeleteAccount",
            Self::GetAccountSettings => "GetAccountSettings",
            Self::UpdateAccountSettings => "UpdateAccountSettings",
            Self::ListUsers => "ListUsers",
            Self::CreateUser => "CreateUser",
            Self::GetUser => "GetUser",
            Self::UpdateUser => "UpdateUser",
            Self::ResetPersonalPIN => "ResetPersonalPIN",
            Self::LogoutUser => "LogoutUser",
            Self::BatchSuspendUser => "BatchSuspendUser",
            Self::BatchUnsuspendUser => "BatchUnsuspendUser",
            Self::RemoveUsers => "RemoveUsers",
            Self::InviteUsers => "InviteUsers",
            Self::BatchUpdateUser => "BatchUpdateUser",
            Self::GetUserSettings => "GetUserSettings",
            Self::UpdateUserSettings => "UpdateUserSettings",
            Self::GetRetentionSettings => "GetRetentionSettings",
            Self::PutRetentionSettings => "PutRetentionSettings",
            Self::GetGlobalSettings => "GetGlobalSettings",
            Self::UpdateGlobalSettings => "UpdateGlobalSettings",
            Self::LookupEvents => "LookupEvents",
            Self::ListAccountUsageReportData => "ListAccountUsageReportData",
            Self::ListMeetingReports => "ListMeetingReports",
            Self::GetMeetingDetails => "GetMeetingDetails",
            Self::ListMeetingEvents => "ListMeetingEvents",
            Self::GetUserActivityReportData => "GetUserActivityReportData",
            Self::ListActiveProUsers => "ListActiveProUsers",
        }
    }

    /// A sample request for each operation (for tests and docs): method, path, query.
    pub fn example(self) -> (Method, &'static str, &'static str) {
        const ACCOUNT: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11";
        const SETTINGS: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/settings";
        const USERS: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/users";
        const USER_SETTINGS: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/users/0b6c2a35-5d0e-4c43-8d7e-3f2f9e1a7c55/settings";
        const RETENTION: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/retention-settings";
        const USER: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/users/0b6c2a35-5d0e-4c43-8d7e-3f2f9e1a7c55";
        const USER_ACTIVITY: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/users/0b6c2a35-5d0e-4c43-8d7e-3f2f9e1a7c55/activity";
        const REPORTS_USAGE: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/reports/usage";
        const REPORTS_ACTIVE_PRO: &str =
            "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/reports/active-pro";
        const REPORTS_MEETINGS: &str =
            "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/reports/meetings";
        const REPORTS_MEETING: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/reports/meetings/5f0e8b1c-2d3a-4b5c-8d9e-0a1b2c3d4e5f";
        const REPORTS_MEETING_EVENTS: &str = "/accounts/7e2b0c8e-1b1f-4c5e-9a51-2f9d7c0b3a11/reports/meetings/5f0e8b1c-2d3a-4b5c-8d9e-0a1b2c3d4e5f/events";
        match self {
            Self::CreateAccount => (Method::POST, "/accounts", ""),
            Self::ListAccounts => (Method::GET, "/accounts", "max-results=5"),
            Self::GetAccount => (Method::GET, ACCOUNT, ""),
            Self::UpdateAccount => (Method::POST, ACCOUNT, ""),
            Self::DeleteAccount => (Method::DELETE, ACCOUNT, ""),
            Self::GetAccountSettings => (Method::GET, SETTINGS, ""),
            Self::UpdateAccountSettings => (Method::PUT, SETTINGS, ""),
            Self::ListUsers => (Method::GET, USERS, ""),
            Self::CreateUser => (Method::POST, USERS, "operation=create"),
            Self::GetUser => (Method::GET, USER, ""),
            Self::UpdateUser => (Method::POST, USER, ""),
            Self::ResetPersonalPIN => (Method::POST, USER, "operation=reset-personal-pin"),
            Self::LogoutUser => (Method::POST, USER, "operation=logout"),
            Self::BatchSuspendUser => (Method::POST, USERS, "operation=suspend"),
            Self::BatchUnsuspendUser => (Method::POST, USERS, "operation=unsuspend"),
            Self::RemoveUsers => (Method::POST, USERS, "operation=remove"),
            Self::InviteUsers => (Method::POST, USERS, "operation=add"),
            Self::BatchUpdateUser => (Method::POST, USERS, ""),
            Self::GetUserSettings => (Method::GET, USER_SETTINGS, ""),
            Self::UpdateUserSettings => (Method::PUT, USER_SETTINGS, ""),
            Self::GetRetentionSettings => (Method::GET, RETENTION, ""),
            Self::PutRetentionSettings => (Method::PUT, RETENTION, ""),
            Self::GetGlobalSettings => (Method::GET, "/settings", ""),
            Self::UpdateGlobalSettings => (Method::PUT, "/settings", ""),
            Self::LookupEvents => (Method::GET, "/audit/events", "event-name=CreateAccount"),
            Self::ListAccountUsageReportData => {
                (Method::GET, REPORTS_USAGE, "from=2026-11-01&to=2026-11-30")
            }
            Self::ListMeetingReports => (Method::GET, REPORTS_MEETINGS, "from=2026-11-01"),
            Self::GetMeetingDetails => (Method::GET, REPORTS_MEETING, ""),
            Self::ListMeetingEvents => (Method::GET, REPORTS_MEETING_EVENTS, ""),
            Self::GetUserActivityReportData => (Method::GET, USER_ACTIVITY, "from=2026-11-01"),
            Self::ListActiveProUsers => (Method::GET, REPORTS_ACTIVE_PRO, "from=2026-11-01"),
        }
    }
}

/// A resolved request: the operation and the ids in its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    pub account: Option<AccountId>,
    /// A user id (a UUID) when the path names one.
    pub user: Option<String>,
    /// A conference id (a UUID) when the path names one.
    pub conference: Option<String>,
}

impl Route {
    /// An operation on the deployment as a whole.
    fn global(operation: Operation) -> Self {
        Self {
            operation,
            account: None,
            user: None,
            conference: None,
        }
    }

    /// An operation on one account.
    fn in_account(operation: Operation, account: AccountId) -> Self {
        Self {
            account: Some(account),
            ..Self::global(operation)
        }
    }

    fn with_user(self, user: String) -> Self {
        Self {
            user: Some(user),
            ..self
        }
    }

    fn with_conference(self, conference: String) -> Self {
        Self {
            conference: Some(conference),
            ..self
        }
    }
}

/// Why a request matches no operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// Nothing lives at this path (404).
    UnknownPath,
    /// The path exists but not with this method or `operation` (400).
    UnknownOperation,
    /// An id in the path is malformed; it cannot exist (404).
    BadId,
}

/// A path segment naming a user or a conference: only a UUID can name one.
fn uuid_id(segment: &str) -> Result<String, NoRoute> {
    uuid::Uuid::parse_str(segment)
        .map(|u| u.to_string())
        .map_err(|_| NoRoute::BadId)
}

fn query_operation(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("operation="))
}

/// Map method, path (already percent-decoded segments are not needed: ids are plain) and query to an
/// operation.
pub fn resolve(method: &Method, path: &str, query: &str) -> Result<Route, NoRoute> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let op = query_operation(query);
    let account = |s: &str| s.parse::<AccountId>().map_err(|()| NoRoute::BadId);
    match segments.as_slice() {
        ["accounts"] => {
            let operation = match (method, op) {
                (&Method::POST, None) => Operation::CreateAccount,
                (&Method::GET, None) => Operation::ListAccounts,
                _ => return Err(NoRoute::UnknownOperation),
            };
            Ok(Route::global(operation))
        }
        ["accounts", id] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetAccount,
                (&Method::POST, None) => Operation::UpdateAccount,
                (&Method::DELETE, None) => Operation::DeleteAccount,
                _ => return Err(NoRoute::UnknownOperation),
            };
            Ok(Route::in_account(operation, account(id)?))
        }
        ["accounts", id, "settings"] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetAccountSettings,
                (&Method::PUT, None) => Operation::UpdateAccountSettings,
                _ => return Err(NoRoute::UnknownOperation),
            };
            Ok(Route::in_account(operation, account(id)?))
        }
        ["accounts", id, "users"] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::ListUsers,
                (&Method::POST, Some("create")) => Operation::CreateUser,
                (&Method::POST, Some("suspend")) => Operation::BatchSuspendUser,
                (&Method::POST, Some("unsuspend")) => Operation::BatchUnsuspendUser,
                (&Method::POST, Some("remove")) => Operation::RemoveUsers,
                (&Method::POST, Some("add")) => Operation::InviteUsers,
                (&Method::POST, None) => Operation::BatchUpdateUser,
                _ => return Err(NoRoute::UnknownOperation),
            };
            Ok(Route::in_account(operation, account(id)?))
        }
        ["accounts", id, "users", user] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetUser,
                (&Method::POST, None) => Operation::UpdateUser,
                (&Method::POST, Some("reset-personal-pin")) => Operation::ResetPersonalPIN,
                (&Method::POST, Some("logout")) => Operation::LogoutUser,
                _ => return Err(NoRoute::UnknownOperation),
            };
            let user = uuid_id(user)?;
            Ok(Route::in_account(operation, account(id)?).with_user(user))
        }
        ["accounts", id, "users", user, "settings"] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetUserSettings,
                (&Method::PUT, None) => Operation::UpdateUserSettings,
                _ => return Err(NoRoute::UnknownOperation),
            };
            let user = uuid_id(user)?;
            Ok(Route::in_account(operation, account(id)?).with_user(user))
        }
        ["accounts", id, "retention-settings"] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetRetentionSettings,
                (&Method::PUT, None) => Operation::PutRetentionSettings,
                _ => return Err(NoRoute::UnknownOperation),
            };
            Ok(Route::in_account(operation, account(id)?))
        }
        ["accounts", id, "reports", report] => {
            let operation = match (method, op, *report) {
                (&Method::GET, None, "usage") => Operation::ListAccountUsageReportData,
                (&Method::GET, None, "meetings") => Operation::ListMeetingReports,
                (&Method::GET, None, "active-pro") => Operation::ListActiveProUsers,
                (_, _, "usage" | "meetings" | "active-pro") => {
                    return Err(NoRoute::UnknownOperation);
                }
                _ => return Err(NoRoute::UnknownPath),
            };
            Ok(Route::in_account(operation, account(id)?))
        }
        ["accounts", id, "reports", "meetings", conference, rest @ ..] => {
            let operation = match (method, op, rest) {
                (&Method::GET, None, []) => Operation::GetMeetingDetails,
                (&Method::GET, None, ["events"]) => Operation::ListMeetingEvents,
                (_, _, [] | ["events"]) => return Err(NoRoute::UnknownOperation),
                _ => return Err(NoRoute::UnknownPath),
            };
            let conference = uuid_id(conference)?;
            Ok(Route::in_account(operation, account(id)?).with_conference(conference))
        }
        ["accounts", id, "users", user, "activity"] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetUserActivityReportData,
                _ => return Err(NoRoute::UnknownOperation),
            };
            let user = uuid_id(user)?;
            Ok(Route::in_account(operation, account(id)?).with_user(user))
        }
        ["audit", "events"] => match (method, op) {
            (&Method::GET, None) => Ok(Route::global(Operation::LookupEvents)),
            _ => Err(NoRoute::UnknownOperation),
        },
        ["settings"] => {
            let operation = match (method, op) {
                (&Method::GET, None) => Operation::GetGlobalSettings,
                (&Method::PUT, None) => Operation::UpdateGlobalSettings,
                _ => return Err(NoRoute::UnknownOperation),
            };
            Ok(Route::global(operation))
        }
        _ => Err(NoRoute::UnknownPath),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_routes_to_itself_and_has_exactly_one_known_action() {
        for &op in Operation::ALL {
            let (method, path, query) = op.example();
            assert_eq!(
                resolve(&method, path, query).map(|r| r.operation),
                Ok(op),
                "{op:?}"
            );
            let action = crate::iam::actions::lookup(op.action());
            assert!(
                action.is_some(),
                "{op:?}: chime:{} is not in the action table",
                op.action()
            );
        }
        let mut actions: Vec<&str> = Operation::ALL.iter().map(|o| o.action()).collect();
        actions.sort();
        actions.dedup();
        assert_eq!(
            actions.len(),
            Operation::ALL.len(),
            "two operations share an action"
        );
    }

    #[test]
    fn unknown_things_are_told_apart() {
        assert_eq!(
            resolve(&Method::GET, "/nope", ""),
            Err(NoRoute::UnknownPath)
        );
        assert_eq!(
            resolve(&Method::PUT, "/accounts", ""),
            Err(NoRoute::UnknownOperation)
        );
        assert_eq!(
            resolve(&Method::POST, "/accounts", "operation=dance"),
            Err(NoRoute::UnknownOperation)
        );
        assert_eq!(
            resolve(&Method::GET, "/accounts/1%20OR%201=1", ""),
            Err(NoRoute::BadId)
        );
    }
}

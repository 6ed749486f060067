//! IAM-style policy documents: parsing, the three managed policies, and the allow/deny decision for
//! one admin-API request.
//!
//! # The subset of IAM we implement
//! - Identity-based policy documents: `Version` ("2012-10-17" or "2008-10-17", optional), `Id`,
//!   `Statement` (one object or an array). Each statement: `Sid`, `Effect` (`Allow` | `Deny`),
//!   exactly one of `Action` / `NotAction`, exactly one of `Resource` / `NotResource` (a string or an
//!   array of strings), and an optional `Condition`. `Principal` / `NotPrincipal` are refused (they
//!   belong to resource-based policies), as is any element IAM does not define.
//! - Evaluation as IAM does it for a single identity: an applicable `Deny` anywhere wins, else an
//!   applicable `Allow`, else the request is implicitly denied.
//! - Actions match case-insensitively with `*` (any run, also empty) and `?` (one character), the
//!   service prefix included (`*`, `chime:*`, `chime:List*`). Resources match the same way but
//!   case-sensitively, as ARNs do; every admin request today is for resource `*`.
//! - Condition operators: `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//!   `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, `IpAddress`, `NotIpAddress`, the six
//!   `Date*` operators, `Bool`, `Null`, and the `...IfExists` form of each but `Null`. Operators in a
//!   statement are ANDed, keys within an operator are ANDed, the values of one key are ORed.
//!   Condition keys compare case-insensitively. The request supplies `aws:SourceIp`,
//!   `aws:CurrentTime`, `aws:EpochTime` and `aws:SecureTransport`; any other key is absent.
//! - A key absent from the request makes a condition false, except, as in IAM, for the negated
//!   operators (`StringNotEquals`, `StringNotEqualsIgnoreCase`, `StringNotLike`, `NotIpAddress`,
//!   `DateNotEquals`), which are true then, for `...IfExists` (true when absent) and for `Null`
//!   (which tests absence). This keeps a guard such as "Deny unless from 10.0.0.0/8" closed when the
//!   source address is unknown.
//!
//! Left out, and refused at parse time rather than ignored: `Numeric*`, `Arn*`, `BinaryEquals` and
//! the `ForAllValues:` / `ForAnyValue:` set qualifiers (no request key of ours is numeric, an ARN or
//! multi-valued). Policy variables (`${aws:username}`) are not substituted: they match literally.
//!
//! # Why it is written here
//! This code decides every admin request, so it is small, pure (no IO, no clock: the caller passes
//! the time) and tested exhaustively below against the admin guide's table. The crates that
//! evaluate IAM conditions come out of AWS emulators and implement IAM's whole condition grammar,
//! far more than we serve; we would rather own this module than audit and track such a dependency
//! on the authorization path.
//!
//! [`PolicyDocument`] validates while it deserializes (`serde_json::from_value::<PolicyDocument>`
//! fails with the [`PolicyError`] message) and serializes back to canonical JSON.
//! [`ManagedPolicy::document`] builds FullAccess, UserManagement and ReadOnly from
//! [`super::actions::ACTIONS`]. [`evaluate`] decides a [`RequestContext`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

use super::actions::{ACTIONS, ActionInfo, SERVICE_PREFIX};

// ---------------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------------

/// A validated policy document. Deserializing (from JSON or a `serde_json::Value`) validates it;
/// serializing writes it back in canonical form (every list an array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct PolicyDocument {
    version: Option<PolicyVersion>,
    id: Option<String>,
    statements: Vec<Statement>,
}

/// The policy language version (`Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `"2012-10-17"`, the current one.
    V2012_10_17,
    /// `"2008-10-17"`, the original one (IAM's default when `Version` is absent).
    V2008_10_17,
}

impl PolicyVersion {
    /// The version as written in a document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2012_10_17 => "2012-10-17",
            Self::V2008_10_17 => "2008-10-17",
        }
    }
}

/// One statement of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    action: Patterns,
    resource: Patterns,
    conditions: Vec<Condition>,
}

/// Whether a statement allows or denies what it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `"Allow"`.
    Allow,
    /// `"Deny"`.
    Deny,
}

/// The patterns of `Action`/`NotAction` or `Resource`/`NotResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    /// `Action` / `Resource`: the statement applies to what any pattern matches.
    Matching(Vec<String>),
    /// `NotAction` / `NotResource`: the statement applies to what no pattern matches.
    NotMatching(Vec<String>),
}

impl Patterns {
    /// The patterns themselves.
    pub fn patterns(&self) -> &[String] {
        match self {
            Self::Matching(p) | Self::NotMatching(p) => p,
        }
    }

    /// Whether the statement applies to `value`.
    fn applies_to(&self, value: &str, ignore_case: bool) -> bool {
        let any = self
            .patterns()
            .iter()
            .any(|p| wildcard_match(p, value, ignore_case));
        match self {
            Self::Matching(_) => any,
            Self::NotMatching(_) => !any,
        }
    }
}

/// One condition: an operator, a key, and the values the key is compared with (ORed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    operator: ConditionOperator,
    if_exists: bool,
    key: String,
    values: Vec<ConditionValue>,
}

/// A condition value as written, and what it means for its operator.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConditionValue {
    raw: String,
    parsed: Parsed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    Text,
    Net(IpNet),
    Time(OffsetDateTime),
    Flag(bool),
}

/// The condition operators Convene implements (each but `Null` also as `...IfExists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionOperator {
    /// Exact, case-sensitive string match.
    StringEquals,
    /// Negated `StringEquals`.
    StringNotEquals,
    /// Exact match ignoring case.
    StringEqualsIgnoreCase,
    /// Negated `StringEqualsIgnoreCase`.
    StringNotEqualsIgnoreCase,
    /// Case-sensitive match with `*` and `?` wildcards.
    StringLike,
    /// Negated `StringLike`.
    StringNotLike,
    /// The address is in one of the CIDR blocks (or equal to one of the addresses).
    IpAddress,
    /// Negated `IpAddress`.
    NotIpAddress,
    /// The same instant.
    DateEquals,
    /// Negated `DateEquals`.
    DateNotEquals,
    /// The request's time is before the value.
    DateLessThan,
    /// ... before or at the value.
    DateLessThanEquals,
    /// ... after the value.
    DateGreaterThan,
    /// ... at or after the value.
    DateGreaterThanEquals,
    /// Boolean match (`"true"` / `"false"` or JSON booleans).
    Bool,
    /// `"true"`: the key is absent; `"false"`: it is present.
    Null,
}

/// What kind of value an operator compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    String,
    Ip,
    Date,
    Flag,
}

impl ConditionOperator {
    /// Every operator.
    pub const ALL: &'static [Self] = &[
        Self::StringEquals,
        Self::StringNotEquals,
        Self::StringEqualsIgnoreCase,
        Self::StringNotEqualsIgnoreCase,
        Self::StringLike,
        Self::StringNotLike,
        Self::IpAddress,
        Self::NotIpAddress,
        Self::DateEquals,
        Self::DateNotEquals,
        Self::DateLessThan,
        Self::DateLessThanEquals,
        Self::DateGreaterThan,
        Self::DateGreaterThanEquals,
        Self::Bool,
        Self::Null,
    ];

    /// The operator's name in a document (without `IfExists`).
    pub fn name(self) -> &'static str {
        match self {
            Self::StringEquals => "StringEquals",
            Self::StringNotEquals => "StringNotEquals",
            Self::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Self::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Self::StringLike => "StringLike",
            Self::StringNotLike => "StringNotLike",
            Self::IpAddress => "IpAddress",
            Self::NotIpAddress => "NotIpAddress",
            Self::DateEquals => "DateEquals",
            Self::DateNotEquals => "DateNotEquals",
            Self::DateLessThan => "DateLessThan",
            Self::DateLessThanEquals => "DateLessThanEquals",
            Self::DateGreaterThan => "DateGreaterThan",
            Self::DateGreaterThanEquals => "DateGreaterThanEquals",
            Self::Bool => "Bool",
            Self::Null => "Null",
        }
    }

    /// Negated operators hold when no value matches, and when the key is absent.
    fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NotIpAddress
                | Self::DateNotEquals
        )
    }

    fn family(self) -> Family {
        match self {
            Self::StringEquals
            | Self::StringNotEquals
            | Self::StringEqualsIgnoreCase
            | Self::StringNotEqualsIgnoreCase
            | Self::StringLike
            | Self::StringNotLike => Family::String,
            Self::IpAddress | Self::NotIpAddress => Family::Ip,
            Self::DateEquals
            | Self::DateNotEquals
            | Self::DateLessThan
            | Self::DateLessThanEquals
            | Self::DateGreaterThan
            | Self::DateGreaterThanEquals => Family::Date,
            Self::Bool | Self::Null => Family::Flag,
        }
    }
}

impl fmt::Display for ConditionOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PolicyDocument {
    /// Parse and validate a JSON policy document.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Validate a policy document already parsed as JSON.
    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        parse_document(value)
    }

    /// The document as canonical JSON (what serializing it writes).
    pub fn to_value(&self) -> Value {
        let mut doc = Map::new();
        if let Some(version) = self.version {
            doc.insert("Version".into(), version.as_str().into());
        }
        if let Some(id) = &self.id {
            doc.insert("Id".into(), id.as_str().into());
        }
        let statements = self.statements.iter().map(Statement::to_value).collect();
        doc.insert("Statement".into(), Value::Array(statements));
        Value::Object(doc)
    }

    /// `Version`, if the document states one.
    pub fn version(&self) -> Option<PolicyVersion> {
        self.version
    }

    /// `Id`, if the document has one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// `Action` / `NotAction` patterns for the `chime` service that match no action in
    /// [`ACTIONS`]: likely typos (IAM accepts them, and so do we; they just never match).
    pub fn unknown_chime_actions(&self) -> Vec<&str> {
        let qualified: Vec<String> = ACTIONS.iter().map(ActionInfo::qualified_name).collect();
        self.statements
            .iter()
            .flat_map(|s| s.action.patterns())
            .map(String::as_str)
            .filter(|p| {
                p.split_once(':')
                    .is_some_and(|(service, _)| service.eq_ignore_ascii_case(SERVICE_PREFIX))
            })
            .filter(|p| !qualified.iter().any(|q| wildcard_match(p, q, true)))
            .collect()
    }
}

impl TryFrom<Value> for PolicyDocument {
    type Error = PolicyError;

    fn try_from(value: Value) -> Result<Self, PolicyError> {
        Self::from_value(&value)
    }
}

impl From<PolicyDocument> for Value {
    fn from(document: PolicyDocument) -> Value {
        document.to_value()
    }
}

impl FromStr for PolicyDocument {
    type Err = PolicyError;

    fn from_str(json: &str) -> Result<Self, PolicyError> {
        Self::parse(json)
    }
}

impl Statement {
    /// `Sid`, if any.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `Effect`.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// `Action` or `NotAction`.
    pub fn action(&self) -> &Patterns {
        &self.action
    }

    /// `Resource` or `NotResource`.
    pub fn resource(&self) -> &Patterns {
        &self.resource
    }

    /// The conditions, all of which must hold for the statement to apply.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether this statement applies to the request (its effect then counts).
    fn applies_to(&self, request: &RequestContext<'_>) -> bool {
        self.action.applies_to(request.action, true)
            && self.resource.applies_to(request.resource, false)
            && self.conditions.iter().all(|c| c.holds(request))
    }

    fn to_value(&self) -> Value {
        let mut s = Map::new();
        if let Some(sid) = &self.sid {
            s.insert("Sid".into(), sid.as_str().into());
        }
        let effect = match self.effect {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        };
        s.insert("Effect".into(), effect.into());
        for (patterns, yes, no) in [
            (&self.action, "Action", "NotAction"),
            (&self.resource, "Resource", "NotResource"),
        ] {
            let name = if matches!(patterns, Patterns::Matching(_)) {
                yes
            } else {
                no
            };
            s.insert(name.into(), patterns.patterns().into());
        }
        if !self.conditions.is_empty() {
            let mut block = Map::new();
            for c in &self.conditions {
                let operator = block
                    .entry(c.operator_name())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(keys) = operator {
                    let values = c
                        .values
                        .iter()
                        .map(|v| Value::String(v.raw.clone()))
                        .collect();
                    keys.insert(c.key.clone(), Value::Array(values));
                }
            }
            s.insert("Condition".into(), Value::Object(block));
        }
        Value::Object(s)
    }
}

impl Condition {
    /// The operator (without `IfExists`).
    pub fn operator(&self) -> ConditionOperator {
        self.operator
    }

    /// Whether the operator was written `...IfExists` (the condition holds when the key is absent).
    pub fn if_exists(&self) -> bool {
        self.if_exists
    }

    /// The condition key as written (compared case-insensitively).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The values as written (JSON booleans and numbers as their text).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|v| v.raw.as_str())
    }

    fn operator_name(&self) -> String {
        let suffix = if self.if_exists { "IfExists" } else { "" };
        format!("{}{suffix}", self.operator.name())
    }

    fn holds(&self, request: &RequestContext<'_>) -> bool {
        let actual = context_value(request, &self.key);
        if self.operator == ConditionOperator::Null {
            let absent = actual.is_none();
            return self.values.iter().any(|v| v.parsed == Parsed::Flag(absent));
        }
        let Some(actual) = actual else {
            return self.if_exists || self.operator.is_negated();
        };
        let text = (self.operator.family() == Family::String)
            .then(|| actual.text())
            .flatten();
        let any = self
            .values
            .iter()
            .any(|v| self.matches(&actual, text.as_deref(), v));
        any != self.operator.is_negated()
    }

    /// Whether one value matches, before negation.
    fn matches(&self, actual: &ContextValue, text: Option<&str>, value: &ConditionValue) -> bool {
        use ConditionOperator as Op;
        match (self.operator, &value.parsed) {
            (Op::StringEquals | Op::StringNotEquals, Parsed::Text) => {
                text == Some(value.raw.as_str())
            }
            (Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase, Parsed::Text) => {
                text.is_some_and(|t| t.to_lowercase() == value.raw.to_lowercase())
            }
            (Op::StringLike | Op::StringNotLike, Parsed::Text) => {
                text.is_some_and(|t| wildcard_match(&value.raw, t, false))
            }
            (Op::IpAddress | Op::NotIpAddress, Parsed::Net(net)) => {
                matches!(actual, ContextValue::Ip(ip) if net.contains(ip))
            }
            (op, Parsed::Time(limit)) => {
                let (ContextValue::Time(t) | ContextValue::Epoch(t)) = actual else {
                    return false;
                };
                match op {
                    Op::DateEquals | Op::DateNotEquals => t == limit,
                    Op::DateLessThan => t < limit,
                    Op::DateLessThanEquals => t <= limit,
                    Op::DateGreaterThan => t > limit,
                    Op::DateGreaterThanEquals => t >= limit,
                    _ => false,
                }
            }
            (Op::Bool, Parsed::Flag(want)) => matches!(actual, ContextValue::Flag(b) if b == want),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a policy document is not valid. Statements are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("policy document is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("policy document must be a JSON object")]
    NotAnObject,
    /// A top-level element IAM does not define.
    #[error("unknown policy element {0:?} (a policy document has Version, Id and Statement)")]
    UnknownElement(String),
    /// `Version` is neither of IAM's two.
    #[error("Version must be \"2012-10-17\" or \"2008-10-17\", not {0}")]
    BadVersion(String),
    /// `Id` is not a string.
    #[error("Id must be a string")]
    BadId,
    /// No `Statement`.
    #[error("policy document has no Statement")]
    MissingStatement,
    /// `Statement` is neither an object nor a non-empty array.
    #[error("Statement must be an object or a non-empty array of objects")]
    BadStatementList,
    /// Statement `number` (from 1) is invalid.
    #[error("statement {number}{}: {problem}", sid_suffix(.sid))]
    Statement {
        /// The statement's position, from 1.
        number: usize,
        /// Its `Sid`, if it has one (to find it in a long document).
        sid: Option<String>,
        /// What is wrong with it.
        problem: StatementError,
    },
}

fn sid_suffix(sid: &Option<String>) -> String {
    sid.as_ref()
        .map(|s| format!(" (Sid {s:?})"))
        .unwrap_or_default()
}

/// What is wrong with one statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The statement is not a JSON object.
    #[error("must be a JSON object")]
    NotAnObject,
    /// An element IAM does not define for statements.
    #[error(
        "unknown element {0:?} (a statement has Sid, Effect, Action or NotAction, Resource or NotResource, Condition)"
    )]
    UnknownElement(String),
    /// `Principal` / `NotPrincipal`: resource-based policies only.
    #[error("{0} is not allowed in an identity-based policy")]
    PrincipalNotAllowed(String),
    /// `Sid` is not a string.
    #[error("Sid must be a string")]
    BadSid,
    /// No `Effect`.
    #[error("Effect is missing (Allow or Deny)")]
    MissingEffect,
    /// `Effect` is not exactly `Allow` or `Deny`.
    #[error("Effect must be Allow or Deny")]
    BadEffect,
    /// Neither `Action` nor `NotAction`.
    #[error("needs Action or NotAction")]
    MissingAction,
    /// Both `Action` and `NotAction`.
    #[error("has both Action and NotAction; use one")]
    BothActionAndNotAction,
    /// Neither `Resource` nor `NotResource`.
    #[error("needs Resource or NotResource")]
    MissingResource,
    /// Both `Resource` and `NotResource`.
    #[error("has both Resource and NotResource; use one")]
    BothResourceAndNotResource,
    /// The element is not a string or a non-empty array of strings.
    #[error("{0} must be a string or a non-empty array of strings")]
    BadPatternList(&'static str),
    /// An action pattern without a service prefix.
    #[error("{element} {pattern:?} must be \"*\" or service:action (e.g. chime:ListAccounts)")]
    BadActionPattern {
        /// `Action` or `NotAction`.
        element: &'static str,
        /// The pattern (shortened if long).
        pattern: String,
    },
    /// A resource pattern that is neither `*` nor an ARN.
    #[error("{element} {pattern:?} must be \"*\" or an ARN (arn:...)")]
    BadResourcePattern {
        /// `Resource` or `NotResource`.
        element: &'static str,
        /// The pattern (shortened if long).
        pattern: String,
    },
    /// `Condition` is not an object of objects.
    #[error("Condition must be an object: operator -> {{ key -> value or [values] }}")]
    BadConditionBlock,
    /// Not an IAM condition operator.
    #[error("unknown condition operator {0:?}")]
    UnknownOperator(String),
    /// An IAM condition operator Convene does not implement.
    #[error(
        "condition operator {0:?} is not supported (supported: String*, IpAddress, NotIpAddress, Date*, Bool, Null, and their IfExists forms)"
    )]
    UnsupportedOperator(String),
    /// An operator whose block is not a non-empty object of keys.
    #[error("Condition {operator}: must be a non-empty object of key -> value or [values]")]
    BadOperatorBlock {
        /// The operator as written.
        operator: String,
    },
    /// A condition key or its values are unusable with the operator.
    #[error("Condition {operator} {key:?}: {reason}")]
    BadConditionValue {
        /// The operator as written.
        operator: String,
        /// The key as written (shortened if long).
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// At most 64 characters of user input for an error message.
fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        s.chars().take(MAX).chain(['…']).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

fn parse_document(value: &Value) -> Result<PolicyDocument, PolicyError> {
    let doc = value.as_object().ok_or(PolicyError::NotAnObject)?;
    if let Some(unknown) = doc
        .keys()
        .find(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
    {
        return Err(PolicyError::UnknownElement(excerpt(unknown)));
    }
    let version = match doc.get("Version") {
        None => None,
        Some(Value::String(v)) if v == "2012-10-17" => Some(PolicyVersion::V2012_10_17),
        Some(Value::String(v)) if v == "2008-10-17" => Some(PolicyVersion::V2008_10_17),
        Some(other) => return Err(PolicyError::BadVersion(excerpt(&other.to_string()))),
    };
    let id = match doc.get("Id") {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(PolicyError::BadId),
    };
    let items: &[Value] = match doc.get("Statement") {
        None => return Err(PolicyError::MissingStatement),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(single @ Value::Object(_)) => std::slice::from_ref(single),
        Some(_) => return Err(PolicyError::BadStatementList),
    };
    let statements = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_statement(item).map_err(|problem| PolicyError::Statement {
                number: i + 1,
                sid: item.get("Sid").and_then(Value::as_str).map(excerpt),
                problem,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(PolicyDocument {
        version,
        id,
        statements,
    })
}

fn parse_statement(value: &Value) -> Result<Statement, StatementError> {
    let s = value.as_object().ok_or(StatementError::NotAnObject)?;
    for key in s.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource"
            | "Condition" => {}
            "Principal" | "NotPrincipal" => {
                return Err(StatementError::PrincipalNotAllowed(key.clone()));
            }
            _ => return Err(StatementError::UnknownElement(excerpt(key))),
        }
    }
    let sid = match s.get("Sid") {
        None => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(_) => return Err(StatementError::BadSid),
    };
    let effect = match s.get("Effect") {
        None => return Err(StatementError::MissingEffect),
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => return Err(StatementError::BadEffect),
    };
    let action = match (s.get("Action"), s.get("NotAction")) {
        (Some(_), Some(_)) => return Err(StatementError::BothActionAndNotAction),
        (None, None) => return Err(StatementError::MissingAction),
        (Some(a), None) => Patterns::Matching(action_patterns("Action", a)?),
        (None, Some(a)) => Patterns::NotMatching(action_patterns("NotAction", a)?),
    };
    let resource = match (s.get("Resource"), s.get("NotResource")) {
        (Some(_), Some(_)) => return Err(StatementError::BothResourceAndNotResource),
        (None, None) => return Err(StatementError::MissingResource),
        (Some(r), None) => Patterns::Matching(resource_patterns("Resource", r)?),
        (None, Some(r)) => Patterns::NotMatching(resource_patterns("NotResource", r)?),
    };
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(block)) => parse_conditions(block)?,
        Some(_) => return Err(StatementError::BadConditionBlock),
    };
    Ok(Statement {
        sid,
        effect,
        action,
        resource,
        conditions,
    })
}

/// A string or a non-empty array of strings.
fn string_list(element: &'static str, value: &Value) -> Result<Vec<String>, StatementError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or(StatementError::BadPatternList(element))
            })
            .collect(),
        _ => Err(StatementError::BadPatternList(element)),
    }
}

fn action_patterns(element: &'static str, value: &Value) -> Result<Vec<String>, StatementError> {
    let patterns = string_list(element, value)?;
    for p in &patterns {
        let well_formed = p == "*"
            || p.split_once(':')
                .is_some_and(|(service, name)| !service.is_empty() && !name.is_empty());
        if !well_formed {
            return Err(StatementError::BadActionPattern {
                element,
                pattern: excerpt(p),
            });
        }
    }
    Ok(patterns)
}

fn resource_patterns(element: &'static str, value: &Value) -> Result<Vec<String>, StatementError> {
    let patterns = string_list(element, value)?;
    if let Some(p) = patterns
        .iter()
        .find(|p| *p != "*" && !p.starts_with("arn:"))
    {
        return Err(StatementError::BadResourcePattern {
            element,
            pattern: excerpt(p),
        });
    }
    Ok(patterns)
}

/// Valid IAM operators we refuse because nothing of ours could satisfy them meaningfully.
const UNSUPPORTED_OPERATORS: &[&str] = &[
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "BinaryEquals",
    "ArnEquals",
    "ArnNotEquals",
    "ArnLike",
    "ArnNotLike",
];

/// `StringEqualsIfExists` -> (StringEquals, true). Operator names are case-sensitive, like every
/// other element name in a policy.
fn parse_operator(name: &str) -> Result<(ConditionOperator, bool), StatementError> {
    if name.starts_with("ForAllValues:") || name.starts_with("ForAnyValue:") {
        return Err(StatementError::UnsupportedOperator(excerpt(name)));
    }
    let (base, if_exists) = match name.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (name, false),
    };
    if let Some(op) = ConditionOperator::ALL.iter().find(|op| op.name() == base) {
        if *op == ConditionOperator::Null && if_exists {
            return Err(StatementError::UnknownOperator(excerpt(name)));
        }
        return Ok((*op, if_exists));
    }
    if UNSUPPORTED_OPERATORS.contains(&base) {
        return Err(StatementError::UnsupportedOperator(excerpt(name)));
    }
    Err(StatementError::UnknownOperator(excerpt(name)))
}

fn parse_conditions(block: &Map<String, Value>) -> Result<Vec<Condition>, StatementError> {
    let mut conditions = Vec::new();
    for (operator_name, keys) in block {
        let (operator, if_exists) = parse_operator(operator_name)?;
        let keys = match keys {
            Value::Object(keys) if !keys.is_empty() => keys,
            _ => {
                return Err(StatementError::BadOperatorBlock {
                    operator: excerpt(operator_name),
                });
            }
        };
        for (key, values) in keys {
            let bad = |reason: String| StatementError::BadConditionValue {
                operator: excerpt(operator_name),
                key: excerpt(key),
                reason,
            };
            if key.is_empty() {
                return Err(bad("the condition key is empty".into()));
            }
            let raw = condition_texts(values).ok_or_else(|| {
                bad(
                    "values must be strings, booleans or numbers, or a non-empty array of them"
                        .into(),
                )
            })?;
            let values = raw
                .into_iter()
                .map(|raw| match parse_value(operator.family(), &raw) {
                    Ok(parsed) => Ok(ConditionValue { raw, parsed }),
                    Err(reason) => Err(bad(reason)),
                })
                .collect::<Result<_, _>>()?;
            conditions.push(Condition {
                operator,
                if_exists,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(conditions)
}

/// A condition's values as text: a scalar or a non-empty array of scalars.
fn condition_texts(value: &Value) -> Option<Vec<String>> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(scalar).collect(),
        Value::Array(_) => None,
        v => scalar(v).map(|s| vec![s]),
    }
}

fn parse_value(family: Family, raw: &str) -> Result<Parsed, String> {
    match family {
        Family::String => Ok(Parsed::Text),
        Family::Ip => parse_net(raw)
            .map(Parsed::Net)
            .ok_or_else(|| format!("{:?} is not an IP address or CIDR block", excerpt(raw))),
        Family::Date => parse_time(raw).map(Parsed::Time).ok_or_else(|| {
            format!(
                "{:?} is not an ISO 8601 date-time (2026-01-31T00:00:00Z) or epoch seconds",
                excerpt(raw)
            )
        }),
        Family::Flag => parse_flag(raw)
            .map(Parsed::Flag)
            .ok_or_else(|| format!("{:?} is not true or false", excerpt(raw))),
    }
}

/// `192.0.2.0/24`, `2001:db8::/32`, or a single address (a /32 or /128).
fn parse_net(raw: &str) -> Option<IpNet> {
    raw.parse::<IpNet>()
        .ok()
        .or_else(|| raw.parse::<IpAddr>().ok().map(IpNet::from))
}

/// RFC 3339 / ISO 8601 with an offset (`2026-01-31T00:00:00Z`), a date (`2026-01-31`, midnight
/// UTC), or whole seconds since the Unix epoch.
fn parse_time(raw: &str) -> Option<OffsetDateTime> {
    if !raw.is_empty() && raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return OffsetDateTime::from_unix_timestamp(raw.parse().ok()?).ok();
    }
    OffsetDateTime::parse(raw, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(raw, &Iso8601::DEFAULT))
        .ok()
        .or_else(|| {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(raw, format)
                .ok()
                .map(|d| d.midnight().assume_utc())
        })
}

fn parse_flag(raw: &str) -> Option<bool> {
    if raw.eq_ignore_ascii_case("true") {
        Some(true)
    } else if raw.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Matching and evaluation
// ---------------------------------------------------------------------------------------------

/// Match `text` against `pattern`: `*` any run of characters (also none), `?` exactly one.
/// Linear backtracking on the last `*`, so no input is slow.
fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| a == b || (ignore_case && a.to_lowercase().eq(b.to_lowercase()));
    let (mut pi, mut ti) = (0, 0);
    // After the last `*` seen: its position in the pattern and where in the text it started.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if p.get(pi).is_some_and(|&c| c == '?' || same(c, t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The request being authorized.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The action, service prefix included: `"chime:CreateAccount"`.
    pub action: &'a str,
    /// The resource: `"*"` today, an ARN-like string when resources get names.
    pub resource: &'a str,
    /// The caller's address (`aws:SourceIp`); absent when unknown.
    pub source_ip: Option<IpAddr>,
    /// The time of the request (`aws:CurrentTime`, `aws:EpochTime`).
    pub current_time: OffsetDateTime,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
}

/// A request's value for one condition key.
enum ContextValue {
    Ip(IpAddr),
    Time(OffsetDateTime),
    Epoch(OffsetDateTime),
    Flag(bool),
}

impl ContextValue {
    /// The value as string operators see it.
    fn text(&self) -> Option<String> {
        match self {
            Self::Ip(ip) => Some(ip.to_string()),
            Self::Time(t) => t.format(&Rfc3339).ok(),
            Self::Epoch(t) => Some(t.unix_timestamp().to_string()),
            Self::Flag(b) => Some(b.to_string()),
        }
    }
}

/// The request's value for `key` (case-insensitive), if the request has one.
fn context_value(request: &RequestContext<'_>, key: &str) -> Option<ContextValue> {
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        // A dual-stack listener reports IPv4 callers as ::ffff:a.b.c.d; policies name them as IPv4.
        "aws:sourceip" => request
            .source_ip
            .map(|ip| ContextValue::Ip(ip.to_canonical())),
        "aws:currenttime" => Some(ContextValue::Time(request.current_time)),
        "aws:epochtime" => Some(ContextValue::Epoch(request.current_time)),
        "aws:securetransport" => Some(ContextValue::Flag(request.secure_transport)),
        _ => None,
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// An applicable statement allows the request and none denies it.
    Allow,
    /// An applicable statement denies the request.
    ExplicitDeny,
    /// No applicable statement allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }
}

/// Decide `request` against all of a principal's policies: an applicable `Deny` in any document
/// wins, else an applicable `Allow`, else the request is implicitly denied.
pub fn evaluate(policies: &[&PolicyDocument], request: &RequestContext<'_>) -> Decision {
    let mut allowed = false;
    for statement in policies.iter().flat_map(|p| &p.statements) {
        if statement.applies_to(request) {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

// ---------------------------------------------------------------------------------------------
// Managed policies
// ---------------------------------------------------------------------------------------------

/// The admin guide's three managed policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManagedPolicy {
    /// `AmazonChimeFullAccess`: every action.
    FullAccess,
    /// `AmazonChimeUserManagement`: user management and reading settings and configuration.
    UserManagement,
    /// `AmazonChimeReadOnly`: reading configuration.
    ReadOnly,
}

impl ManagedPolicy {
    /// All three.
    pub const ALL: [Self; 3] = [Self::FullAccess, Self::UserManagement, Self::ReadOnly];

    /// Convene's name: `FullAccess`, `UserManagement`, `ReadOnly`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FullAccess => "FullAccess",
            Self::UserManagement => "UserManagement",
            Self::ReadOnly => "ReadOnly",
        }
    }

    /// AWS's name: `AmazonChimeFullAccess`, ...
    pub fn aws_name(self) -> &'static str {
        match self {
            Self::FullAccess => "AmazonChimeFullAccess",
            Self::UserManagement => "AmazonChimeUserManagement",
            Self::ReadOnly => "AmazonChimeReadOnly",
        }
    }

    /// Whether this policy grants `action` (its column in [`ACTIONS`]).
    pub fn grants(self, action: &ActionInfo) -> bool {
        match self {
            Self::FullAccess => action.full_access,
            Self::UserManagement => action.user_management,
            Self::ReadOnly => action.read_only,
        }
    }

    /// The policy as a document: one `Allow` statement listing each action it grants, resource `*`.
    pub fn document(self) -> PolicyDocument {
        let actions = ACTIONS
            .iter()
            .filter(|a| self.grants(a))
            .map(ActionInfo::qualified_name)
            .collect();
        PolicyDocument {
            version: Some(PolicyVersion::V2012_10_17),
            id: None,
            statements: vec![Statement {
                sid: Some(format!("Convene{}", self.name())),
                effect: Effect::Allow,
                action: Patterns::Matching(actions),
                resource: Patterns::Matching(vec!["*".into()]),
                conditions: Vec::new(),
            }],
        }
    }
}

impl fmt::Display for ManagedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a managed policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no managed policy {0:?} (FullAccess, UserManagement, ReadOnly, or AWS's AmazonChime... names)"
)]
pub struct UnknownManagedPolicy(pub String);

impl FromStr for ManagedPolicy {
    type Err = UnknownManagedPolicy;

    /// `FullAccess`, `AmazonChimeFullAccess` or `arn:aws:iam::aws:policy/AmazonChimeFullAccess`
    /// (likewise for the other two); case-sensitive, as IAM names are.
    fn from_str(s: &str) -> Result<Self, UnknownManagedPolicy> {
        let name = s.strip_prefix("arn:aws:iam::aws:policy/").unwrap_or(s);
        Self::ALL
            .into_iter()
            .find(|p| name == p.aws_name() || (name == s && name == p.name()))
            .ok_or_else(|| UnknownManagedPolicy(excerpt(s)))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use time::macros::datetime;

    /// A table of cases, one per line (rustfmt leaves macro input alone):
    /// `table![a, b => c; ...]` is `vec![(a, b, c), ...]`, `table![a => b; ...]` is `vec![(a, b), ...]`.
    macro_rules! table {
        ($($a:expr, $b:expr => $c:expr;)*) => { vec![$(($a, $b, $c)),*] };
        ($($a:expr => $b:expr;)*) => { vec![$(($a, $b)),*] };
    }

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);

    fn request(action: &str) -> RequestContext<'_> {
        RequestContext {
            action,
            resource: "*",
            source_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            current_time: NOW,
            secure_transport: true,
        }
    }

    fn doc(value: Value) -> PolicyDocument {
        PolicyDocument::from_value(&value).unwrap_or_else(|e| panic!("{e}: {value}"))
    }

    fn allow(action: Value) -> PolicyDocument {
        doc(
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": action, "Resource": "*"}}),
        )
    }

    fn decide(policies: &[&PolicyDocument], action: &str) -> Decision {
        evaluate(policies, &request(action))
    }

    // ---- managed policies ----

    #[test]
    fn managed_policies_grant_exactly_their_column() {
        for policy in ManagedPolicy::ALL {
            let document = policy.document();
            for a in ACTIONS {
                let want = if policy.grants(a) {
                    Decision::Allow
                } else {
                    Decision::ImplicitDeny
                };
                for spelling in [
                    a.qualified_name(),
                    a.qualified_name().to_lowercase(),
                    a.qualified_name().to_uppercase(),
                ] {
                    assert_eq!(decide(&[&document], &spelling), want, "{policy} {spelling}");
                }
            }
            for other in [
                "chime:NoSuchAction",
                "s3:GetObject",
                "chime:",
                "",
                "*",
                "chime:*",
            ] {
                assert_eq!(
                    decide(&[&document], other),
                    Decision::ImplicitDeny,
                    "{policy} {other}"
                );
            }
            assert!(document.unknown_chime_actions().is_empty());
        }
    }

    #[test]
    fn managed_policy_columns_are_the_tables() {
        for a in ACTIONS {
            assert!(ManagedPolicy::FullAccess.grants(a));
            assert_eq!(ManagedPolicy::UserManagement.grants(a), a.user_management);
            assert_eq!(ManagedPolicy::ReadOnly.grants(a), a.read_only);
        }
        // Spot checks straight from the guide: reads it keeps out of ReadOnly.
        let ro = ManagedPolicy::ReadOnly.document();
        let um = ManagedPolicy::UserManagement.document();
        assert_eq!(
            decide(&[&ro], "chime:GetMeetingDetails"),
            Decision::ImplicitDeny
        );
        assert_eq!(decide(&[&um], "chime:GetMeetingDetails"), Decision::Allow);
        assert_eq!(decide(&[&um], "chime:ListApiKeys"), Decision::ImplicitDeny);
        assert_eq!(decide(&[&ro], "chime:ListAccounts"), Decision::Allow);
        assert_eq!(
            decide(&[&um], "chime:DeleteAccount"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn managed_policy_names() {
        let cases = [
            ("FullAccess", Some(ManagedPolicy::FullAccess)),
            ("UserManagement", Some(ManagedPolicy::UserManagement)),
            ("ReadOnly", Some(ManagedPolicy::ReadOnly)),
            ("AmazonChimeFullAccess", Some(ManagedPolicy::FullAccess)),
            (
                "AmazonChimeUserManagement",
                Some(ManagedPolicy::UserManagement),
            ),
            ("AmazonChimeReadOnly", Some(ManagedPolicy::ReadOnly)),
            (
                "arn:aws:iam::aws:policy/AmazonChimeReadOnly",
                Some(ManagedPolicy::ReadOnly),
            ),
            ("arn:aws:iam::aws:policy/ReadOnly", None),
            ("readonly", None),
            ("Readonly", None),
            ("", None),
            ("policy.json", None),
        ];
        for (name, want) in cases {
            assert_eq!(name.parse::<ManagedPolicy>().ok(), want, "{name:?}");
        }
        for p in ManagedPolicy::ALL {
            assert_eq!(p.to_string().parse::<ManagedPolicy>(), Ok(p));
        }
        let e = "nope".parse::<ManagedPolicy>().unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }

    #[test]
    fn documents_round_trip_through_serde() {
        let mut documents: Vec<PolicyDocument> =
            ManagedPolicy::ALL.iter().map(|p| p.document()).collect();
        documents.push(doc(json!({
            "Version": "2008-10-17",
            "Id": "mixed",
            "Statement": [
                {"Sid": "a", "Effect": "Deny", "NotAction": "chime:List*", "NotResource": ["arn:aws:chime::1:x"]},
                {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {
                    "IpAddress": {"aws:SourceIp": ["10.0.0.1", "2001:db8::/32"]},
                    "Bool": {"aws:SecureTransport": true},
                    "DateLessThanIfExists": {"aws:CurrentTime": 1767225600},
                    "StringLike": {"AWS:SOURCEIP": "192.*", "aws:SourceIp": "10.*"}
                }}
            ]
        })));
        for d in documents {
            let value = serde_json::to_value(&d).unwrap();
            assert_eq!(
                serde_json::from_value::<PolicyDocument>(value.clone()).unwrap(),
                d,
                "{value}"
            );
            let text = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<PolicyDocument>(&text).unwrap(), d);
            assert_eq!(text.parse::<PolicyDocument>().unwrap(), d);
        }
    }

    #[test]
    fn serde_reports_the_validation_message() {
        let value = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Effect": "Maybe"}]});
        let e = serde_json::from_value::<PolicyDocument>(value).unwrap_err();
        assert_eq!(e.to_string(), "statement 2: Effect must be Allow or Deny");
    }

    // ---- evaluation ----

    #[test]
    fn explicit_deny_beats_allow_across_documents() {
        let full = ManagedPolicy::FullAccess.document();
        let deny = doc(
            json!({"Statement": [{"Effect": "Deny", "Action": ["chime:Delete*"], "Resource": "*"}]}),
        );
        for order in [[&full, &deny], [&deny, &full]] {
            assert_eq!(
                decide(&order, "chime:DeleteAccount"),
                Decision::ExplicitDeny
            );
            assert_eq!(
                decide(&order, "chime:deleteaccount"),
                Decision::ExplicitDeny
            );
            assert_eq!(decide(&order, "chime:CreateAccount"), Decision::Allow);
        }
        assert_eq!(
            decide(&[&deny], "chime:CreateAccount"),
            Decision::ImplicitDeny
        );
        assert_eq!(decide(&[&deny], "chime:DeleteUser"), Decision::ExplicitDeny);
        assert_eq!(decide(&[], "chime:ListAccounts"), Decision::ImplicitDeny);
        assert!(Decision::Allow.is_allowed());
        assert!(!Decision::ExplicitDeny.is_allowed() && !Decision::ImplicitDeny.is_allowed());
    }

    #[test]
    fn deny_within_one_document_wins_regardless_of_order() {
        let d = doc(json!({"Statement": [
            {"Effect": "Deny", "Action": "chime:GetUser", "Resource": "*"},
            {"Effect": "Allow", "Action": "chime:*", "Resource": "*"},
        ]}));
        assert_eq!(decide(&[&d], "chime:GetUser"), Decision::ExplicitDeny);
        assert_eq!(decide(&[&d], "chime:GetUserSettings"), Decision::Allow);
    }

    #[test]
    fn not_action() {
        let all_but_deletes = doc(
            json!({"Statement": {"Effect": "Allow", "NotAction": "chime:Delete*", "Resource": "*"}}),
        );
        assert_eq!(
            decide(&[&all_but_deletes], "chime:CreateAccount"),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&all_but_deletes], "chime:DeleteAccount"),
            Decision::ImplicitDeny
        );
        // NotAction is "everything else", other services included.
        assert_eq!(decide(&[&all_but_deletes], "s3:GetObject"), Decision::Allow);

        let full = ManagedPolicy::FullAccess.document();
        let only_reads = doc(
            json!({"Statement": {"Effect": "Deny", "NotAction": ["chime:List*", "chime:Get*"], "Resource": "*"}}),
        );
        for a in ACTIONS {
            let read = a.name.starts_with("List") || a.name.starts_with("Get");
            let want = if read {
                Decision::Allow
            } else {
                Decision::ExplicitDeny
            };
            assert_eq!(
                decide(&[&full, &only_reads], &a.qualified_name()),
                want,
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn action_wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "chime:CreateAccount", true),
            ("chime:*", "chime:CreateAccount", true),
            ("CHIME:*", "chime:CreateAccount", true),
            ("*:CreateAccount", "chime:CreateAccount", true),
            ("chime:*Account*", "chime:CreateAccount", true),
            ("chime:*Account*", "chime:GetAccountSettings", true),
            ("chime:*Account*", "chime:ListAccounts", true),
            ("chime:*Account*", "chime:ListUsers", false),
            ("chime:Get?ser", "chime:GetUser", true),
            ("chime:get?SER", "chime:GetUser", true),
            ("chime:Get?ser", "chime:GetUsers", false),
            ("chime:Get?ser", "chime:Getser", false),
            ("chime:Get?ser", "chime:GetUserByEmail", false),
            ("chime:List*", "chime:List", true),
            ("chime:List*", "chime:ListUsers", true),
            ("chime:List*", "chime:GetUser", false),
            ("chime:list*", "CHIME:LISTUSERS", true),
            ("chime:**", "chime:ListUsers", true),
            ("chime:*s", "chime:ListUsers", true),
            ("chime:*s", "chime:GetUser", false),
            ("chime:??stUsers", "chime:ListUsers", true),
            ("chime:ListUsers?", "chime:ListUsers", false),
            ("chime:*User*User*", "chime:BatchUpdateUser", false),
            ("chime:*Update*User", "chime:BatchUpdateUser", true),
            ("chime:ListUsers", "chime:ListUser", false),
            ("chime:ListUser", "chime:ListUsers", false),
            ("s3:*", "chime:ListUsers", false),
            ("chime*:List*", "chime:ListUsers", true),
            ("chime:ListUsers", "chimeX:ListUsers", false),
        ];
        for &(pattern, action, want) in cases {
            let d = allow(json!(pattern));
            let got = decide(&[&d], action) == Decision::Allow;
            assert_eq!(got, want, "{pattern} vs {action}");
        }
    }

    #[test]
    fn wildcard_matcher_corners() {
        let cases: &[(&str, &str, bool, bool)] = &[
            ("", "", false, true),
            ("", "a", false, false),
            ("*", "", false, true),
            ("?", "", false, false),
            ("a*b*c", "aXbYbZc", false, true),
            ("a*b*c", "aXbYbZ", false, false),
            ("*a", "bbbba", false, true),
            (
                "a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
                false,
            ),
            ("é?", "Éx", true, true),
            ("é?", "Éx", false, false),
            ("ab", "AB", false, false),
            ("a?c", "a€c", false, true),
        ];
        for &(p, t, ic, want) in cases {
            assert_eq!(
                wildcard_match(p, t, ic),
                want,
                "{p:?} {t:?} ignore_case={ic}"
            );
        }
    }

    #[test]
    fn resources() {
        let meeting = "arn:aws:chime::123456789012:meeting/abc";
        let cases: Vec<(Value, &str, bool)> = table![
            json!({"Resource": "*"}), "*" => true;
            json!({"Resource": "*"}), meeting => true;
            json!({"Resource": "arn:aws:chime::123456789012:meeting/*"}), meeting => true;
            json!({"Resource": "arn:aws:chime::123456789012:meeting/*"}), "*" => false;
            json!({"Resource": "arn:aws:chime::123456789012:Meeting/*"}), meeting => false;
            json!({"Resource": ["arn:aws:chime::1:x", "arn:aws:chime:*:*:meeting/a?c"]}), meeting => true;
            json!({"NotResource": "arn:aws:chime::123456789012:meeting/*"}), meeting => false;
            json!({"NotResource": "arn:aws:chime::123456789012:meeting/*"}), "*" => true;
        ];
        for (resource, requested, want) in cases {
            let mut statement = json!({"Effect": "Allow", "Action": "chime:*"});
            if let (Some(s), Some(r)) = (statement.as_object_mut(), resource.as_object()) {
                s.extend(r.clone());
            }
            let d = doc(json!({ "Statement": statement }));
            let mut r = request("chime:GetUser");
            r.resource = requested;
            assert_eq!(
                evaluate(&[&d], &r) == Decision::Allow,
                want,
                "{resource} vs {requested}"
            );
        }
    }

    // ---- conditions ----

    /// How a test changes the default request (192.0.2.7, 2026-03-01T12:00:00Z, TLS).
    #[derive(Clone, Copy)]
    enum Ctx {
        Default,
        NoIp,
        Ip(&'static str),
        Plain,
        At(OffsetDateTime),
    }

    fn holds(condition: Value, ctx: Ctx) -> bool {
        let d = doc(json!({"Statement": {
            "Effect": "Allow", "Action": "chime:ListUsers", "Resource": "*", "Condition": condition
        }}));
        let mut r = request("chime:ListUsers");
        match ctx {
            Ctx::Default => {}
            Ctx::NoIp => r.source_ip = None,
            Ctx::Ip(ip) => r.source_ip = Some(ip.parse().unwrap()),
            Ctx::Plain => r.secure_transport = false,
            Ctx::At(t) => r.current_time = t,
        }
        evaluate(&[&d], &r) == Decision::Allow
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn condition_operators() {
        use Ctx::*;
        let day = json!({
            "DateGreaterThan": {"aws:CurrentTime": "2026-03-01T00:00:00Z"},
            "DateLessThan": {"aws:CurrentTime": "2026-03-02T00:00:00Z"}
        });
        let cases: Vec<(Value, Ctx, bool)> = table![
            // StringEquals / StringNotEquals: case-sensitive, values ORed.
            json!({"StringEquals": {"aws:SourceIp": "192.0.2.7"}}), Default => true;
            json!({"StringEquals": {"aws:SourceIp": ["10.0.0.1", "192.0.2.7"]}}), Default => true;
            json!({"StringEquals": {"aws:SourceIp": "192.0.2.8"}}), Default => false;
            json!({"StringEquals": {"aws:SourceIp": "192.0.2.7"}}), NoIp => false;
            json!({"StringEquals": {"aws:SecureTransport": "true"}}), Default => true;
            json!({"StringEquals": {"aws:SecureTransport": "TRUE"}}), Default => false;
            json!({"StringNotEquals": {"aws:SourceIp": "192.0.2.7"}}), Default => false;
            json!({"StringNotEquals": {"aws:SourceIp": ["10.0.0.1", "192.0.2.8"]}}), Default => true;
            json!({"StringNotEquals": {"aws:SourceIp": "192.0.2.7"}}), NoIp => true;
            // ...IgnoreCase.
            json!({"StringEqualsIgnoreCase": {"aws:SecureTransport": "TRUE"}}), Default => true;
            json!({"StringEqualsIgnoreCase": {"aws:SecureTransport": "TRUE"}}), Plain => false;
            json!({"StringNotEqualsIgnoreCase": {"aws:SecureTransport": "TRUE"}}), Plain => true;
            json!({"StringNotEqualsIgnoreCase": {"aws:SecureTransport": "TRUE"}}), Default => false;
            // StringLike / StringNotLike: wildcards, case-sensitive.
            json!({"StringLike": {"aws:SourceIp": "192.0.2.*"}}), Default => true;
            json!({"StringLike": {"aws:SourceIp": "192.0.2.?"}}), Default => true;
            json!({"StringLike": {"aws:SourceIp": "10.*"}}), Default => false;
            json!({"StringLike": {"aws:CurrentTime": "2026-03-01T*"}}), Default => true;
            json!({"StringLike": {"aws:CurrentTime": "2026-03-01t*"}}), Default => false;
            json!({"StringLike": {"aws:EpochTime": "17*"}}), Default => true;
            json!({"StringLike": {"aws:SourceIp": "*"}}), NoIp => false;
            json!({"StringNotLike": {"aws:SourceIp": "10.*"}}), Default => true;
            json!({"StringNotLike": {"aws:SourceIp": ["10.*", "192.*"]}}), Default => false;
            json!({"StringNotLike": {"aws:SourceIp": "10.*"}}), NoIp => true;
            // IpAddress / NotIpAddress, v4 and v6, single addresses and CIDR blocks.
            json!({"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}), Default => true;
            json!({"IpAddress": {"aws:SourceIp": "192.0.2.7"}}), Default => true;
            json!({"IpAddress": {"aws:SourceIp": "192.0.2.8"}}), Default => false;
            json!({"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}}), Default => false;
            json!({"IpAddress": {"aws:SourceIp": ["198.51.100.0/24", "192.0.0.0/8"]}}), Default => true;
            json!({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}), NoIp => false;
            json!({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}), Ip("2001:db8:1::5") => true;
            json!({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}), Ip("2001:db9::5") => false;
            json!({"IpAddress": {"aws:SourceIp": "2001:db8::5"}}), Ip("2001:db8::5") => true;
            json!({"IpAddress": {"aws:SourceIp": "2001:db8::5/128"}}), Ip("2001:db8::6") => false;
            json!({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}), Default => false;
            json!({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}), Ip("2001:db8::5") => false;
            json!({"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}), Ip("::ffff:192.0.2.9") => true;
            json!({"IpAddress": {"aws:SourceIp": "::/0"}}), Ip("10.1.2.3") => false;
            json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), Default => true;
            json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), Ip("10.9.9.9") => false;
            json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}), Default => false;
            json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), NoIp => true;
            json!({"NotIpAddress": {"aws:SourceIp": "2001:db8::/32"}}), Ip("2001:db8::1") => false;
            json!({"NotIpAddress": {"aws:SourceIp": "2001:db8::/32"}}), Ip("2001:db9::1") => true;
            // Date*: NOW is 2026-03-01T12:00:00Z (epoch 1772366400).
            json!({"DateEquals": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}}), Default => true;
            json!({"DateEquals": {"aws:CurrentTime": "2026-03-01T13:00:00+01:00"}}), Default => true;
            json!({"DateEquals": {"aws:CurrentTime": "2026-03-01T12:00:01Z"}}), Default => false;
            json!({"DateEquals": {"aws:CurrentTime": "2026-03-01T12:00Z"}}), Default => true;
            json!({"DateEquals": {"aws:CurrentTime": "20260301T120000Z"}}), Default => true;
            json!({"DateEquals": {"aws:CurrentTime": 1772366400}}), Default => true;
            json!({"DateEquals": {"aws:EpochTime": "1772366400"}}), Default => true;
            json!({"DateNotEquals": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}}), Default => false;
            json!({"DateNotEquals": {"aws:CurrentTime": "2026-03-01T12:00:01Z"}}), Default => true;
            json!({"DateLessThan": {"aws:CurrentTime": "2026-06-01T00:00:00Z"}}), Default => true;
            json!({"DateLessThan": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}}), Default => false;
            json!({"DateLessThan": {"aws:CurrentTime": "2026-01-01"}}), Default => false;
            json!({"DateLessThan": {"aws:CurrentTime": "2026-03-02"}}), Default => true;
            json!({"DateLessThanEquals": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}}), Default => true;
            json!({"DateLessThanEquals": {"aws:CurrentTime": "2026-03-01T11:59:59Z"}}), Default => false;
            json!({"DateGreaterThan": {"aws:CurrentTime": "2026-03-01T11:59:59Z"}}), Default => true;
            json!({"DateGreaterThan": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}}), Default => false;
            json!({"DateGreaterThanEquals": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}}), Default => true;
            json!({"DateGreaterThanEquals": {"aws:CurrentTime": "2026-03-01T12:00:00.5Z"}}), Default => false;
            json!({"DateGreaterThan": {"aws:EpochTime": 1772366399}}), Default => true;
            day.clone(), At(datetime!(2026-03-01 23:59:59 UTC)) => true;
            day.clone(), At(datetime!(2026-03-02 00:00:00 UTC)) => false;
            json!({"DateLessThan": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}), Default => false;
            json!({"DateNotEquals": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}), Default => true;
            // Bool: strings (any case) or JSON booleans.
            json!({"Bool": {"aws:SecureTransport": "true"}}), Default => true;
            json!({"Bool": {"aws:SecureTransport": true}}), Default => true;
            json!({"Bool": {"aws:SecureTransport": "True"}}), Default => true;
            json!({"Bool": {"aws:SecureTransport": "true"}}), Plain => false;
            json!({"Bool": {"aws:SecureTransport": false}}), Plain => true;
            json!({"Bool": {"aws:SecureTransport": "FALSE"}}), Default => false;
            json!({"Bool": {"aws:SecureTransport": [false, true]}}), Plain => true;
            json!({"Bool": {"aws:MultiFactorAuthPresent": "true"}}), Default => false;
            json!({"Bool": {"aws:SourceIp": "true"}}), Default => false;
            // Null tests presence.
            json!({"Null": {"aws:SourceIp": "true"}}), NoIp => true;
            json!({"Null": {"aws:SourceIp": "true"}}), Default => false;
            json!({"Null": {"aws:SourceIp": false}}), Default => true;
            json!({"Null": {"aws:SourceIp": "false"}}), NoIp => false;
            json!({"Null": {"aws:PrincipalTag/team": "true"}}), Default => true;
            // ...IfExists: true when absent, the operator otherwise.
            json!({"StringEqualsIfExists": {"aws:SourceIp": "10.0.0.1"}}), NoIp => true;
            json!({"StringEqualsIfExists": {"aws:SourceIp": "10.0.0.1"}}), Default => false;
            json!({"IpAddressIfExists": {"aws:SourceIp": "192.0.2.0/24"}}), NoIp => true;
            json!({"IpAddressIfExists": {"aws:SourceIp": "192.0.2.0/24"}}), Default => true;
            json!({"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}}), Default => false;
            json!({"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}), Default => true;
            json!({"DateLessThanIfExists": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}), Default => false;
            // Keys compare case-insensitively.
            json!({"IpAddress": {"AWS:SOURCEIP": "192.0.2.0/24"}}), Default => true;
            json!({"Bool": {"Aws:SecureTransport": "true"}}), Default => true;
            json!({"DateLessThan": {"AWS:CURRENTTIME": "2030-01-01T00:00:00Z"}}), Default => true;
            // Keys the request does not have: false, negated operators true.
            json!({"StringEquals": {"aws:PrincipalTag/team": "ops"}}), Default => false;
            json!({"StringNotEquals": {"aws:PrincipalTag/team": "ops"}}), Default => true;
            json!({"StringLike": {"chime:Whatever": "*"}}), Default => false;
            // Operators AND, keys within one operator AND.
            json!({"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}, "Bool": {"aws:SecureTransport": "true"}}), Default => true;
            json!({"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}, "Bool": {"aws:SecureTransport": "true"}}), Plain => false;
            json!({"StringLike": {"aws:SourceIp": "192.*", "aws:SecureTransport": "t*"}}), Default => true;
            json!({"StringLike": {"aws:SourceIp": "192.*", "aws:SecureTransport": "f*"}}), Default => false;
            json!({}), Default => true;
        ];
        for (condition, ctx, want) in cases {
            assert_eq!(holds(condition.clone(), ctx), want, "{condition}");
        }
    }

    #[test]
    fn every_operator_is_exercised_and_named_consistently() {
        for op in ConditionOperator::ALL {
            assert_eq!(parse_operator(op.name()), Ok((*op, false)));
            if *op != ConditionOperator::Null {
                assert_eq!(parse_operator(&format!("{op}IfExists")), Ok((*op, true)));
            }
        }
    }

    #[test]
    fn deny_outside_the_office_stays_closed_when_the_address_is_unknown() {
        let full = ManagedPolicy::FullAccess.document();
        let guard = doc(json!({"Statement": {
            "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}
        }}));
        let mut r = request("chime:ListAccounts");
        assert_eq!(evaluate(&[&full, &guard], &r), Decision::ExplicitDeny);
        r.source_ip = None;
        assert_eq!(evaluate(&[&full, &guard], &r), Decision::ExplicitDeny);
        r.source_ip = Some("10.2.3.4".parse().unwrap());
        assert_eq!(evaluate(&[&full, &guard], &r), Decision::Allow);
        r.source_ip = Some("::ffff:10.2.3.4".parse().unwrap());
        assert_eq!(evaluate(&[&full, &guard], &r), Decision::Allow);
        r.source_ip = Some("2001:db8::9".parse().unwrap());
        assert_eq!(evaluate(&[&full, &guard], &r), Decision::Allow);
    }

    #[test]
    fn conditions_keep_their_values_as_written() {
        let d = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:SecureTransport": true}, "IpAddress": {"AWS:SourceIP": ["10.0.0.1", "::/0"]}}}}),
        );
        let conditions = d.statements()[0].conditions();
        assert_eq!(conditions.len(), 2);
        let bool_condition = conditions
            .iter()
            .find(|c| c.operator() == ConditionOperator::Bool)
            .unwrap();
        assert!(bool_condition.if_exists());
        assert_eq!(bool_condition.values().collect::<Vec<_>>(), ["true"]);
        let ip = conditions
            .iter()
            .find(|c| c.operator() == ConditionOperator::IpAddress)
            .unwrap();
        assert_eq!(ip.key(), "AWS:SourceIP");
        assert_eq!(ip.values().collect::<Vec<_>>(), ["10.0.0.1", "::/0"]);
    }

    // ---- parsing ----

    #[test]
    fn document_shapes() {
        let single = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "chime:GetUser", "Resource": "*"}}),
        );
        assert_eq!(single.version(), None);
        assert_eq!(single.statements().len(), 1);
        let s = &single.statements()[0];
        assert_eq!((s.sid(), s.effect()), (None, Effect::Allow));
        assert_eq!(
            s.action(),
            &Patterns::Matching(vec!["chime:GetUser".into()])
        );
        assert_eq!(s.resource().patterns(), ["*"]);
        let old = doc(json!({"Version": "2008-10-17", "Id": "x", "Statement": [
            {"Sid": "1", "Effect": "Deny", "NotAction": ["chime:A", "chime:B"], "NotResource": "arn:x"},
            {"Effect": "Allow", "Action": "*", "Resource": ["*"]}
        ]}));
        assert_eq!(old.version(), Some(PolicyVersion::V2008_10_17));
        assert_eq!(old.id(), Some("x"));
        assert_eq!(old.statements()[0].sid(), Some("1"));
        assert!(matches!(old.statements()[0].action(), Patterns::NotMatching(p) if p.len() == 2));
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        use PolicyError as P;
        use StatementError as S;
        let ok = json!({"Effect": "Allow", "Action": "*", "Resource": "*"});
        let st = |problem: S| P::Statement {
            number: 1,
            sid: None,
            problem,
        };
        let one = |statement: Value| json!({"Version": "2012-10-17", "Statement": statement});
        let cond = |condition: Value| {
            one(json!({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}))
        };
        let cases: Vec<(Value, PolicyError)> = table![
            json!([ok]) => P::NotAnObject;
            json!("policy") => P::NotAnObject;
            json!({}) => P::MissingStatement;
            json!({"Statement": 5}) => P::BadStatementList;
            json!({"Statement": []}) => P::BadStatementList;
            json!({"Statement": "Allow"}) => P::BadStatementList;
            json!({"Statement": ok, "Statements": []}) => P::UnknownElement("Statements".into());
            json!({"statement": ok}) => P::UnknownElement("statement".into());
            json!({"Version": "2012-10-18", "Statement": ok}) => P::BadVersion("\"2012-10-18\"".into());
            json!({"Version": 2012, "Statement": ok}) => P::BadVersion("2012".into());
            json!({"Id": 1, "Statement": ok}) => P::BadId;
            one(json!([5])) => st(S::NotAnObject);
            one(json!([[ok]])) => st(S::NotAnObject);
            one(json!({"Action": "*", "Resource": "*"})) => st(S::MissingEffect);
            one(json!({"Effect": "allow", "Action": "*", "Resource": "*"})) => st(S::BadEffect);
            one(json!({"Effect": true, "Action": "*", "Resource": "*"})) => st(S::BadEffect);
            one(json!({"Effect": ["Allow"], "Action": "*", "Resource": "*"})) => st(S::BadEffect);
            one(json!({"Effect": "Allow", "Resource": "*"})) => st(S::MissingAction);
            one(json!({"Effect": "Allow", "Action": "*", "NotAction": "chime:Get*", "Resource": "*"})) => st(S::BothActionAndNotAction);
            one(json!({"Effect": "Allow", "Action": "*"})) => st(S::MissingResource);
            one(json!({"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"})) => st(S::BothResourceAndNotResource);
            one(json!({"Effect": "Allow", "Action": 5, "Resource": "*"})) => st(S::BadPatternList("Action"));
            one(json!({"Effect": "Allow", "Action": [], "Resource": "*"})) => st(S::BadPatternList("Action"));
            one(json!({"Effect": "Allow", "Action": ["chime:GetUser", 5], "Resource": "*"})) => st(S::BadPatternList("Action"));
            one(json!({"Effect": "Allow", "NotAction": {"a": 1}, "Resource": "*"})) => st(S::BadPatternList("NotAction"));
            one(json!({"Effect": "Allow", "Action": "*", "Resource": null})) => st(S::BadPatternList("Resource"));
            one(json!({"Effect": "Allow", "Action": "CreateAccount", "Resource": "*"}))
                => st(S::BadActionPattern { element: "Action", pattern: "CreateAccount".into() });
            one(json!({"Effect": "Allow", "Action": "chime:", "Resource": "*"}))
                => st(S::BadActionPattern { element: "Action", pattern: "chime:".into() });
            one(json!({"Effect": "Allow", "NotAction": ":x", "Resource": "*"}))
                => st(S::BadActionPattern { element: "NotAction", pattern: ":x".into() });
            one(json!({"Effect": "Allow", "Action": "*", "Resource": "accounts/1"}))
                => st(S::BadResourcePattern { element: "Resource", pattern: "accounts/1".into() });
            one(json!({"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"})) => st(S::PrincipalNotAllowed("Principal".into()));
            one(json!({"Effect": "Allow", "Action": "*", "Resource": "*", "Extra": 1})) => st(S::UnknownElement("Extra".into()));
            one(json!({"Sid": 1, "Effect": "Allow", "Action": "*", "Resource": "*"})) => st(S::BadSid);
            cond(json!("x")) => st(S::BadConditionBlock);
            cond(json!([])) => st(S::BadConditionBlock);
            cond(json!({"StringEqualz": {"aws:SourceIp": "x"}})) => st(S::UnknownOperator("StringEqualz".into()));
            cond(json!({"stringequals": {"aws:SourceIp": "x"}})) => st(S::UnknownOperator("stringequals".into()));
            cond(json!({"NullIfExists": {"aws:SourceIp": "true"}})) => st(S::UnknownOperator("NullIfExists".into()));
            cond(json!({"NumericLessThan": {"aws:MultiFactorAuthAge": 3600}})) => st(S::UnsupportedOperator("NumericLessThan".into()));
            cond(json!({"ArnLikeIfExists": {"aws:SourceArn": "arn:*"}})) => st(S::UnsupportedOperator("ArnLikeIfExists".into()));
            cond(json!({"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}})) => st(S::UnsupportedOperator("ForAnyValue:StringEquals".into()));
            cond(json!({"StringEquals": "aws:SourceIp"})) => st(S::BadOperatorBlock { operator: "StringEquals".into() });
            cond(json!({"StringEquals": {}})) => st(S::BadOperatorBlock { operator: "StringEquals".into() });
        ];
        for (value, want) in cases {
            assert_eq!(PolicyDocument::from_value(&value), Err(want), "{value}");
        }
    }

    #[test]
    fn bad_condition_values_name_the_operator_and_key() {
        let cases: Vec<(Value, &str)> = table![
            json!({"StringEquals": {"aws:SourceIp": {"x": 1}}}) => "StringEquals \"aws:SourceIp\": values must be";
            json!({"StringEquals": {"aws:SourceIp": []}}) => "values must be";
            json!({"StringEquals": {"aws:SourceIp": [null]}}) => "values must be";
            json!({"StringEquals": {"aws:SourceIp": [["a"]]}}) => "values must be";
            json!({"StringEquals": {"": "x"}}) => "the condition key is empty";
            json!({"IpAddress": {"aws:SourceIp": "not-an-ip"}}) => "\"not-an-ip\" is not an IP address or CIDR block";
            json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}) => "is not an IP address";
            json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", true]}}) => "\"true\" is not an IP address";
            json!({"DateLessThan": {"aws:CurrentTime": "yesterday"}}) => "\"yesterday\" is not an ISO 8601 date-time";
            json!({"DateLessThan": {"aws:CurrentTime": "2026-13-01T00:00:00Z"}}) => "is not an ISO 8601";
            json!({"DateLessThan": {"aws:CurrentTime": "2026-03-01T00:00:00"}}) => "is not an ISO 8601";
            json!({"DateLessThan": {"aws:CurrentTime": "99999999999999999999"}}) => "is not an ISO 8601";
            json!({"DateLessThan": {"aws:CurrentTime": 9223372036854775807u64}}) => "is not an ISO 8601";
            json!({"DateLessThan": {"aws:CurrentTime": 18446744073709551615u64}}) => "is not an ISO 8601";
            json!({"DateLessThan": {"aws:CurrentTime": -5}}) => "is not an ISO 8601";
            json!({"Bool": {"aws:SecureTransport": "yes"}}) => "\"yes\" is not true or false";
            json!({"Bool": {"aws:SecureTransport": 1}}) => "\"1\" is not true or false";
            json!({"Null": {"aws:SourceIp": "maybe"}}) => "is not true or false";
        ];
        for (condition, want) in cases {
            let value = json!({"Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Sid": "Office", "Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition},
            ]});
            let e = PolicyDocument::from_value(&value).unwrap_err().to_string();
            assert!(
                e.starts_with("statement 2 (Sid \"Office\"): Condition "),
                "{e}"
            );
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }

    #[test]
    fn error_messages_read_well() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"Statement": [{"Effect":"Allow","Action":"*","Resource":"*"}, {"Effect":"allow"}]}"#,
                "statement 2: Effect must be Allow or Deny",
            ),
            (
                r#"{"Statement": {"Action":"*","Resource":"*"}}"#,
                "statement 1: Effect is missing (Allow or Deny)",
            ),
            (
                r#"{"Statement": {"Sid":"S","Effect":"Deny","Action":"*","NotAction":"*","Resource":"*"}}"#,
                "statement 1 (Sid \"S\"): has both Action and NotAction; use one",
            ),
            (
                r#"{"Statement": {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Foo":{"a":"b"}}}}"#,
                "statement 1: unknown condition operator \"Foo\"",
            ),
            (
                r#"{"Version":"2012-10-17""#,
                "policy document is not valid JSON: ",
            ),
            ("", "policy document is not valid JSON: "),
        ];
        for (text, want) in cases {
            let e = PolicyDocument::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
        let long = format!(
            r#"{{"Statement": {{"Effect":"Allow","Action":"{}","Resource":"*"}}}}"#,
            "x".repeat(10_000)
        );
        let e = PolicyDocument::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 300, "error echoes too much: {} bytes", e.len());
    }

    #[test]
    fn the_guides_read_only_example_allows_exactly_its_actions() {
        let example = r#"{
          "Version": "2012-10-17",
          "Statement": [
            {
              "Action": [
                "chime:ListAccounts",
                "chime:GetAccount",
                "chime:GetAccountSettings",
                "chime:ListUsers",
                "chime:GetUser",
                "chime:GetUserByEmail",
                "chime:ListAccountUsageReportData",
                "chime:ListDomains",
                "chime:GetDomain",
                "chime:ListGroups",
                "chime:ListDirectories",
                "chime:GetAccountResource"
              ],
              "Effect": "Allow",
              "Resource": "*"
            }
          ]
        }"#;
        let d = PolicyDocument::parse(example).unwrap();
        assert!(
            d.unknown_chime_actions().is_empty(),
            "{:?}",
            d.unknown_chime_actions()
        );
        let listed: Vec<&str> = d.statements()[0]
            .action()
            .patterns()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(listed.len(), 12);
        for a in ACTIONS {
            let q = a.qualified_name();
            let want = if listed.contains(&q.as_str()) {
                Decision::Allow
            } else {
                Decision::ImplicitDeny
            };
            assert_eq!(decide(&[&d], &q), want, "{q}");
            // Everything it grants, ReadOnly grants too.
            if want == Decision::Allow {
                assert!(a.read_only, "{q}");
            }
        }
    }

    #[test]
    fn unknown_chime_actions_flags_typos_only() {
        let d = allow(json!([
            "chime:CreatAccount",
            "chime:Create*",
            "chime:Nope*",
            "s3:GetObject",
            "*",
            "CHIME:listusers"
        ]));
        assert_eq!(
            d.unknown_chime_actions(),
            ["chime:CreatAccount", "chime:Nope*"]
        );
    }

    // ---- robustness ----

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const WORDS: &[&str] = &[
        "Version",
        "Id",
        "Statement",
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
        "Principal",
        "Allow",
        "Deny",
        "2012-10-17",
        "2008-10-17",
        "*",
        "chime:*",
        "chime:List*",
        "chime:Get?ser",
        "arn:aws:chime::1:meeting/*",
        "StringEquals",
        "StringNotLike",
        "IpAddress",
        "NotIpAddress",
        "DateLessThan",
        "DateEqualsIfExists",
        "Bool",
        "Null",
        "NullIfExists",
        "NumericLessThan",
        "ForAnyValue:StringLike",
        "aws:SourceIp",
        "AWS:SOURCEIP",
        "aws:CurrentTime",
        "aws:EpochTime",
        "aws:SecureTransport",
        "aws:Other",
        "10.0.0.0/8",
        "2001:db8::/32",
        "::ffff:1.2.3.4",
        "300.1.1.1",
        "2026-03-01T12:00:00Z",
        "2026-03-01",
        "1772366400",
        "true",
        "false",
        "",
        "é?*",
        "\u{0}",
        "9999999999999999999999",
        "-1",
        "+1",
        "1e400",
    ];

    fn random_value(rng: &mut Rng, depth: u32) -> Value {
        let leaf = depth == 0 || rng.below(3) == 0;
        match if leaf { rng.below(5) } else { 5 + rng.below(2) } {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => json!(rng.next() as i64 >> rng.below(64)),
            3 => json!(f64::from(rng.below(1000) as u32) / 7.0),
            4 => Value::String((*rng.pick(WORDS)).into()),
            5 => Value::Array(
                (0..rng.below(4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.below(5))
                    .map(|_| ((*rng.pick(WORDS)).to_owned(), random_value(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    /// Change one random node of `value`: replace it, delete a key, or add one.
    fn mutate(rng: &mut Rng, value: &mut Value) {
        let descend = rng.below(3) != 0;
        match value {
            Value::Object(map) if descend && !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                match rng.below(4) {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        map.insert((*rng.pick(WORDS)).into(), random_value(rng, 2));
                    }
                    _ => {
                        if let Some(child) = map.get_mut(&key) {
                            mutate(rng, child);
                        }
                    }
                }
            }
            Value::Array(items) if descend && !items.is_empty() => {
                let i = rng.below(items.len());
                mutate(rng, &mut items[i]);
            }
            // Mostly swap a word for another word: such documents often stay valid and reach the
            // evaluator.
            Value::String(_) if rng.below(4) != 0 => {
                *value = Value::String((*rng.pick(WORDS)).into())
            }
            _ => *value = random_value(rng, 3),
        }
    }

    fn exercise(value: &Value) -> bool {
        let Ok(d) = PolicyDocument::from_value(value) else {
            return false;
        };
        for action in ["chime:ListUsers", "chime:DeleteAccount", "s3:GetObject", ""] {
            for ip in [
                None,
                Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
                Some(v6("2001:db8::1")),
            ] {
                let r = RequestContext {
                    source_ip: ip,
                    ..request(action)
                };
                let _ = evaluate(&[&d, &d], &r);
            }
        }
        let _ = d.unknown_chime_actions();
        assert_eq!(
            PolicyDocument::from_value(&d.to_value()).as_ref(),
            Ok(&d),
            "round trip of {value}"
        );
        true
    }

    /// A random document built only from valid parts.
    fn random_valid_document(rng: &mut Rng) -> Value {
        const ACTIONS_: &[&str] = &[
            "*",
            "chime:*",
            "chime:List*",
            "chime:Get?ser",
            "CHIME:deleteaccount",
            "s3:*",
            "*:Create*",
        ];
        const RESOURCES: &[&str] = &["*", "arn:aws:chime::1:meeting/*", "arn:*"];
        const CONDITIONS: &[(&str, &str, &str)] = &[
            ("StringEquals", "aws:SecureTransport", "true"),
            ("StringNotLike", "aws:SourceIp", "10.*"),
            ("StringEqualsIgnoreCaseIfExists", "aws:Other", "x"),
            ("IpAddress", "aws:SourceIp", "10.0.0.0/8"),
            ("NotIpAddress", "AWS:SOURCEIP", "2001:db8::/32"),
            ("IpAddressIfExists", "aws:SourceIp", "::ffff:1.2.3.4"),
            ("DateLessThan", "aws:CurrentTime", "2030-01-01T00:00:00Z"),
            ("DateGreaterThanEquals", "aws:EpochTime", "1772366400"),
            ("DateNotEquals", "aws:CurrentTime", "2026-03-01"),
            ("Bool", "aws:SecureTransport", "false"),
            ("Null", "aws:SourceIp", "true"),
        ];
        let statements: Vec<Value> = (0..1 + rng.below(3))
            .map(|_| {
                let mut s = Map::new();
                s.insert("Effect".into(), json!(*rng.pick(&["Allow", "Deny"])));
                let action: Vec<&str> =
                    (0..1 + rng.below(3)).map(|_| *rng.pick(ACTIONS_)).collect();
                s.insert((*rng.pick(&["Action", "NotAction"])).into(), json!(action));
                s.insert(
                    (*rng.pick(&["Resource", "NotResource"])).into(),
                    json!(*rng.pick(RESOURCES)),
                );
                let mut block = Map::new();
                for _ in 0..rng.below(3) {
                    let (op, key, value) = *rng.pick(CONDITIONS);
                    block.insert(op.into(), json!({ key: value }));
                }
                if !block.is_empty() {
                    s.insert("Condition".into(), Value::Object(block));
                }
                Value::Object(s)
            })
            .collect();
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    #[test]
    fn random_and_mutated_documents_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let value = random_valid_document(&mut rng);
            assert!(exercise(&value), "{value}");
        }
        let seeds = [
            json!({"Version": "2012-10-17", "Statement": [{"Sid": "a", "Effect": "Allow", "Action": ["chime:List*", "chime:GetUser"], "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}, "Bool": {"aws:SecureTransport": true},
                              "DateLessThanIfExists": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}, "StringNotLike": {"aws:SourceIp": "10.9.*"}}}]}),
            json!({"Statement": {"Effect": "Deny", "NotAction": "chime:Get*", "NotResource": ["arn:aws:chime::1:x"],
                "Condition": {"Null": {"aws:SourceIp": "true"}, "DateEquals": {"aws:EpochTime": 1772366400}}}}),
            ManagedPolicy::ReadOnly.document().to_value(),
        ];
        for round in 0..3000 {
            let mut value = match round % 3 {
                0 => random_value(&mut rng, 5),
                1 => random_valid_document(&mut rng),
                _ => rng.pick(&seeds).clone(),
            };
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut value);
            }
            exercise(&value);
            // The same, as (possibly damaged) text.
            let mut text = value.to_string().into_bytes();
            if !text.is_empty() && rng.below(2) == 0 {
                let i = rng.below(text.len());
                text[i] = *rng.pick(b"{}[]\",:\\ 0a\xff");
            }
            let _ = PolicyDocument::parse(&String::from_utf8_lossy(&text));
        }
    }
}

//! AWS Signature Version 4 *verification*: decides whether a request that arrived at the admin API was
//! signed by the holder of an access key's secret, the way boto3, botocore and the AWS CLI sign requests
//! for the `chime` service.
//!
//! Sans-IO like the rest of [`crate::iam`]: the request is a borrowed view ([`SignedRequest`]), the
//! clock reading and the secret are arguments, and [`verify`] either names the [`Caller`] or says why
//! not with a [`SigV4Error`] that maps onto AWS's error shapes.
//!
//! What is verified, for header-based `AWS4-HMAC-SHA256` signatures:
//! - the `Authorization` header's form, its credential scope (`<date>/<region>/<service>/aws4_request`)
//!   against the expected service and the `X-Amz-Date` header, and that `host` is a signed header;
//! - the `X-Amz-Date` timestamp within ±[`MAX_CLOCK_SKEW`] of the caller-supplied `now`;
//! - the signature itself, recomputed from the canonical request for non-S3 services (path normalised
//!   and encoded a second time, query re-encoded and sorted, headers trimmed and folded), compared in
//!   constant time;
//! - the body: hashed here, or, when a signed `x-amz-content-sha256` header declares its hash, checked
//!   against that declaration.
//!
//! What is not supported, and is refused with an error rather than half-handled:
//! presigned URLs (signature in the query string), chunked `STREAMING-*` payloads, SigV4a
//! (`AWS4-ECDSA-P256-SHA256`), SigV2, and a `Date` header in place of `X-Amz-Date` (botocore always
//! sends `X-Amz-Date`). S3's single-encoding, non-normalising path rules are not implemented either:
//! Convene serves no S3 API. A signed `x-amz-security-token` is just another signed header here; whether
//! session tokens mean anything is the credential store's business, not this module's.
//!
//! A signature declared `UNSIGNED-PAYLOAD` covers no body: botocore never sends that for `chime`, but
//! the SigV4 rules allow it, so callers that care must check [`SignedRequest::body`] another way.
//!
//! Why by hand: the maintained SigV4 crates (`aws-sigv4` and friends) sign requests; none verifies
//! them on the server side against a request as received, with the error detail the admin API returns.
//! The algorithm is small and fully specified by AWS's published test suite, which the tests below run.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far `X-Amz-Date` may be from the server's clock, either way, as AWS allows.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The `x-amz-content-sha256` value that leaves the body out of the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

const TERMINATOR: &str = "aws4_request";
const CONTENT_SHA256: &str = "x-amz-content-sha256";

/// SigV4's unreserved set is RFC 3986's: everything but `A-Z a-z 0-9 - . _ ~` is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same, for a whole path: the separators stay.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

type HmacSha256 = Hmac<Sha256>;

/// A request as the server received it, borrowed: the input of [`verify`].
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The request method, e.g. `GET`.
    pub method: &'a str,
    /// The path exactly as it came off the wire (still percent-encoded), without the query.
    pub raw_path: &'a str,
    /// Everything after the `?`, still percent-encoded; empty when there is no query.
    pub raw_query: &'a str,
    /// Every header as received, in order. Names compare case-insensitively; a name may repeat.
    /// Under HTTP/2 the caller must supply `host` (from the `:authority`), since clients sign it.
    pub headers: &'a [(&'a str, &'a str)],
    /// The whole request body.
    pub body: &'a [u8],
}

/// Who signed a request that [`verify`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The access key id from the credential scope, whose secret produced the signature.
    pub access_key_id: String,
    /// The region the client signed for. Not checked: Convene has no regions, so any name goes.
    pub region: String,
    /// The instant in `X-Amz-Date`.
    pub signed_at: OffsetDateTime,
}

/// Why a request is not authenticated. Messages follow AWS's wording where AWS has one, so clients and
/// people searching for them recognise them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    MissingAuthentication,
    /// The `Authorization` or `X-Amz-Date` header is malformed, uses an unsupported scheme, or leaves
    /// out something the signature must cover (such as `host`).
    #[error("{0}")]
    IncompleteSignature(String),
    /// The credential scope names another service, another day than `X-Amz-Date`, or a wrong terminator.
    #[error("{0}")]
    InvalidScope(String),
    /// `SignedHeaders` names a header the request does not carry, so the signature cannot be recomputed.
    #[error(
        "The request signature we calculated does not match the signature you provided: signed header '{0}' is not in the request."
    )]
    SignedHeaderMissing(String),
    /// No secret is known for the access key id.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey {
        /// The access key id the client presented.
        access_key_id: String,
    },
    /// The signature does not match: wrong secret, or the request was altered after signing.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureMismatch,
    /// The signed `x-amz-content-sha256` header does not match the body received.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// `X-Amz-Date` is more than [`MAX_CLOCK_SKEW`] in the past.
    #[error(
        "Signature expired: {} is now earlier than {} ({} - 5 min.)",
        amz_date(*.signed_at),
        amz_date(.now.checked_sub(MAX_CLOCK_SKEW).unwrap_or(*.now)),
        amz_date(*.now)
    )]
    Expired {
        /// When the client says it signed.
        signed_at: OffsetDateTime,
        /// The server's clock.
        now: OffsetDateTime,
    },
    /// `X-Amz-Date` is more than [`MAX_CLOCK_SKEW`] in the future.
    #[error(
        "Signature not yet current: {} is still later than {} ({} + 5 min.)",
        amz_date(*.signed_at),
        amz_date(.now.checked_add(MAX_CLOCK_SKEW).unwrap_or(*.now)),
        amz_date(*.now)
    )]
    NotYetCurrent {
        /// When the client says it signed.
        signed_at: OffsetDateTime,
        /// The server's clock.
        now: OffsetDateTime,
    },
}

impl SigV4Error {
    /// The error code AWS JSON services answer with for this failure (API Gateway's and the JSON
    /// protocols' `x-amzn-ErrorType` names).
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::MissingAuthentication => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnknownAccessKey { .. } => "UnrecognizedClientException",
            Self::InvalidScope(_)
            | Self::SignedHeaderMissing(_)
            | Self::SignatureMismatch
            | Self::ContentSha256Mismatch
            | Self::Expired { .. }
            | Self::NotYetCurrent { .. } => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS pairs with [`Self::aws_code`].
    pub fn http_status(&self) -> u16 {
        match self {
            Self::IncompleteSignature(_) => 400,
            _ => 403,
        }
    }

    /// The exception name and status the Chime API model declares for this failure, which botocore
    /// turns into `UnauthorizedClientException` / `ForbiddenException`: a client that did not say who
    /// it is (or named an unknown key) is unauthorised; one whose proof is wrong or stale is forbidden.
    pub fn chime_error(&self) -> (&'static str, u16) {
        match self {
            Self::MissingAuthentication
            | Self::IncompleteSignature(_)
            | Self::UnknownAccessKey { .. } => ("UnauthorizedClientException", 401),
            Self::InvalidScope(_)
            | Self::SignedHeaderMissing(_)
            | Self::SignatureMismatch
            | Self::ContentSha256Mismatch
            | Self::Expired { .. }
            | Self::NotYetCurrent { .. } => ("ForbiddenException", 403),
        }
    }
}

/// Checks `req`'s SigV4 signature for `service` at time `now`.
///
/// `lookup` maps the presented access key id to its secret; it is called at most once, and only after
/// the request has passed every check that needs no secret (form, scope, clock), so malformed or stale
/// requests cost no credential-store read.
pub fn verify(
    req: &SignedRequest<'_>,
    now: OffsetDateTime,
    service: &str,
    lookup: impl FnOnce(&str) -> Option<String>,
) -> Result<Caller, SigV4Error> {
    let parsed = parse(req)?;
    let auth = &parsed.auth;

    if auth.terminator != TERMINATOR {
        return Err(SigV4Error::InvalidScope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            auth.terminator
        )));
    }
    if auth.service != service {
        return Err(SigV4Error::InvalidScope(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    // The key is derived from the scope's day while the string to sign carries the full timestamp;
    // letting them differ would let one day's key sign another day's requests.
    let amz_day = parsed.amz_date.get(..8).unwrap_or_default();
    if auth.scope_date != amz_day {
        return Err(SigV4Error::InvalidScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{}' != '{amz_day}', from 'X-Amz-Date'.",
            auth.scope_date
        )));
    }
    // Without `host` a signature made for another server would verify here too.
    if !auth.signed_headers.contains(&"host") {
        return Err(SigV4Error::IncompleteSignature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }

    let skew = now - parsed.signed_at;
    if skew > MAX_CLOCK_SKEW {
        return Err(SigV4Error::Expired {
            signed_at: parsed.signed_at,
            now,
        });
    }
    if skew < -MAX_CLOCK_SKEW {
        return Err(SigV4Error::NotYetCurrent {
            signed_at: parsed.signed_at,
            now,
        });
    }

    let Some(secret) = lookup(auth.access_key_id) else {
        return Err(SigV4Error::UnknownAccessKey {
            access_key_id: auth.access_key_id.to_owned(),
        });
    };

    let payload = payload_hash(req, auth)?;
    let canonical = build_canonical_request(req, auth, &payload)?;
    let sts = build_string_to_sign(parsed.amz_date, auth, &canonical);
    let key = signing_key(&secret, auth.scope_date, auth.region, auth.service);
    let expected = hmac_sha256(&key, sts.as_bytes());
    if !bool::from(expected.as_slice().ct_eq(auth.signature.as_slice())) {
        return Err(SigV4Error::SignatureMismatch);
    }
    // Checked after the signature, so that this error means "signed, then the body changed" (or a
    // client bug), never a hint to someone without the secret.
    if let Payload::Declared(declared) = payload
        && declared != UNSIGNED_PAYLOAD
        && !declared.eq_ignore_ascii_case(&sha256_hex(req.body))
    {
        return Err(SigV4Error::ContentSha256Mismatch);
    }

    Ok(Caller {
        access_key_id: auth.access_key_id.to_owned(),
        region: auth.region.to_owned(),
        signed_at: parsed.signed_at,
    })
}

/// The canonical request [`verify`] signs over, as SigV4 task 1 defines it for non-S3 services: the
/// step to compare with a client's own (botocore logs it at debug level) when signatures disagree.
///
/// Needs the request's `Authorization` and `X-Amz-Date` headers to be well formed (they say which
/// headers were signed), but checks nothing about scope, time, secret or a declared body hash.
pub fn canonical_request(req: &SignedRequest<'_>) -> Result<String, SigV4Error> {
    let parsed = parse(req)?;
    let payload = payload_hash(req, &parsed.auth)?;
    build_canonical_request(req, &parsed.auth, &payload)
}

/// The string to sign (SigV4 task 2) for `req`: algorithm, timestamp, credential scope and the hash of
/// [`canonical_request`]. Same preconditions.
pub fn string_to_sign(req: &SignedRequest<'_>) -> Result<String, SigV4Error> {
    let parsed = parse(req)?;
    let payload = payload_hash(req, &parsed.auth)?;
    let canonical = build_canonical_request(req, &parsed.auth, &payload)?;
    Ok(build_string_to_sign(
        parsed.amz_date,
        &parsed.auth,
        &canonical,
    ))
}

/// The `Authorization` header's parts, borrowed from the header value.
#[derive(Debug)]
struct Authorization<'a> {
    access_key_id: &'a str,
    scope_date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    /// Lowercase, strictly ascending: the canonical order, so the canonical headers follow it as is.
    signed_headers: Vec<&'a str>,
    signature: [u8; 32],
}

struct Parsed<'a> {
    auth: Authorization<'a>,
    /// `X-Amz-Date` as sent, trimmed; validated to be `YYYYMMDDTHHMMSSZ`.
    amz_date: &'a str,
    signed_at: OffsetDateTime,
}

fn parse<'a>(req: &SignedRequest<'a>) -> Result<Parsed<'a>, SigV4Error> {
    let Some(authorization) = single_header(req.headers, "authorization")? else {
        return Err(SigV4Error::MissingAuthentication);
    };
    let auth = parse_authorization(authorization)?;
    let Some(amz_date) = single_header(req.headers, "x-amz-date")? else {
        return Err(incomplete(
            "Authorization header requires existence of a 'X-Amz-Date' header.",
        ));
    };
    let amz_date = amz_date.trim_matches(is_http_whitespace);
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(incomplete(
            "'X-Amz-Date' must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.",
        ));
    };
    Ok(Parsed {
        auth,
        amz_date,
        signed_at,
    })
}

fn incomplete(message: &str) -> SigV4Error {
    SigV4Error::IncompleteSignature(message.to_owned())
}

/// The one value of header `name`; a repeat is refused because it would leave it ambiguous which one
/// the client meant.
fn single_header<'a>(
    headers: &[(&'a str, &'a str)],
    name: &str,
) -> Result<Option<&'a str>, SigV4Error> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| *v);
    let first = values.next();
    if values.next().is_some() {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Only one '{name}' header is allowed."
        )));
    }
    Ok(first)
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let value = value.trim_matches(is_http_whitespace);
    let params = match value.strip_prefix(ALGORITHM) {
        Some(rest) if rest.starts_with(is_http_whitespace) => rest,
        _ => {
            let scheme = value.split(is_http_whitespace).next().unwrap_or_default();
            return Err(SigV4Error::IncompleteSignature(format!(
                "Authorization scheme must be '{ALGORITHM}', not '{}'.",
                scheme.escape_debug()
            )));
        }
    };

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for param in params.split(',') {
        let param = param.trim_matches(is_http_whitespace);
        let Some((name, value)) = param.split_once('=') else {
            return Err(incomplete(
                "Authorization header parameters must have the form Name=value.",
            ));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(SigV4Error::IncompleteSignature(format!(
                    "Unknown Authorization header parameter '{}'.",
                    name.escape_debug()
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(SigV4Error::IncompleteSignature(format!(
                "Authorization header parameter '{name}' appears more than once."
            )));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };

    let scope: Vec<&str> = credential.split('/').collect();
    let &[access_key_id, scope_date, region, service, terminator] = scope.as_slice() else {
        return Err(incomplete(
            "Credential must have the form <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request.",
        ));
    };
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(incomplete(
            "Credential has an empty access key id, region or service.",
        ));
    }
    if scope_date.len() != 8 || !scope_date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete("Credential date must be YYYYMMDD."));
    }

    let signed_headers: Vec<&str> = signed_headers.split(';').collect();
    if !signed_headers
        .iter()
        .all(|name| !name.is_empty() && name.bytes().all(is_lowercase_token_byte))
    {
        return Err(incomplete(
            "SignedHeaders must be lowercase header names separated by ';'.",
        ));
    }
    // Clients list them sorted (the canonical headers must be); insisting on it also rules out repeats,
    // which would otherwise put a header into the canonical request twice.
    if !signed_headers
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if a < b))
    {
        return Err(incomplete(
            "SignedHeaders must be sorted and must not repeat a name.",
        ));
    }

    let mut signature_bytes = [0u8; 32];
    if hex::decode_to_slice(signature, &mut signature_bytes).is_err() {
        return Err(incomplete("Signature must be 64 hexadecimal digits."));
    }

    Ok(Authorization {
        access_key_id,
        scope_date,
        region,
        service,
        terminator,
        signed_headers,
        signature: signature_bytes,
    })
}

/// An RFC 9110 `tchar`, lowercase only: what a canonical signed-header name may contain.
fn is_lowercase_token_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_http_whitespace(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `YYYYMMDDTHHMMSSZ`, strictly (the basic ISO 8601 form SigV4 uses), as UTC.
fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u16> {
        b.get(from..to)?.iter().try_fold(0u16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
        })
    };
    let month = Month::try_from(u8::try_from(number(4, 6)?).ok()?).ok()?;
    let date = Date::from_calendar_date(
        i32::from(number(0, 4)?),
        month,
        u8::try_from(number(6, 8)?).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(number(9, 11)?).ok()?,
        u8::try_from(number(11, 13)?).ok()?,
        u8::try_from(number(13, 15)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// The `X-Amz-Date` form of an instant, for messages.
fn amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn build_canonical_request(
    req: &SignedRequest<'_>,
    auth: &Authorization<'_>,
    payload: &Payload<'_>,
) -> Result<String, SigV4Error> {
    let headers = canonical_headers(req.headers, &auth.signed_headers)?;
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.raw_path),
        canonical_query(req.raw_query),
        headers,
        auth.signed_headers.join(";"),
        payload.as_str()
    ))
}

fn build_string_to_sign(
    amz_date: &str,
    auth: &Authorization<'_>,
    canonical_request: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/{TERMINATOR}\n{}",
        auth.scope_date,
        auth.region,
        auth.service,
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The path with dot segments and empty segments removed, as botocore and the AWS test suite's
/// `normalize-path` cases do for every service but S3, then percent-encoded once more. The client
/// encodes the already-encoded path again, so the server must too: `%40` in the path signs as `%2540`.
fn canonical_uri(raw_path: &str) -> String {
    percent_encode(normalize_path(raw_path).as_bytes(), PATH).to_string()
}

/// RFC 3986 dot-segment removal, plus the collapsing of empty segments (`//`) AWS asks for, with
/// botocore's rules for the ends: the leading and trailing `/` are kept when the input has them,
/// the trailing one only when some segment remains.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// Every `name=value` pair decoded and re-encoded with the unreserved set (so `%e1`, `%E1` and a raw
/// byte all sign alike), then sorted by name and value. `+` stays a literal plus: SigV4 knows no
/// form encoding. Empty pairs (`a=1&&b=2`) carry nothing and are dropped.
fn canonical_query(raw_query: &str) -> String {
    let encode = |s: &str| {
        let decoded: Vec<u8> = percent_decode_str(s).collect();
        percent_encode(&decoded, UNRESERVED).to_string()
    };
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// `name:value\n` for each signed header, in `SignedHeaders` order (already canonical), repeated
/// headers joined with `,` in arrival order, each value trimmed with inner whitespace runs folded to one
/// space (botocore's `' '.join(value.split())`).
fn canonical_headers(headers: &[(&str, &str)], signed: &[&str]) -> Result<String, SigV4Error> {
    let mut out = String::new();
    for &name in signed {
        let mut values = headers
            .iter()
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .peekable();
        if values.peek().is_none() {
            return Err(SigV4Error::SignedHeaderMissing(name.to_owned()));
        }
        out.push_str(name);
        out.push(':');
        for (i, (_, value)) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, word) in value.split_ascii_whitespace().enumerate() {
                if j > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// The last line of the canonical request.
enum Payload<'a> {
    /// The body's SHA-256, computed here.
    Hashed(String),
    /// A signed `x-amz-content-sha256` value: what the client put in its canonical request, so it is
    /// used as sent, and [`verify`] checks afterwards that it tells the truth about the body.
    Declared(&'a str),
}

impl Payload<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Hashed(hash) => hash,
            Self::Declared(value) => value,
        }
    }
}

/// Only a *signed* `x-amz-content-sha256` counts: an unsigned one could be anyone's, so then the body
/// is hashed (botocore sends no such header for `chime` at all).
fn payload_hash<'a>(
    req: &SignedRequest<'a>,
    auth: &Authorization<'_>,
) -> Result<Payload<'a>, SigV4Error> {
    if !auth.signed_headers.contains(&CONTENT_SHA256) {
        return Ok(Payload::Hashed(sha256_hex(req.body)));
    }
    let Some(declared) = single_header(req.headers, CONTENT_SHA256)? else {
        return Err(SigV4Error::SignedHeaderMissing(CONTENT_SHA256.to_owned()));
    };
    let declared = declared.trim_matches(is_http_whitespace);
    if declared.starts_with("STREAMING-") {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Chunked payloads ('{}') are not supported.",
            declared.escape_debug()
        )));
    }
    Ok(Payload::Declared(declared))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of every length (long ones are hashed first): this cannot fail, whatever the input.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use time::macros::datetime;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const NOW: OffsetDateTime = datetime!(2015-08-30 12:36:00 UTC);

    /// A request parsed from a test-suite `.req` file, owning its text.
    #[derive(Clone, Debug)]
    struct Owned {
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Owned {
        /// The suite's `.req` format: request line, `Name:value` lines (a line starting with
        /// whitespace continues the previous value), then optionally a blank line and the body.
        fn parse(text: &str) -> Self {
            let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
            let mut lines = head.lines();
            let request_line = lines.next().unwrap();
            let (method, rest) = request_line.split_once(' ').unwrap();
            // The target may contain spaces (get-space), so cut the protocol from the right.
            let target = rest.rsplit_once(" HTTP/").unwrap().0;
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let mut headers: Vec<(String, String)> = Vec::new();
            for line in lines {
                if line.starts_with([' ', '\t']) {
                    let last = headers.last_mut().unwrap();
                    last.1.push('\n');
                    last.1.push_str(line);
                } else {
                    let (name, value) = line.split_once(':').unwrap();
                    headers.push((name.to_owned(), value.trim().to_owned()));
                }
            }
            Self {
                method: method.to_owned(),
                path: path.to_owned(),
                query: query.to_owned(),
                headers,
                body: body.as_bytes().to_vec(),
            }
        }

        fn with_header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        fn without_header(mut self, name: &str) -> Self {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            self
        }

        fn with_authorization(self, value: &str) -> Self {
            self.without_header("authorization")
                .with_header("Authorization", value)
        }

        fn run<R>(&self, f: impl FnOnce(&SignedRequest<'_>) -> R) -> R {
            let headers: Vec<(&str, &str)> = self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            f(&SignedRequest {
                method: &self.method,
                raw_path: &self.path,
                raw_query: &self.query,
                headers: &headers,
                body: &self.body,
            })
        }

        fn verify_with(
            &self,
            now: OffsetDateTime,
            service: &str,
            secret: Option<&str>,
        ) -> Result<Caller, SigV4Error> {
            self.run(|req| {
                verify(req, now, service, |key| {
                    if key == AKID {
                        secret.map(str::to_owned)
                    } else {
                        None
                    }
                })
            })
        }

        fn verify(&self, service: &str) -> Result<Caller, SigV4Error> {
            self.verify_with(NOW, service, Some(SECRET))
        }

        fn authorization(&self) -> &str {
            &self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .unwrap()
                .1
        }

        /// Signs the request as a client would, with this module's canonicalisation (which the
        /// vectors pin down), for cases no vector covers.
        fn signed(self, signed_headers: &str, service: &str, secret: &str) -> Self {
            let amz = self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
                .unwrap()
                .1
                .clone();
            let scope = format!("{AKID}/{}/us-east-1/{service}/aws4_request", &amz[..8]);
            let placeholder = format!(
                "{ALGORITHM} Credential={scope}, SignedHeaders={signed_headers}, Signature={}",
                "0".repeat(64)
            );
            let unsigned = self.with_authorization(&placeholder);
            let sts = unsigned.run(string_to_sign).unwrap();
            let signature = hex::encode(hmac_sha256(
                &signing_key(secret, &amz[..8], "us-east-1", service),
                sts.as_bytes(),
            ));
            let authorization = placeholder.replace(&"0".repeat(64), &signature);
            unsigned.with_authorization(&authorization)
        }
    }

    struct Vector {
        name: String,
        service: &'static str,
        request: Owned,
        creq: String,
        sts: String,
    }

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4")
    }

    fn find_req_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                find_req_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "req") {
                out.push(path);
            }
        }
    }

    /// Every vector of one group, with the `Authorization` header from its `.authz` file added.
    fn vectors(group: &str, service: &'static str) -> Vec<Vector> {
        let mut files = Vec::new();
        find_req_files(&data_dir().join(group), &mut files);
        files.sort();
        assert!(!files.is_empty(), "no vectors under {group}");
        files
            .into_iter()
            .map(|req| {
                let read = |ext: &str| std::fs::read_to_string(req.with_extension(ext)).unwrap();
                let name = req.file_stem().unwrap().to_string_lossy().into_owned();
                let mut request =
                    Owned::parse(&read("req")).with_header("Authorization", read("authz").trim());
                // The suite's signer adds the session token itself, so its .req lacks the header the
                // .creq shows; a verifier sees the request as sent, token included.
                if name == "get-vanilla-with-session-token" {
                    request = request.with_header(
                        "X-Amz-Security-Token",
                        "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
                    );
                }
                Vector {
                    name,
                    service,
                    request,
                    creq: read("creq"),
                    sts: read("sts"),
                }
            })
            .collect()
    }

    fn all_vectors() -> Vec<Vector> {
        let mut all = vectors("aws4_testsuite", "service");
        all.extend(vectors("botocore-chime", "chime"));
        all
    }

    #[test]
    fn sigv4_vectors_verify() {
        let all = all_vectors();
        assert_eq!(
            all.len(),
            39,
            "34 AWS suite cases and 5 botocore chime cases; update when adding vectors"
        );
        for v in &all {
            let caller = v
                .request
                .verify(v.service)
                .unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(
                caller,
                Caller {
                    access_key_id: AKID.into(),
                    region: "us-east-1".into(),
                    signed_at: NOW
                },
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn sigv4_vectors_canonical_request_and_string_to_sign() {
        for v in all_vectors() {
            assert_eq!(
                v.request.run(canonical_request).unwrap(),
                v.creq,
                "{}: canonical request",
                v.name
            );
            assert_eq!(
                v.request.run(string_to_sign).unwrap(),
                v.sts,
                "{}: string to sign",
                v.name
            );
        }
    }

    #[test]
    fn sigv4_any_flipped_signature_digit_is_a_mismatch() {
        for v in all_vectors() {
            let authz = v.request.authorization().to_owned();
            let at = authz.find("Signature=").unwrap() + "Signature=".len();
            for i in at..authz.len() {
                let mut bytes = authz.clone().into_bytes();
                bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
                let tampered = v
                    .request
                    .clone()
                    .with_authorization(&String::from_utf8(bytes).unwrap());
                assert_eq!(
                    tampered.verify(v.service),
                    Err(SigV4Error::SignatureMismatch),
                    "{} digit {i}",
                    v.name
                );
            }
        }
    }

    #[test]
    fn sigv4_wrong_secret_is_a_mismatch_and_unknown_key_is_unrecognized() {
        for v in all_vectors() {
            let wrong = v.request.verify_with(
                NOW,
                v.service,
                Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ"),
            );
            assert_eq!(wrong, Err(SigV4Error::SignatureMismatch), "{}", v.name);
            let unknown = v.request.verify_with(NOW, v.service, None);
            assert_eq!(
                unknown,
                Err(SigV4Error::UnknownAccessKey {
                    access_key_id: AKID.into()
                }),
                "{}",
                v.name
            );
            assert_eq!(
                unknown.unwrap_err().chime_error(),
                ("UnauthorizedClientException", 401)
            );
        }
    }

    #[test]
    fn sigv4_clock_skew_window_is_five_minutes_either_way() {
        let v = &vectors("aws4_testsuite", "service")[0];
        let at = |offset: Duration| v.request.verify_with(NOW + offset, "service", Some(SECRET));
        assert!(at(Duration::minutes(5)).is_ok());
        assert!(at(-Duration::minutes(5)).is_ok());
        let late = at(Duration::minutes(6)).unwrap_err();
        assert_eq!(
            late,
            SigV4Error::Expired {
                signed_at: NOW,
                now: NOW + Duration::minutes(6)
            }
        );
        assert_eq!(
            late.to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z (20150830T124200Z - 5 min.)"
        );
        assert_eq!(
            (late.aws_code(), late.http_status(), late.chime_error()),
            (
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403)
            )
        );
        let early = at(-Duration::minutes(6)).unwrap_err();
        assert_eq!(
            early.to_string(),
            "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T123000Z + 5 min.)"
        );
        assert_eq!(early.chime_error(), ("ForbiddenException", 403));
        // A stale request is refused before the credential store is asked.
        let asked = std::cell::Cell::new(false);
        let result = v.request.run(|req| {
            verify(req, NOW + Duration::hours(1), "service", |_| {
                asked.set(true);
                Some(SECRET.into())
            })
        });
        assert!(matches!(result, Err(SigV4Error::Expired { .. })) && !asked.get());
        // Extreme clocks neither panic nor pass.
        for now in [
            OffsetDateTime::UNIX_EPOCH,
            PrimitiveDateTime::MAX.assume_utc(),
            PrimitiveDateTime::MIN.assume_utc(),
        ] {
            let e = v
                .request
                .verify_with(now, "service", Some(SECRET))
                .unwrap_err();
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn sigv4_missing_authorization() {
        let v = &vectors("aws4_testsuite", "service")[0];
        let e = v
            .request
            .clone()
            .without_header("authorization")
            .verify("service")
            .unwrap_err();
        assert_eq!(e, SigV4Error::MissingAuthentication);
        assert_eq!(
            (e.aws_code(), e.http_status()),
            ("MissingAuthenticationTokenException", 403)
        );
        assert_eq!(e.chime_error(), ("UnauthorizedClientException", 401));
    }

    #[test]
    fn sigv4_malformed_authorization_is_a_clean_incomplete_signature() {
        let v = &vectors("aws4_testsuite", "service")[0];
        let good = v.request.authorization().to_owned();
        let sig = good.rsplit_once("Signature=").unwrap().1.to_owned();
        let mut variants: Vec<String> = [
            "",
            " ",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA256Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "Bearer abc",
            "AWS AKIDEXAMPLE:c2lnbmF0dXJl",
            "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/service/aws4_request, SignedHeaders=host, Signature=00",
            "aws4-hmac-sha256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date",
            "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=00",
            "AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=",
            "AWS4-HMAC-SHA256 Credential, SignedHeaders, Signature",
            "AWS4-HMAC-SHA256 ,,,",
            "AWS4-HMAC-SHA256 =,=,=",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request/extra, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015083/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015O830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/２０１５0830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830//service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=Host;X-Amz-Date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date;host, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;host;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;;x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host x-amz-date, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG00",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=zz",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=é",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG, Signature=SIG",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG, Extra=1",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG,",
        ]
        .iter()
        .map(|s| s.replace("=SIG", &format!("={sig}")))
        .collect();
        // Every prefix of a valid header, cut at each character boundary.
        variants.extend(good.char_indices().map(|(i, _)| good[..i].to_owned()));
        for variant in &variants {
            let e = v
                .request
                .clone()
                .with_authorization(variant)
                .verify("service")
                .unwrap_err();
            assert!(
                matches!(e, SigV4Error::IncompleteSignature(_)),
                "{variant:?}: {e:?}"
            );
            assert_eq!(
                (e.aws_code(), e.http_status()),
                ("IncompleteSignatureException", 400)
            );
            assert_eq!(e.chime_error(), ("UnauthorizedClientException", 401));
        }
        // Spacing between parameters is not fixed by the spec: both common forms verify.
        let tight = good.replace(", ", ",");
        assert!(
            v.request
                .clone()
                .with_authorization(&tight)
                .verify("service")
                .is_ok()
        );
        // Two Authorization headers: ambiguous, refused.
        let twice = v
            .request
            .clone()
            .with_header("Authorization", &good)
            .verify("service")
            .unwrap_err();
        assert!(matches!(twice, SigV4Error::IncompleteSignature(_)));
    }

    #[test]
    fn sigv4_malformed_or_missing_date_is_incomplete() {
        let v = &vectors("aws4_testsuite", "service")[0];
        let no_date = v.request.clone().without_header("x-amz-date");
        assert!(matches!(
            no_date.verify("service"),
            Err(SigV4Error::IncompleteSignature(_))
        ));
        // A Date header does not stand in for X-Amz-Date (unsupported, documented).
        let date_only = no_date
            .clone()
            .with_header("Date", "Sun, 30 Aug 2015 12:36:00 GMT");
        assert!(matches!(
            date_only.verify("service"),
            Err(SigV4Error::IncompleteSignature(_))
        ));
        for bad in [
            "",
            "20150830T123600",
            "20150830 123600Z",
            "2015-08-30T12:36:00Z",
            "20150830T123600z",
            "20151330T123600Z",
            "20150230T123600Z",
            "20150830T246000Z",
            "20150830T123660Z",
            "+2015830T123600Z",
            "２０１５0830T123600Z",
            "20150830T12360éZ",
            "00000000T000000Z",
        ] {
            let e = no_date
                .clone()
                .with_header("X-Amz-Date", bad)
                .verify("service")
                .unwrap_err();
            assert!(
                matches!(e, SigV4Error::IncompleteSignature(_)),
                "{bad:?}: {e:?}"
            );
        }
        let twice = v
            .request
            .clone()
            .with_header("X-Amz-Date", "20150830T123600Z")
            .verify("service")
            .unwrap_err();
        assert!(matches!(twice, SigV4Error::IncompleteSignature(_)));
    }

    #[test]
    fn sigv4_scope_must_match_service_date_and_terminator() {
        let v = &vectors("aws4_testsuite", "service")[0];
        let e = v.request.verify("chime").unwrap_err();
        assert_eq!(
            e,
            SigV4Error::InvalidScope(
                "Credential should be scoped to correct service: 'chime'.".into()
            )
        );
        assert_eq!(e.chime_error(), ("ForbiddenException", 403));

        let good = v.request.authorization().to_owned();
        let other_day = v
            .request
            .clone()
            .with_authorization(&good.replace("/20150830/", "/20150831/"));
        assert!(matches!(
            other_day.verify("service"),
            Err(SigV4Error::InvalidScope(_))
        ));
        let terminator = v
            .request
            .clone()
            .with_authorization(&good.replace("aws4_request", "aws4_requesx"));
        assert!(matches!(
            terminator.verify("service"),
            Err(SigV4Error::InvalidScope(_))
        ));
    }

    #[test]
    fn sigv4_host_must_be_signed_and_signed_headers_present() {
        let base = Owned::parse(
            "GET /accounts HTTP/1.1\nHost:admin.convene.example\nX-Amz-Date:20150830T123600Z",
        );
        let no_host = base.clone().signed("x-amz-date", "chime", SECRET);
        let e = no_host.verify("chime").unwrap_err();
        assert!(
            matches!(e, SigV4Error::IncompleteSignature(ref m) if m.contains("Host")),
            "{e:?}"
        );

        let signed = base
            .clone()
            .with_header("Content-Type", "application/json")
            .signed("content-type;host;x-amz-date", "chime", SECRET);
        assert!(signed.verify("chime").is_ok());
        let dropped = signed.without_header("content-type");
        assert_eq!(
            dropped.verify("chime"),
            Err(SigV4Error::SignedHeaderMissing("content-type".into()))
        );
        assert_eq!(
            dropped.run(canonical_request),
            Err(SigV4Error::SignedHeaderMissing("content-type".into()))
        );
    }

    #[test]
    fn sigv4_tampering_after_signing_is_a_mismatch() {
        let v = vectors("botocore-chime", "chime")
            .into_iter()
            .find(|v| v.name == "chime-create-account-body")
            .unwrap();
        let mismatch = |r: Owned| assert_eq!(r.verify("chime"), Err(SigV4Error::SignatureMismatch));
        let mut body = v.request.clone();
        body.body.push(b' ');
        mismatch(body);
        let mut path = v.request.clone();
        path.path.push_str("/x");
        mismatch(path);
        let mut query = v.request.clone();
        query.query = "operation=delete".into();
        mismatch(query);
        let mut method = v.request.clone();
        method.method = "PUT".into();
        mismatch(method);
        mismatch(
            v.request
                .clone()
                .without_header("content-type")
                .with_header("Content-Type", "text/plain"),
        );
        mismatch(
            v.request
                .clone()
                .without_header("host")
                .with_header("Host", "evil.example"),
        );
        // A second value for a signed header changes its canonical form.
        mismatch(v.request.clone().with_header("content-type", "text/plain"));
        // Unsigned headers may change freely (proxies add them).
        let extra = v
            .request
            .clone()
            .with_header("X-Forwarded-For", "10.0.0.1")
            .without_header("user-agent");
        assert!(extra.verify("chime").is_ok());
    }

    #[test]
    fn sigv4_declared_content_sha256() {
        let body = br#"{"Name":"x"}"#;
        let mut base = Owned::parse(
            "POST /accounts HTTP/1.1\nHost:admin.convene.example\nX-Amz-Date:20150830T123600Z",
        );
        base.body = body.to_vec();
        let headers = "host;x-amz-content-sha256;x-amz-date";

        let honest = base
            .clone()
            .with_header("X-Amz-Content-Sha256", &hex::encode(Sha256::digest(body)));
        let honest = honest.signed(headers, "chime", SECRET);
        assert!(honest.verify("chime").is_ok());
        assert!(
            honest
                .run(canonical_request)
                .unwrap()
                .ends_with(&hex::encode(Sha256::digest(body)))
        );

        let lying = base.clone().with_header(
            "X-Amz-Content-Sha256",
            &hex::encode(Sha256::digest(b"other")),
        );
        let e = lying
            .signed(headers, "chime", SECRET)
            .verify("chime")
            .unwrap_err();
        assert_eq!(e, SigV4Error::ContentSha256Mismatch);
        assert_eq!(e.chime_error(), ("ForbiddenException", 403));

        let unsigned_payload = base
            .clone()
            .with_header("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD)
            .signed(headers, "chime", SECRET);
        let mut altered = unsigned_payload.clone();
        altered.body = b"anything".to_vec();
        assert!(
            altered.verify("chime").is_ok(),
            "UNSIGNED-PAYLOAD leaves the body out"
        );

        let streaming = honest
            .without_header("x-amz-content-sha256")
            .with_header("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        let e = streaming.verify("chime").unwrap_err();
        assert!(matches!(e, SigV4Error::IncompleteSignature(_)), "{e:?}");

        // Present but unsigned: ignored, the body is hashed.
        let unsigned_header = base
            .clone()
            .signed("host;x-amz-date", "chime", SECRET)
            .with_header("X-Amz-Content-Sha256", "junk");
        assert!(unsigned_header.verify("chime").is_ok());
    }

    #[test]
    fn sigv4_path_normalisation_follows_botocore() {
        for (raw, normalised) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/./", "/"),
            ("/a/./b/../c//", "/a/c/"),
            ("/a/b/..", "/a"),
            ("//example//", "/example/"),
            ("/a/%2e%2e/b", "/a/%2e%2e/b"),
            ("a/b", "a/b"),
        ] {
            assert_eq!(normalize_path(raw), normalised, "{raw:?}");
        }
        assert_eq!(
            canonical_uri("/accounts/acct%201/users/user%40example.com"),
            "/accounts/acct%25201/users/user%2540example.com"
        );
        assert_eq!(canonical_uri("/ሴ"), "/%E1%88%B4");
    }

    #[test]
    fn sigv4_query_canonicalisation() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("flag&x="), "flag=&x=");
        assert_eq!(canonical_query("a=1&&b=2&"), "a=1&b=2");
        assert_eq!(canonical_query("k=a+b%20c%2b"), "k=a%2Bb%20c%2B");
        assert_eq!(canonical_query("k=%e1%88%b4"), "k=%E1%88%B4");
        assert_eq!(canonical_query("k=%zz%"), "k=%25zz%25");
        assert_eq!(canonical_query("a=b=c"), "a=b%3Dc");
    }

    #[test]
    fn sigv4_error_mapping() {
        let t = NOW;
        let cases = [
            (
                SigV4Error::MissingAuthentication,
                "MissingAuthenticationTokenException",
                403,
                ("UnauthorizedClientException", 401),
            ),
            (
                SigV4Error::IncompleteSignature(String::new()),
                "IncompleteSignatureException",
                400,
                ("UnauthorizedClientException", 401),
            ),
            (
                SigV4Error::UnknownAccessKey {
                    access_key_id: AKID.into(),
                },
                "UnrecognizedClientException",
                403,
                ("UnauthorizedClientException", 401),
            ),
            (
                SigV4Error::InvalidScope(String::new()),
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403),
            ),
            (
                SigV4Error::SignedHeaderMissing("host".into()),
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403),
            ),
            (
                SigV4Error::SignatureMismatch,
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403),
            ),
            (
                SigV4Error::ContentSha256Mismatch,
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403),
            ),
            (
                SigV4Error::Expired {
                    signed_at: t,
                    now: t,
                },
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403),
            ),
            (
                SigV4Error::NotYetCurrent {
                    signed_at: t,
                    now: t,
                },
                "InvalidSignatureException",
                403,
                ("ForbiddenException", 403),
            ),
        ];
        for (e, code, status, chime) in cases {
            assert_eq!(
                (e.aws_code(), e.http_status(), e.chime_error()),
                (code, status, chime),
                "{e:?}"
            );
        }
    }

    #[test]
    fn sigv4_hostile_requests_do_not_panic() {
        let v = &vectors("botocore-chime", "chime")[0];
        let odd = [
            "",
            "/",
            "%",
            "%%%",
            "%ff%fe",
            "/../../..",
            "?",
            "&&&",
            "=",
            "é/ü",
            "\u{0}",
            "/a/\u{ffff}",
        ];
        for path in odd {
            for query in odd {
                let mut r = v.request.clone();
                r.path = path.into();
                r.query = query.into();
                let _ = r.verify("chime");
                let _ = r.run(canonical_request);
            }
        }
        let weird_headers = v
            .request
            .clone()
            .with_header("", "")
            .with_header(" \t", "\u{0}")
            .with_header("x-amz-date ", "");
        let _ = weird_headers.verify("chime");
    }
}

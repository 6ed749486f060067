//! One error type for the whole admin API, rendered in the AWS rest-json error shape:
//! status code, `x-amzn-ErrorType: <Name>Exception` (which botocore turns into the typed exception) and
//! a body `{"Code": "<ErrorCode>", "Message": "..."}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnprocessableEntity(String),
    #[error("{0}")]
    ResourceLimitExceeded(String),
    #[error("{0}")]
    ServiceFailure(String),
}

impl ApiError {
    /// (exception name, `ErrorCode` value, HTTP status), as the public API model defines them.
    pub fn parts(&self) -> (&'static str, &'static str, StatusCode) {
        match self {
            Self::BadRequest(_) => ("BadRequestException", "BadRequest", StatusCode::BAD_REQUEST),
            Self::UnauthorizedClient(_) => (
                "UnauthorizedClientException",
                "Unauthorized",
                StatusCode::UNAUTHORIZED,
            ),
            Self::Forbidden(_) => ("ForbiddenException", "Forbidden", StatusCode::FORBIDDEN),
            Self::AccessDenied(_) => (
                "AccessDeniedException",
                "AccessDenied",
                StatusCode::FORBIDDEN,
            ),
            Self::NotFound(_) => ("NotFoundException", "NotFound", StatusCode::NOT_FOUND),
            Self::Conflict(_) => ("ConflictException", "Conflict", StatusCode::CONFLICT),
            Self::UnprocessableEntity(_) => (
                "UnprocessableEntityException",
                "Unprocessable",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            Self::ResourceLimitExceeded(_) => (
                "ResourceLimitExceededException",
                "ResourceLimitExceeded",
                StatusCode::BAD_REQUEST,
            ),
            Self::ServiceFailure(_) => (
                "ServiceFailureException",
                "ServiceFailure",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::ServiceFailure(
            "the service could not complete the request; see the server log".into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (exception, code, status) = self.parts();
        let body = serde_json::json!({ "Code": code, "Message": self.to_string() });
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(exception));
        response
    }
}

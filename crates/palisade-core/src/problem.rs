//! RFC 9457 problem details: the JSON body of an HTTP rejection.

use std::borrow::Cow;

use serde::Serialize;

/// An RFC 9457 `application/problem+json` document.
///
/// ```
/// use palisade_core::ProblemDetails;
///
/// let problem = ProblemDetails::new(http::StatusCode::TOO_MANY_REQUESTS)
///     .with_detail("slow down")
///     .with_member("retry_after", 3);
/// let json = serde_json::to_value(&problem).unwrap();
/// assert_eq!(json["type"], "about:blank");
/// assert_eq!(json["title"], "Too Many Requests");
/// assert_eq!(json["retry_after"], 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemDetails {
    /// A URI naming the problem type; `about:blank` when the status code says it all.
    #[serde(rename = "type")]
    pub type_uri: Cow<'static, str>,
    /// A short, human-readable summary of the problem type.
    pub title: Cow<'static, str>,
    /// The HTTP status code.
    pub status: u16,
    /// A human-readable explanation of this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A URI naming this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (`retry_after`, `violated-policies`…).
    #[serde(flatten)]
    pub members: serde_json::Map<String, serde_json::Value>,
}

impl ProblemDetails {
    /// An `about:blank` problem whose title is the status' reason phrase.
    pub fn new(status: http::StatusCode) -> Self {
        ProblemDetails {
            type_uri: Cow::Borrowed("about:blank"),
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            status: status.as_u16(),
            detail: None,
            instance: None,
            members: serde_json::Map::new(),
        }
    }

    /// Sets the problem type URI and its title.
    pub fn with_type(mut self, type_uri: &'static str, title: &'static str) -> Self {
        self.type_uri = Cow::Borrowed(type_uri);
        self.title = Cow::Borrowed(title);
        self
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    pub fn with_member(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// The document as JSON bytes.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serializing a struct of strings, numbers and a JSON map cannot fail.
        serde_json::to_vec(self).unwrap_or_default().into()
    }
}

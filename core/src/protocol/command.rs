//! `RemotingCommand`: one request or response of RocketMQ's remoting protocol.

use bytes::Bytes;

use super::code::{LanguageCode, RequestCode, ResponseCode, SerializeType, SERVER_VERSION};
pub use super::ext_fields::{ExtFields, FieldCursor};

/// Flag bit 0: this command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: this request expects no response at all.
pub const FLAG_ONEWAY: i32 = 2;

/// One frame's command: header fields plus an opaque body. Its `Debug` shows the body's
/// length, never its bytes (a message body is customer data).
#[derive(Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// A request code, or a response code when [`is_response`](Self::is_response).
    pub code: i32,
    /// The sender's language.
    pub language: LanguageCode,
    /// The sender's version ordinal.
    pub version: i32,
    /// Request id, echoed by the response.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    /// Free text, usually an error description.
    pub remark: Option<String>,
    /// The custom header.
    pub ext_fields: ExtFields,
    /// The body, never interpreted at this layer.
    pub body: Bytes,
    /// How the header was (or will be) serialized.
    pub serialize_type: SerializeType,
}

impl core::fmt::Debug for RemotingCommand {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemotingCommand")
            .field("code", &self.code)
            .field("language", &self.language)
            .field("version", &self.version)
            .field("opaque", &self.opaque)
            .field("flag", &self.flag)
            .field("remark", &self.remark)
            .field("ext_fields", &self.ext_fields)
            .field("body_len", &self.body.len())
            .field("serialize_type", &self.serialize_type)
            .finish()
    }
}

impl RemotingCommand {
    /// A request from this server (broker → client, or to a name server).
    #[must_use]
    pub fn request(code: RequestCode, opaque: i32, ext_fields: ExtFields) -> Self {
        Self {
            code: code.0,
            language: LanguageCode::JAVA,
            version: SERVER_VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext_fields,
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// The response to `request`: same opaque and header serialization, the response flag,
    /// and this server's language and version (clients read the broker version from it).
    #[must_use]
    pub fn response_to(request: &Self, code: ResponseCode, remark: Option<String>) -> Self {
        Self {
            code: code.0,
            language: LanguageCode::JAVA,
            version: SERVER_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: request.serialize_type,
        }
    }

    /// Whether this is a response.
    #[must_use]
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this is a request that must not be answered.
    #[must_use]
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The code read as a request code.
    #[must_use]
    pub fn request_code(&self) -> RequestCode {
        RequestCode(self.code)
    }

    /// The code read as a response code.
    #[must_use]
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode(self.code)
    }

    /// This command with `body`.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_body_length_not_the_body() {
        let cmd =
            RemotingCommand::request(RequestCode(10), 7, ExtFields::new()).with_body(&b"secret body"[..]);
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("body_len: 11"), "{shown}");
    }
}

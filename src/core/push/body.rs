//! Push bodies -> one JSON record per push, its company and its key.
//!
//! A body is either the record itself (plain JSON object) or `{"content": "..."}`, the
//! record encrypted (see `cipher`). Every push type is one JSON object: the Main Talk
//! List record, the Sub Talk List record, the agent status callback, the call event.
//! The company is the record's `companyId`, trimmed (the API pads ids with spaces);
//! for an encrypted body it is read after decryption, so the signature, which covers
//! the company, is checked only once the body could be read.

use super::cipher::{self, AesKey, CipherError, CipherMode};
use crate::core::push::PushKind;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The field added to call events: their key (CONTRACT section 7: the event's id when
/// it has one, else a hash of the body).
pub const EVENT_KEY_FIELD: &str = "eventKey";
/// Fields of a call event that can carry its id, in order of preference.
const EVENT_ID_FIELDS: &[&str] = &["eventId", "eventID", "id"];

/// A readable push.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The record as compact JSON text (decrypted; call events with `eventKey` added).
    pub json: String,
    pub company_id: String,
    /// The table key, parts joined by U+001F, as `convert::record_key` joins them.
    pub key: String,
}

/// Why a body was refused with 400 (never quotes the body: it may be personal data).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("the body is encrypted but SOBOT_PUSH_AES_KEY is not set")]
    NoKey,
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error("the decrypted body is not a JSON object")]
    DecryptedNotObject,
    #[error("the record has no companyId")]
    NoCompany,
    #[error("the record has no {0} (its key)")]
    MissingKey(&'static str),
}

impl BodyError {
    /// Label of the 400 counter.
    pub fn label(&self) -> &'static str {
        match self {
            BodyError::NotJson | BodyError::NotObject => "unparseable",
            BodyError::NoKey | BodyError::Cipher(_) | BodyError::DecryptedNotObject => {
                "undecryptable"
            }
            BodyError::NoCompany | BodyError::MissingKey(_) => "incomplete",
        }
    }
}

/// Reads a push body of `kind`.
pub fn decode(
    kind: PushKind,
    raw: &[u8],
    cipher: Option<(CipherMode, &AesKey)>,
) -> Result<Decoded, BodyError> {
    let value: Value = serde_json::from_slice(raw).map_err(|_| BodyError::NotJson)?;
    let Value::Object(mut obj) = value else {
        return Err(BodyError::NotObject);
    };
    if let Some(content) = encrypted_content(&obj) {
        let (mode, key) = cipher.ok_or(BodyError::NoKey)?;
        let plain = cipher::decrypt(mode, key, content)?;
        match serde_json::from_slice::<Value>(&plain) {
            Ok(Value::Object(o)) => obj = o,
            _ => return Err(BodyError::DecryptedNotObject),
        }
    }
    let company_id = text(obj.get("companyId")).ok_or(BodyError::NoCompany)?;
    let key = match kind {
        PushKind::Talk => text(obj.get("callID")).ok_or(BodyError::MissingKey("callID"))?,
        PushKind::Party => text(obj.get("partyId")).ok_or(BodyError::MissingKey("partyId"))?,
        PushKind::AgentStatus => {
            let agent = text(obj.get("agentUUID")).ok_or(BodyError::MissingKey("agentUUID"))?;
            let start = text(obj.get("startTime")).ok_or(BodyError::MissingKey("startTime"))?;
            let part = |f: &str| text(obj.get(f)).unwrap_or_default();
            [
                company_id.clone(),
                agent,
                start,
                part("loginStatus"),
                part("workStatus"),
            ]
            .join("\u{1f}")
        }
        PushKind::CallEvent => {
            let key = EVENT_ID_FIELDS
                .iter()
                .find_map(|f| text(obj.get(*f)))
                .unwrap_or_else(|| {
                    // serde_json's map is sorted, so equal bodies hash equally
                    // whatever order their fields came in.
                    let canonical = Value::Object(obj.clone()).to_string();
                    format!(
                        "sha256:{}",
                        hex::encode(Sha256::digest(canonical.as_bytes()))
                    )
                });
            obj.insert(EVENT_KEY_FIELD.into(), Value::String(key.clone()));
            key
        }
    };
    Ok(Decoded {
        json: Value::Object(obj).to_string(),
        company_id,
        key,
    })
}

/// The `content` of an encrypted body: an object whose only field is a string `content`.
fn encrypted_content(obj: &Map<String, Value>) -> Option<&str> {
    if obj.len() != 1 {
        return None;
    }
    obj.get("content").and_then(Value::as_str)
}

/// A string (trimmed) or number as text; `None` when absent, null or blank.
fn text(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_records_give_company_and_key() {
        let d = decode(
            PushKind::Talk,
            json!({"companyId": " c1 ", "callID": " x ", "startTime": 1})
                .to_string()
                .as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!((d.company_id.as_str(), d.key.as_str()), ("c1", "x"));
        let d = decode(
            PushKind::AgentStatus,
            json!({"companyId": "c", "agentUUID": "a", "startTime": 5, "loginStatus": 1})
                .to_string()
                .as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(d.key, "c\u{1f}a\u{1f}5\u{1f}1\u{1f}");
    }

    #[test]
    fn call_events_without_an_id_are_keyed_by_their_body() {
        let a = decode(
            PushKind::CallEvent,
            br#"{"companyId":"c","b":1,"a":2}"#,
            None,
        )
        .unwrap();
        let b = decode(
            PushKind::CallEvent,
            br#"{"a":2,"companyId":"c","b":1}"#,
            None,
        )
        .unwrap();
        assert_eq!(a.key, b.key);
        assert!(a.key.starts_with("sha256:"));
        assert!(a.json.contains(EVENT_KEY_FIELD));
        let c = decode(
            PushKind::CallEvent,
            br#"{"companyId":"c","eventId":"e1"}"#,
            None,
        )
        .unwrap();
        assert_eq!(c.key, "e1");
    }

    #[test]
    fn encrypted_bodies_are_decrypted() {
        let key = AesKey::parse("0123456789abcdef0123456789abcdef").unwrap();
        let plain = br#"{"companyId":"c","partyId":"p"}"#;
        let content = cipher::encrypt(CipherMode::Cbc, &key, plain, &[3; 16]);
        let body = json!({ "content": content }).to_string();
        let d = decode(
            PushKind::Party,
            body.as_bytes(),
            Some((CipherMode::Cbc, &key)),
        )
        .unwrap();
        assert_eq!(d.key, "p");
        assert_eq!(
            decode(PushKind::Party, body.as_bytes(), None),
            Err(BodyError::NoKey)
        );
        assert!(
            decode(
                PushKind::Party,
                body.as_bytes(),
                Some((CipherMode::Ecb, &key))
            )
            .is_err()
        );
    }

    #[test]
    fn unreadable_bodies_are_refused() {
        assert_eq!(
            decode(PushKind::Talk, b"{nope", None),
            Err(BodyError::NotJson)
        );
        assert_eq!(
            decode(PushKind::Talk, b"[1]", None),
            Err(BodyError::NotObject)
        );
        assert_eq!(
            decode(PushKind::Talk, br#"{"callID":"x"}"#, None),
            Err(BodyError::NoCompany)
        );
    }
}

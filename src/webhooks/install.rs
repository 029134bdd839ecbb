//! `webhooks install` and `webhooks list`: register the receiver with Postmark (every trigger
//! on, the shared secret as the basic-auth password), idempotently.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Auth, BodyError, Call, ClientError, PostmarkClient};
use crate::secret::Secret;

fn parse_json(body: &[u8]) -> Result<Value, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
}

/// The webhooks registered on the server (all streams, or one).
pub async fn list(client: &PostmarkClient, token: &Secret, message_stream: Option<&str>) -> Result<Vec<Value>, ClientError> {
    let query: Vec<(&str, String)> = message_stream.map(|s| vec![("MessageStream", s.to_string())]).unwrap_or_default();
    let body = client.get(Auth::Server(token), "/webhooks", &query, parse_json).await?;
    Ok(body.get("Webhooks").and_then(Value::as_array).cloned().unwrap_or_default())
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    Created(i64),
    Updated(i64),
}

/// Creates the webhook for `url` on `message_stream`, or updates the one already there.
pub async fn install(client: &PostmarkClient, token: &Secret, url: &str, message_stream: &str, secret: &Secret) -> Result<Installed, ClientError> {
    let existing = list(client, token, Some(message_stream))
        .await?
        .into_iter()
        .find(|w| w.get("Url").and_then(Value::as_str) == Some(url));
    let triggers = json!({
        "Open": {"Enabled": true, "PostFirstOpenOnly": false},
        "Click": {"Enabled": true},
        "Delivery": {"Enabled": true},
        "Bounce": {"Enabled": true, "IncludeContent": false},
        "SpamComplaint": {"Enabled": true, "IncludeContent": false},
        "SubscriptionChange": {"Enabled": true}
    });
    let mut body = json!({
        "Url": url,
        "HttpAuth": {"Username": "postmark", "Password": secret.expose()},
        "HttpHeaders": [],
        "Triggers": triggers,
    });
    let id = |v: &Value| v.get("ID").and_then(Value::as_i64).unwrap_or_default();
    match existing {
        Some(w) => {
            let wid = id(&w);
            let path = format!("/webhooks/{wid}");
            client
                .request(
                    Auth::Server(token),
                    Call {
                        method: Method::PUT,
                        path: &path,
                        query: &[],
                        body: Some(&body),
                        rules: &[],
                        first: false,
                    },
                    parse_json,
                )
                .await?;
            Ok(Installed::Updated(wid))
        }
        None => {
            body["MessageStream"] = json!(message_stream);
            let created = client
                .request(
                    Auth::Server(token),
                    Call {
                        method: Method::POST,
                        path: "/webhooks",
                        query: &[],
                        body: Some(&body),
                        rules: &[],
                        first: false,
                    },
                    parse_json,
                )
                .await?;
            Ok(Installed::Created(id(&created)))
        }
    }
}

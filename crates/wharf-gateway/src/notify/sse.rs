//! `GET /v1/events`: the caller's notifications as server-sent events, for browsers and curl.
//!
//! ```text
//! curl -N -H "authorization: Bearer $ACCESS" http://127.0.0.1:50050/v1/events
//! curl -N -H "authorization: Bearer $ACCESS" -H "last-event-id: $ID" http://127.0.0.1:50050/v1/events
//! ```
//! Each notification is one event: `id:` its event id (what `Last-Event-ID` resumes from),
//! `event:` its kind, `data:` the notification as JSON. On shutdown (or when the client is too
//! slow) the server sends `retry:` with the reconnect delay and an `event: reconnect`, then
//! closes; an EventSource reconnects by itself with `Last-Event-ID`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tonic::transport::server::TcpConnectInfo;
use wharf_proto::wharf::gateway::v1::Notification;

use crate::edge::Edge;
use crate::notify::grpc::async_stream;
use crate::notify::{Hub, Item};

/// The SSE route's state.
#[derive(Debug, Clone)]
pub struct SseRoute {
    pub hub: Arc<Hub>,
    pub edge: Arc<Edge>,
    pub keepalive: std::time::Duration,
    pub reconnect_after: std::time::Duration,
}

fn refused(status: &tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::Unauthenticated => http::StatusCode::UNAUTHORIZED,
        tonic::Code::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::InvalidArgument => http::StatusCode::BAD_REQUEST,
        _ => http::StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, format!("{}\n", status.message())).into_response()
}

/// The notification as the JSON of its proto3 mapping.
pub fn to_json(notification: &Notification) -> String {
    let occurred_at = notification.occurred_at.as_ref().map(|ts| {
        let at = time::OffsetDateTime::from_unix_timestamp(ts.seconds)
            .ok()
            .map(|t| t + time::Duration::nanoseconds(i64::from(ts.nanos)));
        at.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
    });
    serde_json::json!({
        "eventId": notification.event_id,
        "occurredAt": occurred_at,
        "userId": notification.user_id,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
    })
    .to_string()
}

impl SseRoute {
    pub async fn handle(&self, request: axum::extract::Request) -> Response {
        let headers = request.headers();
        let identity = match self.edge.authenticate(headers).await {
            Ok(identity) => identity,
            Err(status) => return refused(&status),
        };
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let address = self.edge.client_address(headers, peer);
        if let Err(status) = self.edge.admit(Some(&identity), &address).await {
            return refused(&status);
        }
        let last = headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|id| !id.is_empty());
        let mut subscription = match self.hub.subscribe(&identity.user_id, last).await {
            Ok(subscription) => subscription,
            Err(status) => return refused(&status),
        };
        let retry = self.reconnect_after;
        let events = async_stream(move |yield_| async move {
            // At once, so that the response head goes out now (HTTP/1.1 sends it with the
            // first bytes of the body), and the client learns the reconnect delay.
            let hello = Event::default().retry(retry).comment("subscribed");
            if yield_.send(Ok::<_, Infallible>(hello)).await.is_err() {
                return;
            }
            while let Some(item) = subscription.next().await {
                let event = match item {
                    Item::Notification(delivered) => {
                        let n = &delivered.notification;
                        let mut event = Event::default().data(to_json(n));
                        if !n.event_id.contains(['\n', '\r']) {
                            event = event.id(&n.event_id);
                        }
                        if !n.kind.is_empty() && !n.kind.contains(['\n', '\r']) {
                            event = event.event(&n.kind);
                        }
                        event
                    }
                    Item::Reconnect(after) => {
                        Event::default().retry(after).event("reconnect").data("{}")
                    }
                };
                if yield_.send(Ok::<_, Infallible>(event)).await.is_err() {
                    return;
                }
            }
        });
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(self.keepalive))
            .into_response()
    }
}

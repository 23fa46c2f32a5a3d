//! `wharf.gateway.v1.Notifications/Subscribe`: the caller's notifications as a server stream.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Request, Response, Status};
use wharf_proto::wharf::gateway::v1::notifications_server::{Notifications, NotificationsServer};
use wharf_proto::wharf::gateway::v1::{SubscribeRequest, SubscribeResponse};

use crate::edge::Edge;
use crate::notify::{Hub, Item};

#[derive(Debug, Clone)]
pub struct NotificationsHandlers {
    hub: Arc<Hub>,
    edge: Arc<Edge>,
}

impl NotificationsHandlers {
    pub fn new(hub: Arc<Hub>, edge: Arc<Edge>) -> Self {
        Self { hub, edge }
    }

    pub fn server(self) -> NotificationsServer<Self> {
        NotificationsServer::new(self)
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Notifications for NotificationsHandlers {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let headers = request.metadata().clone().into_headers();
        let identity = self.edge.authenticate(&headers).await?;
        let address = self.edge.client_address(&headers, peer);
        self.edge.admit(Some(&identity), &address).await?;
        let last = request.into_inner().last_event_id;
        let last = Some(last.trim()).filter(|id| !id.is_empty());
        let mut subscription = self.hub.subscribe(&identity.user_id, last).await?;
        let stream = async_stream(move |yield_| async move {
            while let Some(item) = subscription.next().await {
                let response = match item {
                    Item::Notification(delivered) => SubscribeResponse {
                        notification: Some(delivered.notification.clone()),
                        reconnect_after_ms: 0,
                    },
                    Item::Reconnect(after) => SubscribeResponse {
                        notification: None,
                        reconnect_after_ms: u32::try_from(after.as_millis())
                            .unwrap_or(u32::MAX)
                            .max(1),
                    },
                };
                if yield_.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task: `produce` sends items until the client goes away (its send fails).
pub(crate) fn async_stream<T, F, Fut>(produce: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

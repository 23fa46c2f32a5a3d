// A critical event cannot skip the outbox through the ACKED publisher.
use std::time::Duration;
use wharf_events::AckedPublisher;
use wharf_proto::wharf::trading::v1::TradeExecuted;

async fn produce(publisher: &AckedPublisher) {
    let _ = publisher.publish(&TradeExecuted::default(), Duration::from_secs(1)).await;
}

fn main() {}

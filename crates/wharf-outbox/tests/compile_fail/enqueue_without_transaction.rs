// The outbox row must commit with the business rows: a bare connection is not a transaction.
use wharf_proto::wharf::trading::v1::TradeExecuted;

async fn produce(conn: &mut sqlx::PgConnection) {
    let _ = wharf_outbox::enqueue(conn, TradeExecuted::default()).await;
}

fn main() {}

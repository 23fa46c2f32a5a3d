// An ACKED event is published with an awaited ack and compensation, never through the outbox.
use wharf_proto::wharf::auth::v1::UserLoggedIn;

async fn produce(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) {
    let _ = wharf_outbox::enqueue(tx, UserLoggedIn::default()).await;
}

fn main() {}

// An ACKED event is published synchronously with compensation, never through the outbox.
use wharf_proto::OutboxEvent;
use wharf_proto::wharf::auth::v1::UserLoggedIn;

fn enqueue<E: OutboxEvent>(_event: &E) {}

fn main() {
    enqueue(&UserLoggedIn::default());
}

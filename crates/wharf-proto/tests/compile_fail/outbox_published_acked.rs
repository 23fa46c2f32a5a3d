// An OUTBOX event cannot bypass the outbox through the ACKED publisher.
use wharf_proto::AckedEvent;
use wharf_proto::wharf::auth::v1::UserRegistered;

fn publish<E: AckedEvent>(_event: &E) {}

fn main() {
    publish(&UserRegistered::default());
}

// An ACKED event's caller must learn whether it was stored: it cannot be fired and forgotten.
use wharf_events::FireAndForgetPublisher;
use wharf_proto::wharf::auth::v1::UserLoggedIn;

fn produce(emitter: &FireAndForgetPublisher) {
    emitter.emit(UserLoggedIn::default());
}

fn main() {}

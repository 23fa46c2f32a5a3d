// A critical event cannot be fired and forgotten.
use wharf_events::FireAndForgetPublisher;
use wharf_proto::wharf::revenue::v1::FeeRecorded;

fn produce(emitter: &FireAndForgetPublisher) {
    emitter.emit(FeeRecorded::default());
}

fn main() {}

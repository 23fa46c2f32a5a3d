// A plain message (a request) is not an event of any class.
use wharf_proto::OutboxEvent;
use wharf_proto::wharf::trading::v1::PlaceOrderRequest;

fn enqueue<E: OutboxEvent>(_event: &E) {}

fn main() {
    enqueue(&PlaceOrderRequest::default());
}

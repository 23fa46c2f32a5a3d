// A critical event cannot be published fire-and-forget: it must go through the outbox.
use wharf_proto::FireAndForgetEvent;
use wharf_proto::wharf::trading::v1::TradeExecuted;

fn emit<E: FireAndForgetEvent>(_event: &E) {}

fn main() {
    emit(&TradeExecuted::default());
}

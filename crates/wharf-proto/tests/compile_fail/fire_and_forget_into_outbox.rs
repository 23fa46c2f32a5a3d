// An auxiliary event cannot be put in the outbox.
use wharf_proto::OutboxEvent;
use wharf_proto::wharf::social::v1::AchievementUnlocked;

fn enqueue<E: OutboxEvent>(_event: &E) {}

fn main() {
    enqueue(&AchievementUnlocked::default());
}

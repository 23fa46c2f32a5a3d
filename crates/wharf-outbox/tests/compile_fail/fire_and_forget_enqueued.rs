// An auxiliary event cannot be put in the outbox.
use wharf_proto::wharf::social::v1::AchievementUnlocked;

async fn produce(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) {
    let _ = wharf_outbox::enqueue(tx, AchievementUnlocked::default()).await;
}

fn main() {}

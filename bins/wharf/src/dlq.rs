//! `wharf dlq list|show|replay|discard`: the dead-letter stream, for an operator at 3 a.m.

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage};
use wharf_events::dlq::{self, StoredDeadLetter};
use wharf_events::envelope::EVENT_TYPE;

use crate::ConfigArgs;
use crate::config::{WharfConfig, nats_client};

#[derive(Debug, clap::Subcommand)]
pub enum DlqAction {
    /// Dead letters, oldest first: sequence, subject, consumer, deliveries, error.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter with its headers and decoded payload.
    Show { sequence: u64 },
    /// Publishes it back to its original subject (fresh delivery count) and removes it.
    Replay { sequence: u64 },
    /// Deletes it for good.
    Discard { sequence: u64 },
}

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: DlqAction,
    #[command(flatten)]
    config: ConfigArgs,
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let config: WharfConfig =
        wharf_runtime::config::load(args.config.config.as_deref(), &args.config.overrides)?;
    let js = async_nats::jetstream::new(nats_client(&config.nats).await?);
    let namespace = config.events.namespace();
    match args.action {
        DlqAction::List { limit } => {
            let letters = dlq::list(&js, &namespace, limit).await?;
            if letters.is_empty() {
                println!("the dead-letter queue is empty");
                return Ok(());
            }
            println!(
                "{:>6}  {:<32}  {:<16}  {:>5}  ERROR",
                "SEQ", "SUBJECT", "CONSUMER", "TRIES"
            );
            for stored in &letters {
                let letter = &stored.letter;
                println!(
                    "{:>6}  {:<32}  {:<16}  {:>5}  {}",
                    stored.sequence,
                    letter.original_subject,
                    letter.consumer,
                    letter.deliveries,
                    letter.error
                );
            }
            println!(
                "{} dead letter(s); `wharf dlq show SEQ` for one",
                letters.len()
            );
        }
        DlqAction::Show { sequence } => print_letter(&dlq::get(&js, &namespace, sequence).await?)?,
        DlqAction::Replay { sequence } => {
            let ack = dlq::replay(&js, &namespace, sequence).await?;
            println!(
                "replayed dead letter {sequence} as {} #{}",
                ack.stream, ack.sequence
            );
        }
        DlqAction::Discard { sequence } => {
            dlq::discard(&js, &namespace, sequence).await?;
            println!("discarded dead letter {sequence}");
        }
    }
    Ok(())
}

fn print_letter(stored: &StoredDeadLetter) -> anyhow::Result<()> {
    let letter = &stored.letter;
    println!("sequence:   {}", stored.sequence);
    println!("stored at:  {}", stored.stored_at);
    println!("subject:    {}", letter.original_subject);
    println!("consumer:   {}", letter.consumer);
    println!("deliveries: {}", letter.deliveries);
    println!("stream seq: {}", letter.stream_sequence);
    println!("error:      {}", letter.error);
    println!("headers:");
    let mut names: Vec<String> = letter
        .headers
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    names.sort();
    for name in names {
        if let Some(value) = letter.headers.get(name.as_str()) {
            println!("  {name}: {}", value.as_str());
        }
    }
    let event_type = letter
        .headers
        .get(EVENT_TYPE)
        .map(|value| value.as_str().to_owned());
    println!("payload:");
    println!("{}", decode(event_type.as_deref(), &letter.payload)?);
    Ok(())
}

/// The payload as JSON, through the contracts' descriptor set; hex when it does not decode.
fn decode(event_type: Option<&str>, payload: &[u8]) -> anyhow::Result<String> {
    let pool = DescriptorPool::decode(wharf_proto::FILE_DESCRIPTOR_SET)
        .context("failed to load the contracts")?;
    let descriptor = event_type.and_then(|name| pool.get_message_by_name(name));
    let decoded =
        descriptor.and_then(|descriptor| DynamicMessage::decode(descriptor, payload).ok());
    Ok(match decoded {
        Some(message) => serde_json::to_string_pretty(&message)?,
        None => {
            let hex: String = payload.iter().map(|byte| format!("{byte:02x}")).collect();
            format!(
                "  (not a decodable {}) {hex}",
                event_type.unwrap_or("event")
            )
        }
    })
}

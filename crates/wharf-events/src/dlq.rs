//! The dead-letter stream and what an operator does with it.
//!
//! A dead letter is the original message (subject, headers, payload) plus why it died: the last
//! error, the delivery count, the consumer, the original stream sequence. It is published to
//! `dlq.<original subject>` in the `DLQ` stream, awaiting the ack, before the original is
//! terminated, so nothing is dropped on the way.
//!
//! [`replay`] publishes the original payload and headers back to the original subject as a new
//! message (a fresh delivery count) and removes the dead letter. Consumers that had already
//! applied the event skip it through their inbox; the one that failed applies it.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;

use crate::envelope::{EVENT_ID, MSG_ID};
use crate::topology::{DLQ_PREFIX, DLQ_STREAM, Namespace};

pub const ORIGINAL_SUBJECT: &str = "Wharf-Dlq-Subject";
pub const ERROR: &str = "Wharf-Dlq-Error";
pub const DELIVERIES: &str = "Wharf-Dlq-Deliveries";
pub const CONSUMER: &str = "Wharf-Dlq-Consumer";
pub const STREAM_SEQUENCE: &str = "Wharf-Dlq-Stream-Sequence";

/// A message that could not be applied.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Without the namespace prefix.
    pub original_subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub error: String,
    pub deliveries: u32,
    pub consumer: String,
    pub stream_sequence: u64,
}

/// A dead letter as stored, with its DLQ sequence number.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    pub sequence: u64,
    pub stored_at: String,
    pub letter: DeadLetter,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("no dead letter with sequence {0}")]
    NotFound(u64),
    #[error("message {0} in the DLQ is not a Wharf dead letter")]
    Malformed(u64),
    #[error(
        "stream {0} does not exist: apply the topology first (any service, or `wharf relay`, does at start-up)"
    )]
    NoDlqStream(String),
    #[error("JetStream request failed")]
    JetStream(#[source] async_nats::Error),
}

fn nats(err: impl Into<async_nats::Error>) -> DlqError {
    DlqError::JetStream(err.into())
}

/// Stores a dead letter, waiting for the stream's ack.
pub async fn publish(
    js: &jetstream::Context,
    namespace: &Namespace,
    letter: &DeadLetter,
) -> Result<(), DlqError> {
    let mut headers = HeaderMap::new();
    for (name, values) in letter.headers.iter() {
        let name_str: &str = name.as_ref();
        if name_str == MSG_ID {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    // One dead letter per failed stream message, even if the dead-lettering is retried.
    let id = format!(
        "dlq:{}:{}:{}",
        letter.consumer, letter.original_subject, letter.stream_sequence
    );
    headers.insert(MSG_ID, id.as_str());
    headers.insert(ORIGINAL_SUBJECT, letter.original_subject.as_str());
    headers.insert(ERROR, one_line(&letter.error).as_str());
    headers.insert(DELIVERIES, letter.deliveries.to_string().as_str());
    headers.insert(CONSUMER, letter.consumer.as_str());
    headers.insert(STREAM_SEQUENCE, letter.stream_sequence.to_string().as_str());

    let subject = namespace.subject(&format!("{DLQ_PREFIX}.{}", letter.original_subject));
    js.publish_with_headers(subject, headers, letter.payload.clone())
        .await
        .map_err(nats)?
        .await
        .map_err(nats)?;
    Ok(())
}

/// Header values are single lines.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn dlq_stream_name(namespace: &Namespace) -> String {
    namespace.stream(DLQ_STREAM)
}

/// Reads one dead letter.
pub async fn get(
    js: &jetstream::Context,
    namespace: &Namespace,
    sequence: u64,
) -> Result<StoredDeadLetter, DlqError> {
    let stream = js
        .get_stream(dlq_stream_name(namespace))
        .await
        .map_err(js_err)?;
    read(&stream, sequence).await
}

/// Reads one dead letter from the already-resolved DLQ stream.
async fn read(
    stream: &jetstream::stream::Stream,
    sequence: u64,
) -> Result<StoredDeadLetter, DlqError> {
    let message = stream
        .get_raw_message(sequence)
        .await
        .map_err(|err| match err.kind() {
            jetstream::stream::RawMessageErrorKind::NoMessageFound => DlqError::NotFound(sequence),
            _ => nats(err),
        })?;
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
    };
    let letter = DeadLetter {
        original_subject: header(ORIGINAL_SUBJECT).ok_or(DlqError::Malformed(sequence))?,
        error: header(ERROR).unwrap_or_default(),
        deliveries: header(DELIVERIES).and_then(|d| d.parse().ok()).unwrap_or(0),
        consumer: header(CONSUMER).unwrap_or_default(),
        stream_sequence: header(STREAM_SEQUENCE)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        headers: message.headers.clone(),
        payload: message.payload.clone(),
    };
    Ok(StoredDeadLetter {
        sequence,
        stored_at: message.time.to_string(),
        letter,
    })
}

fn js_err(err: jetstream::context::GetStreamError) -> DlqError {
    match err.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            DlqError::NoDlqStream(DLQ_STREAM.to_owned())
        }
        _ => DlqError::JetStream(err.into()),
    }
}

/// Up to `limit` dead letters, oldest first.
pub async fn list(
    js: &jetstream::Context,
    namespace: &Namespace,
    limit: usize,
) -> Result<Vec<StoredDeadLetter>, DlqError> {
    let mut stream = js
        .get_stream(dlq_stream_name(namespace))
        .await
        .map_err(js_err)?;
    let state = stream.info().await.map_err(nats)?.state.clone();
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if letters.len() >= limit {
            break;
        }
        match read(&stream, sequence).await {
            Ok(letter) => letters.push(letter),
            // Discarded or replayed letters leave gaps in the sequence.
            Err(DlqError::NotFound(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(letters)
}

/// Publishes the dead letter back to its original subject as a new message, then removes it.
pub async fn replay(
    js: &jetstream::Context,
    namespace: &Namespace,
    sequence: u64,
) -> Result<PublishAck, DlqError> {
    let stored = get(js, namespace, sequence).await?;
    let mut headers = HeaderMap::new();
    for (name, values) in stored.letter.headers.iter() {
        let name_str: &str = name.as_ref();
        if name_str.starts_with("Wharf-Dlq-") || name_str == MSG_ID {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    // A new message id: the original is probably still inside the duplicate window, and the
    // replay must not be mistaken for it. Consumers still dedupe on Wharf-Event-Id.
    let event_id = stored
        .letter
        .headers
        .get(EVENT_ID)
        .map_or_else(String::new, |value| value.as_str().to_owned());
    headers.insert(MSG_ID, format!("{event_id}:replay:{sequence}").as_str());
    let subject = namespace.subject(&stored.letter.original_subject);
    let ack = js
        .publish_with_headers(subject, headers, stored.letter.payload.clone())
        .await
        .map_err(nats)?
        .await
        .map_err(nats)?;
    discard(js, namespace, sequence).await?;
    Ok(ack)
}

/// Deletes a dead letter for good.
pub async fn discard(
    js: &jetstream::Context,
    namespace: &Namespace,
    sequence: u64,
) -> Result<(), DlqError> {
    let stream = js
        .get_stream(dlq_stream_name(namespace))
        .await
        .map_err(js_err)?;
    let deleted = stream.delete_message(sequence).await.map_err(nats)?;
    if deleted {
        Ok(())
    } else {
        Err(DlqError::NotFound(sequence))
    }
}

//! `wharf dlq`: listing, showing (decoded), replaying and discarding dead letters.

use async_nats::jetstream;
use wharf_events::dlq::DeadLetter;
use wharf_events::{Namespace, Topology};
use wharf_proto::wharf::trading::v1::TradeExecuted;

use crate::helpers::wharf;

fn dlq(prefix: &str, nats_url: &str, args: &[&str]) -> (bool, String) {
    let output = wharf()
        .arg("dlq")
        .args(args)
        .args(["--set", &format!("nats.url={nats_url}")])
        .args(["--set", &format!("events.namespace={prefix}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// An operator lists a dead letter with its reason, sees its payload decoded, replays it to
/// its original subject, and discards another.
#[tokio::test]
async fn dlq_commands_operate_the_dead_letter_stream() {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into());
    let prefix = wharf_testkit::unique_name("d");
    let namespace = Namespace::new(&prefix);
    let js = jetstream::new(async_nats::connect(&nats_url).await.unwrap());
    let topology = Topology::declared(namespace.clone());
    topology.apply(&js).await.unwrap();

    let mut event = TradeExecuted {
        account_id: "account-7".into(),
        instrument: "WHRF".into(),
        fee_minor: 42,
        ..Default::default()
    };
    wharf_events::envelope::stamp(&mut event);
    let (headers, payload) = wharf_events::envelope::encode(&event, None);
    for sequence in [11, 12] {
        let letter = DeadLetter {
            original_subject: "trading.trade.executed".into(),
            headers: headers.clone(),
            payload: payload.clone(),
            error: "ledger rejected the fee".into(),
            deliveries: 5,
            consumer: "revenue-ledger".into(),
            stream_sequence: sequence,
        };
        wharf_events::dlq::publish(&js, &namespace, &letter)
            .await
            .unwrap();
    }

    let (ok, listed) = dlq(&prefix, &nats_url, &["list"]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("trading.trade.executed") && listed.contains("revenue-ledger"),
        "{listed}"
    );
    assert!(
        listed.contains("ledger rejected the fee") && listed.contains("2 dead letter(s)"),
        "{listed}"
    );

    let (ok, shown) = dlq(&prefix, &nats_url, &["show", "1"]);
    assert!(ok, "{shown}");
    assert!(
        shown.contains("\"accountId\": \"account-7\""),
        "decoded payload: {shown}"
    );
    assert!(shown.contains("deliveries: 5"), "{shown}");

    let (ok, replayed) = dlq(&prefix, &nats_url, &["replay", "1"]);
    assert!(ok, "{replayed}");
    let mut trading = js
        .get_stream(topology.stream_name("TRADING"))
        .await
        .unwrap();
    assert_eq!(
        trading.info().await.unwrap().state.messages,
        1,
        "replayed to the original subject"
    );

    let (ok, discarded) = dlq(&prefix, &nats_url, &["discard", "2"]);
    assert!(ok, "{discarded}");
    let (_, empty) = dlq(&prefix, &nats_url, &["list"]);
    assert!(empty.contains("empty"), "{empty}");

    let (ok, missing) = dlq(&prefix, &nats_url, &["show", "99"]);
    assert!(
        !ok && missing.contains("no dead letter with sequence 99"),
        "{missing}"
    );
}

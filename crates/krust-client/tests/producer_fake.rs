//! Producer behaviour under faults, against the in-process fake cluster (krust-testkit):
//! leader migration, leadership errors, non-retriable errors, lost responses. Each test checks
//! the fake's request log to prove the fault happened.

use std::time::Duration;

use futures::FutureExt;

use krust_client::producer::{
    Persistence, ProduceErrorKind, Producer, ProducerConfig, ProducerRecord,
};
use krust_testkit::kafka_protocol::messages::ApiKey;
use krust_testkit::FakeCluster;
use krust_wire::ErrorCode;

fn config(cluster: &FakeCluster) -> ProducerConfig {
    let mut c = ProducerConfig::new(&cluster.bootstrap());
    c.client.request_timeout = Duration::from_millis(1500);
    c.client.retry_backoff = Duration::from_millis(10);
    c.client.retry_backoff_max = Duration::from_millis(100);
    c.delivery_timeout = Duration::from_secs(20);
    c.linger = Duration::from_millis(1);
    c
}

fn values(cluster: &FakeCluster, topic: &str, partition: i32) -> Vec<String> {
    cluster
        .records(topic, partition)
        .unwrap()
        .into_iter()
        .map(|(_, v)| String::from_utf8(v.unwrap().to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn leader_move_migrates_the_partition_to_the_new_leader() {
    let cluster = FakeCluster::start(3).await.unwrap();
    cluster.create_topic("t", 1, 3).unwrap();
    let (old, _) = cluster.leader("t", 0).unwrap();
    let producer = Producer::new(config(&cluster)).await.unwrap();
    let mut futs = Vec::new();
    for i in 0..200 {
        futs.push(
            producer
                .send(
                    ProducerRecord::new("t")
                        .with_partition(0)
                        .with_value(format!("{i}")),
                )
                .await
                .unwrap(),
        );
        if i == 100 {
            producer.flush().await;
            let new = (old + 1) % 3;
            cluster.move_leader("t", 0, new).unwrap();
        }
    }
    for f in futs {
        f.await.unwrap();
    }
    producer.close().await;
    let (new, _) = cluster.leader("t", 0).unwrap();
    assert_ne!(new, old);
    // The old leader refused at least one request; later ones went to the new leader.
    let produce = cluster.requests_of(ApiKey::Produce);
    assert!(produce.iter().any(|r| r.broker == old));
    assert_eq!(produce.last().unwrap().broker, new);
    // Every record is in the log once, in send order (one in flight at a time is not needed:
    // the migration waits for the old leader's answers before sending to the new one).
    let got = values(&cluster, "t", 0);
    let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn not_leader_refreshes_metadata_and_retries() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let producer = Producer::new(config(&cluster)).await.unwrap();
    // Warm up metadata, then inject.
    producer
        .send(ProducerRecord::new("t").with_value("a"))
        .await
        .unwrap()
        .await
        .unwrap();
    let metadata_before = cluster.requests_of(ApiKey::Metadata).len();
    cluster.fail_next_n(ApiKey::Produce, ErrorCode::NOT_LEADER_OR_FOLLOWER.0, 2);
    let md = producer
        .send(ProducerRecord::new("t").with_value("b"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 1);
    assert!(cluster.requests_of(ApiKey::Metadata).len() > metadata_before);
    assert_eq!(
        cluster.requests_of(ApiKey::Produce).len(),
        4,
        "1 + 2 refused + 1"
    );
    assert_eq!(producer.stats().retries, 2);
    producer.close().await;
    assert_eq!(values(&cluster, "t", 0), vec!["a", "b"]);
}

#[tokio::test]
async fn non_retriable_error_fails_the_batch_as_not_persisted() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let producer = Producer::new(config(&cluster)).await.unwrap();
    producer
        .send(ProducerRecord::new("t").with_value("warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    cluster.fail_next(ApiKey::Produce, ErrorCode::TOPIC_AUTHORIZATION_FAILED.0);
    let e = producer
        .send(ProducerRecord::new("t").with_value("x"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED));
    assert_eq!(e.persistence(), Persistence::NotPersisted);
    assert_eq!(e.partition(), Some(0));
    assert_eq!(e.into_record().unwrap().value.unwrap(), "x");
    producer.close().await;
}

#[tokio::test]
async fn lost_response_is_reported_possibly_persisted_when_retries_run_out() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.retries = 0;
    let producer = Producer::new(cfg).await.unwrap();
    producer
        .send(ProducerRecord::new("t").with_value("warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    // The broker appends the batch, then the response is lost with the connection.
    cluster.drop_response_next(ApiKey::Produce);
    let e = producer
        .send(ProducerRecord::new("t").with_value("lost-ack"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(e.persistence(), Persistence::PossiblyPersisted, "{e}");
    assert!(matches!(e.kind(), ProduceErrorKind::Transport(_)), "{e}");
    // And indeed it was written.
    assert_eq!(values(&cluster, "t", 0), vec!["warm", "lost-ack"]);
    producer.close().await;
}

#[tokio::test]
async fn lost_response_is_retried_within_the_delivery_timeout() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let producer = Producer::new(config(&cluster)).await.unwrap();
    producer
        .send(ProducerRecord::new("t").with_value("warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    cluster.close_next(ApiKey::Produce);
    let md = producer
        .send(ProducerRecord::new("t").with_value("retried"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        md.offset, 1,
        "closed before handling: written once, by the retry"
    );
    assert_eq!(values(&cluster, "t", 0), vec!["warm", "retried"]);
    producer.close().await;
}

#[tokio::test]
async fn broker_down_then_up_delivers_everything() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 2, 1).unwrap();
    let producer = Producer::new(config(&cluster)).await.unwrap();
    producer
        .send(ProducerRecord::new("t").with_value("warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    cluster.broker_down(0);
    let mut futs = Vec::new();
    for i in 0..50 {
        futs.push(
            producer
                .send(
                    ProducerRecord::new("t")
                        .with_key(format!("k{i}"))
                        .with_value(format!("{i}")),
                )
                .await
                .unwrap(),
        );
    }
    // Wait for the producer to have tried (and failed) at least once while the broker is down.
    let before = producer.stats().requests_sent;
    while producer.stats().requests_sent == before {
        tokio::task::yield_now().await;
    }
    cluster.broker_up(0);
    for f in futs {
        f.await.unwrap();
    }
    producer.close().await;
    let total = values(&cluster, "t", 0).len() + values(&cluster, "t", 1).len();
    assert_eq!(total, 51);
}

/// A batch's records are kept encoded (compressed here) until their result: a failed one is
/// rebuilt from the batch's bytes and handed back whole (key, value, headers, timestamp, and
/// its partition only if the application chose it).
#[tokio::test]
async fn a_failed_record_is_handed_back_whole_from_its_compressed_batch() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.compression = krust_client::producer::Compression::Lz4;
    cfg.linger = Duration::from_millis(200);
    let producer = Producer::new(cfg).await.unwrap();
    producer
        .send(ProducerRecord::new("t").with_value("warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    cluster.fail_next(ApiKey::Produce, ErrorCode::TOPIC_AUTHORIZATION_FAILED.0);
    let chosen = ProducerRecord::new("t")
        .with_partition(0)
        .with_key("k")
        .with_value("v")
        .with_header("h1", "x")
        .with_null_header("h2")
        .with_timestamp(1_700_000_000_123);
    let tombstone = ProducerRecord::new("t").with_key("gone");
    // Back to back, within one linger: one batch, one request, failed whole.
    let a = producer.try_send(chosen.clone()).unwrap();
    let b = producer.try_send(tombstone.clone()).unwrap();
    let a = a.await.unwrap_err();
    let b = b.await.unwrap_err();
    assert_eq!(a.code(), Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED));
    assert_eq!(b.code(), Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED));
    assert_eq!(a.partition(), Some(0));
    assert_eq!(a.into_record().unwrap(), chosen);
    let b = b.into_record().unwrap();
    assert!(b.timestamp.is_some(), "the send time it was given");
    assert_eq!(
        ProducerRecord {
            timestamp: None,
            ..b
        },
        tombstone,
        "no partition (the partitioner chose it), null value"
    );
    producer.close().await;
}

/// With `linger.ms=0`, a Produce request of partial batches waits for the answer to the one in
/// flight (a broker answers a connection's requests in order, so it would only wait in line
/// there), and the records that arrive meanwhile go together in the next request; a request
/// with a complete batch is not held (`max_in_flight_partial` at its default 1).
#[tokio::test]
async fn partial_batches_wait_for_the_answer_in_flight_and_complete_ones_do_not() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("hold", 1, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.linger = Duration::ZERO;
    cfg.batch_size = 1000;
    let producer = Producer::new(cfg).await.unwrap();
    let rec = |i: usize| {
        ProducerRecord::new("hold")
            .with_partition(0)
            .with_value(format!("{i:0100}"))
    };
    // Connection, metadata and producer id first.
    producer.send(rec(0)).await.unwrap().await.unwrap();
    let rtt = Duration::from_millis(300);
    // The fake answers each request `rtt` after it arrived, without holding later ones back.
    cluster.set_rtt(0, rtt);
    let margin = Duration::from_millis(50);

    // Partial batches: held until the answer.
    let before = cluster.requests_of(ApiKey::Produce).len();
    let first = producer.send(rec(1)).await.unwrap();
    cluster.wait_for_requests(ApiKey::Produce, before + 1).await;
    let mut futs = Vec::new();
    for i in 2..=4 {
        futs.push(producer.send(rec(i)).await.unwrap());
    }
    first.await.unwrap();
    for f in futs.drain(..) {
        f.await.unwrap();
    }
    let log = cluster.requests_of(ApiKey::Produce);
    assert_eq!(log.len(), before + 2, "{log:?}");
    let (a, b) = (&log[before], &log[before + 1]);
    assert_eq!(a.batches[0].record_count, 1);
    assert_eq!(b.batches[0].record_count, 3, "the held records go together");
    assert!(
        b.at + margin >= a.at + rtt,
        "a partial request went {:?} after the one in flight, before its answer ({rtt:?})",
        b.at - a.at
    );

    // A complete batch goes at once, with the first request still unanswered.
    let before = log.len();
    let first = producer.send(rec(5)).await.unwrap();
    cluster.wait_for_requests(ApiKey::Produce, before + 1).await;
    for i in 6..=40 {
        futs.push(producer.send(rec(i)).await.unwrap());
    }
    cluster.wait_for_requests(ApiKey::Produce, before + 2).await;
    first.await.unwrap();
    for f in futs.drain(..) {
        f.await.unwrap();
    }
    let log = cluster.requests_of(ApiKey::Produce);
    let (a, b) = (&log[before], &log[before + 1]);
    assert!(
        b.at + margin < a.at + rtt,
        "a complete batch waited {:?} for the answer in flight",
        b.at - a.at
    );
    producer.close().await;
    let want: Vec<String> = (0..=40).map(|i| format!("{i:0100}")).collect();
    assert_eq!(values(&cluster, "hold", 0), want);
}

/// Records whose batches were never sent (held behind a request that does not come back) are
/// handed back whole when the producer is dropped: their bytes live only in the batch being
/// built, and are rebuilt from it — from a batch that stopped taking records as from the one
/// still open.
#[tokio::test]
async fn records_of_unsent_batches_are_handed_back_whole_when_the_producer_is_dropped() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.linger = Duration::from_secs(30);
    cfg.delivery_timeout = Duration::from_secs(60);
    // About two records a batch, one batch in flight: the first request hangs, later full
    // batches wait behind it, the last one stays open.
    cfg.batch_size = 180;
    cfg.max_in_flight = 1;
    cfg.client.request_timeout = Duration::from_secs(2);
    let producer = Producer::new(cfg).await.unwrap();
    let warm = producer
        .send(ProducerRecord::new("t").with_value("warm"))
        .await
        .unwrap();
    producer.flush().await;
    warm.await.unwrap();
    cluster.hang_next(ApiKey::Produce);
    let records: Vec<ProducerRecord> = (0..9)
        .map(|i| {
            let r = ProducerRecord::new("t")
                .with_key(format!("k{i}"))
                // Every third value large enough to be kept by reference until sent.
                .with_value(format!(
                    "value {i} {}",
                    "x".repeat(if i % 3 == 2 { 600 } else { 40 })
                ))
                .with_timestamp(1_700_000_000_000 + i);
            match i % 3 {
                0 => r.with_partition(0),
                1 => r.with_header("h", format!("{i}")).with_null_header("n"),
                _ => r,
            }
        })
        .collect();
    let mut futs = Vec::new();
    for r in &records {
        futs.push(producer.send(r.clone()).await.unwrap());
    }
    // The first batch goes out (and hangs) once the next one opens behind it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cluster.requests_of(ApiKey::Produce).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first batch was not sent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(producer);
    let mut handed_back = 0;
    for (r, f) in records.iter().zip(futs) {
        let e = f.await.expect_err("not delivered");
        assert_eq!(*e.kind(), ProduceErrorKind::Closed, "{e}");
        let back = e.into_record().expect("the record back");
        assert_eq!(&back, r);
        handed_back += 1;
    }
    assert_eq!(handed_back, records.len());
}

/// A partition missing from one metadata answer (its topic re-created smaller) and back in a
/// later one keeps the batch it had open: a record appended to that batch after the partition
/// is back is written into it next to the earlier one, none left out.
#[tokio::test]
async fn an_open_batch_keeps_its_records_when_its_partition_goes_and_comes_back() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 2, 1).unwrap();
    cluster.create_topic("w", 1, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.linger = Duration::from_secs(30);
    cfg.delivery_timeout = Duration::from_secs(60);
    cfg.batch_size = 180;
    let producer = Producer::new(cfg).await.unwrap();
    // A record larger than a batch is sent at once: its delivery shows the driver handled every
    // command before it and went round its loop (taking the newest metadata) after the refresh
    // before it.
    let wake = || async {
        let f = producer
            .send(
                ProducerRecord::new("w")
                    .with_partition(0)
                    .with_value("w".repeat(300)),
            )
            .await
            .unwrap();
        f.await.unwrap();
    };
    let first = producer
        .send(
            ProducerRecord::new("t")
                .with_partition(1)
                .with_value("first"),
        )
        .await
        .unwrap();
    // Commands are handled in order: once this is delivered, `first` is in its batch.
    wake().await;
    assert!(cluster.delete_topic("t"));
    cluster.create_topic("t", 1, 1).unwrap();
    let md = producer
        .cluster()
        .refresh_metadata(&["t".to_string()])
        .await
        .unwrap();
    assert_eq!(md.topics.get("t").map(|t| t.partitions.len()), Some(1));
    wake().await;
    assert!(cluster.delete_topic("t"));
    cluster.create_topic("t", 2, 1).unwrap();
    let md = producer
        .cluster()
        .refresh_metadata(&["t".to_string()])
        .await
        .unwrap();
    assert_eq!(md.topics.get("t").map(|t| t.partitions.len()), Some(2));
    wake().await;
    // Still in its open batch (not sent at the end of a linger meanwhile), so `second` joins it.
    let mut first = first;
    assert!((&mut first).now_or_never().is_none(), "first already sent");
    let second = producer
        .send(
            ProducerRecord::new("t")
                .with_partition(1)
                .with_value("second"),
        )
        .await
        .unwrap();
    producer.flush().await;
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((a.partition, b.partition), (1, 1));
    assert_eq!(values(&cluster, "t", 1), ["first", "second"]);
    producer.close().await;
}

/// A batch filled while another one lingers goes out at once, not at the end of the other's
/// `linger.ms` (the driver, waiting for that timer, is woken by records that can fill a batch).
#[tokio::test]
async fn a_full_batch_is_sent_while_another_lingers() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("t", 2, 1).unwrap();
    let mut cfg = config(&cluster);
    cfg.linger = Duration::from_secs(30);
    cfg.delivery_timeout = Duration::from_secs(60);
    cfg.batch_size = 1000;
    let producer = Producer::new(cfg).await.unwrap();
    // Metadata known first, so the records below are routed as they arrive.
    let first = producer
        .send(ProducerRecord::new("t").with_partition(0).with_value("x"))
        .await
        .unwrap();
    producer.flush().await;
    first.await.unwrap();
    let lingering = producer
        .send(ProducerRecord::new("t").with_partition(0).with_value("y"))
        .await
        .unwrap();
    // The driver takes it (and, with a batch lingering, stops being woken by every record)
    // before the records below are queued.
    tokio::task::yield_now().await;
    // Ten records of 100 B fill a batch of partition 1: sent long before the linger ends.
    let mut futs = Vec::new();
    for i in 0..12 {
        futs.push(
            producer
                .send(
                    ProducerRecord::new("t")
                        .with_partition(1)
                        .with_value(format!("{i:0>100}")),
                )
                .await
                .unwrap(),
        );
    }
    let first_full = futs.remove(0);
    tokio::time::timeout(Duration::from_secs(10), first_full)
        .await
        .expect("the full batch was held for the linger")
        .unwrap();
    // A record larger than a batch, alone, goes out at once too.
    let large = producer
        .send(
            ProducerRecord::new("t")
                .with_partition(1)
                .with_value("z".repeat(1500)),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), large)
        .await
        .expect("the large record was held for the linger")
        .unwrap();
    producer.flush().await;
    lingering.await.unwrap();
    producer.close().await;
}

/// The in-flight window follows the link: behind a proxy with a 30 ms round trip and a link that
/// takes 20 ms per 512 KiB request, two requests in flight would leave the link idle and five
/// would only queue; the window settles at 1 + ceil(30 / 20) = 3 (4 if the answers come a
/// little slower than the link allows). With `adaptive_in_flight` off it stays at five. Every
/// record arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_window_covers_the_round_trip_of_a_slow_link() {
    let cluster = FakeCluster::start(1).await.unwrap();
    cluster.create_topic("w", 1, 1).unwrap();
    let proxy = krust_testkit::FaultProxy::start(cluster.broker_addr(0))
        .await
        .unwrap();
    cluster.set_advertised(0, "127.0.0.1", proxy.addr().port());
    proxy.set_latency(Duration::from_millis(15));
    // 512 KiB in 20 ms.
    proxy.set_bandwidth(Some(512 * 1024 * 50));
    let n = 16_000u32;
    for adaptive in [true, false] {
        let mut cfg = config(&cluster);
        cfg.client.bootstrap_servers = vec![proxy.addr().to_string()];
        cfg.client.request_timeout = Duration::from_secs(10);
        cfg.batch_size = 512 * 1024;
        // Batches of `batch.size`, not grown while they wait.
        cfg.backlog_batch_size = Some(0);
        cfg.adaptive_in_flight = adaptive;
        let producer = Producer::new(cfg).await.unwrap();
        let mut pending = Vec::new();
        for i in 0..n {
            let rec = ProducerRecord::new("w").with_value(format!("{i:08}{}", "v".repeat(992)));
            pending.push(producer.send(rec).await.unwrap());
        }
        for f in pending {
            f.await.unwrap();
        }
        let stats = producer.stats();
        assert!(stats.requests_sent >= 30, "{stats:?}");
        if adaptive {
            assert!(
                (3..=4).contains(&stats.in_flight_window),
                "window {} for a 30 ms round trip and 20 ms per request",
                stats.in_flight_window
            );
        } else {
            assert_eq!(stats.in_flight_window, 5);
        }
        producer.close().await;
    }
    let keys: Vec<u32> = values(&cluster, "w", 0)
        .iter()
        .map(|v| v[..8].parse().unwrap())
        .collect();
    let expected: Vec<u32> = (0..n).chain(0..n).collect();
    assert_eq!(keys, expected);
    assert!(proxy.stats().throttled > 0 && proxy.stats().delayed > 0);
}

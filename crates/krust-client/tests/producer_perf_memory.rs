//! The producer's memory stays bounded under a sender that never waits for results: records
//! complete while later ones are sent, and an application that collects finished results now
//! and then (`now_or_never` on the oldest futures, as the peer benchmark does every 256 sends)
//! sees every finished one, so it holds at most `buffer.memory`'s worth of pending results.

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt;
use krust_client::producer::{Producer, ProducerConfig, ProducerRecord};
use krust_testkit::{NullBroker, NullBrokerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_results_are_seen_while_sending_so_pending_results_stay_within_buffer_memory() {
    let broker = NullBroker::start(NullBrokerConfig::new().with_partitions(1))
        .await
        .unwrap();
    let mut cfg = ProducerConfig::new(&broker.bootstrap());
    cfg.enable_idempotence = Some(false);
    cfg.linger = Duration::from_millis(5);
    cfg.batch_size = 1_000_000;
    cfg.buffer_memory = 1 << 20;
    let producer = Producer::new(cfg).await.unwrap();
    let value = bytes::Bytes::from(vec![b'x'; 100]);
    let records = 60_000u32;
    let mut pending = VecDeque::new();
    let mut max_pending = 0;
    for i in 0..records {
        let f = producer
            .send(ProducerRecord::new("t").with_value(value.clone()))
            .await
            .unwrap();
        pending.push_back(f);
        if i % 256 != 255 {
            continue;
        }
        while let Some(front) = pending.front_mut() {
            match front.now_or_never() {
                Some(r) => {
                    r.unwrap();
                    pending.pop_front();
                }
                None => break,
            }
        }
        max_pending = max_pending.max(pending.len());
    }
    // 1 MiB of buffer.memory holds under 3,000 such records (100 B + 256 B of bookkeeping):
    // the sender cannot be further ahead of the results than that (plus the 256 between
    // collections).
    assert!(max_pending < 3_500, "{max_pending} results pending at once");
    for f in pending {
        f.await.unwrap();
    }
    producer.close().await;
    assert_eq!(broker.stats().produced_records, records as u64);
    assert_eq!(producer.stats().buffered_bytes, 0);
}

//! krust's producer and consumer against the testkit's null broker (the broker the peer
//! comparison in benches/peer measures client cost with): small counts, checked offsets.

use std::time::Duration;

use krust_client::consumer::{Consumer, ConsumerConfig, StartOffset, TopicPartition};
use krust_client::producer::{Producer, ProducerConfig, ProducerRecord};
use krust_testkit::{NullBroker, NullBrokerConfig};
use krust_wire::record::Compression;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_gets_increasing_offsets_from_the_null_broker() {
    let broker = NullBroker::start(NullBrokerConfig::new().with_partitions(2))
        .await
        .unwrap();
    for idempotent in [false, true] {
        let mut cfg = ProducerConfig::new(&broker.bootstrap());
        cfg.enable_idempotence = Some(idempotent);
        cfg.compression = Compression::Lz4;
        let producer = Producer::new(cfg).await.unwrap();
        let topic = format!("null-{idempotent}");
        let mut futures = Vec::new();
        for i in 0..500u32 {
            let rec = ProducerRecord::new(topic.clone())
                .with_partition((i % 2) as i32)
                .with_value(i.to_be_bytes().to_vec());
            futures.push(producer.send(rec).await.unwrap());
        }
        let mut next = [0i64; 2];
        for f in futures {
            let md = tokio::time::timeout(LIMIT, f).await.unwrap().unwrap();
            let p = md.partition as usize;
            assert_eq!(md.offset, next[p], "offsets per partition are consecutive");
            next[p] += 1;
        }
        assert_eq!(next, [250, 250]);
        producer.close().await;
    }
    let stats = broker.stats();
    assert_eq!(stats.produced_records, 1000);
    assert!(stats.produce_requests >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reads_every_served_record_in_order() {
    for codec in [Compression::None, Compression::Zstd] {
        let broker = NullBroker::start(
            NullBrokerConfig::new()
                .with_partitions(2)
                .with_fetch_end(1_050)
                .with_fetch_record_size(20)
                .with_fetch_batch_records(100)
                .with_fetch_compression(codec),
        )
        .await
        .unwrap();
        let mut consumer = Consumer::connect(ConsumerConfig::new(&broker.bootstrap()))
            .await
            .unwrap();
        let tps = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
        consumer
            .assign(tps.iter().map(|tp| (tp.clone(), StartOffset::Earliest)))
            .await
            .unwrap();
        let mut next = [0i64; 2];
        tokio::time::timeout(LIMIT, async {
            while next.iter().any(|n| *n < 1_050) {
                for r in consumer.poll().await.unwrap() {
                    let p = r.partition as usize;
                    assert_eq!(
                        r.offset, next[p],
                        "{codec:?}: offsets in order, none missing"
                    );
                    assert_eq!(r.value.as_deref(), Some(&[b'x'; 20][..]));
                    next[p] += 1;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(next, [1_050, 1_050]);
        assert_eq!(
            consumer.watermarks(&tps[0]).map(|w| w.high_watermark),
            Some(1_050)
        );
        assert_eq!(broker.stats().fetched_records, 2_100);
    }
}

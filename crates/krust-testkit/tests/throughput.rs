//! 100,000 records through a 3-broker fake cluster over the raw protocol: produce to every
//! partition's leader (pipelined, acks=all), then fetch everything back and check it.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::*;
use krust_testkit::FakeCluster;

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 6;
const PER_BATCH: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_round_trip() {
    let start = Instant::now();
    let c = FakeCluster::start(3).await.unwrap();
    c.create_topic("bulk", PARTITIONS, 3).unwrap();
    let started = start.elapsed();

    // One connection per broker; each partition's batches go to its leader, pipelined.
    let mut conns = HashMap::new();
    for b in 0..3 {
        conns.insert(b, client(&c, b).await);
    }
    let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PARTITIONS as usize];
    let mut sent: HashMap<i32, usize> = HashMap::new();
    let mut n = 0usize;
    while n < RECORDS {
        let p = ((n / PER_BATCH) % PARTITIONS as usize) as i32;
        let vals: Vec<Vec<u8>> = (n..(n + PER_BATCH).min(RECORDS))
            .map(|i| format!("record-{i:06}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
        let (leader, _) = c.leader("bulk", p).unwrap();
        let cl = conns.get_mut(&leader).unwrap();
        cl.send_only(&produce_req("bulk", p, batch(&refs), -1), 9)
            .await
            .unwrap();
        *sent.entry(leader).or_default() += 1;
        n += vals.len();
        expected[p as usize].extend(vals);
    }
    for (b, count) in sent {
        let cl = conns.get_mut(&b).unwrap();
        for _ in 0..count {
            let (_, r) = cl
                .recv::<krust_testkit::kafka_protocol::messages::ProduceRequest>(9)
                .await
                .unwrap();
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let produced = start.elapsed();

    let mut total = 0;
    for p in 0..PARTITIONS {
        let (leader, _) = c.leader("bulk", p).unwrap();
        let cl = conns.get_mut(&leader).unwrap();
        let mut offset = 0i64;
        let mut got = Vec::new();
        loop {
            let data = fetch(cl, "bulk", p, offset, 0).await;
            assert_eq!(data.error_code, 0);
            let vals = values(&data);
            if vals.is_empty() {
                break;
            }
            for (o, v) in vals {
                if o >= offset {
                    got.push(v);
                }
            }
            offset = got.len() as i64;
            if offset >= data.high_watermark {
                break;
            }
        }
        assert_eq!(got, expected[p as usize], "partition {p}");
        total += got.len();
    }
    assert_eq!(total, RECORDS);
    let done = start.elapsed();
    eprintln!(
        "100k records over 3 brokers: cluster up {started:?}, produced {produced:?}, consumed and checked {done:?}"
    );
    assert!(done.as_secs_f64() < 5.0, "took {done:?}");
}

//! Differential tests of the consumer embedded protocol: random subscriptions and assignments
//! at every version are encoded by `kafka-protocol` (with the Java-style version header) and
//! decoded by krust's bounded decoders; hostile bytes fail cleanly.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::{Decodable, Encodable};
use krust_wire::group_protocol::{
    decode_assignment, decode_assignment_body, decode_subscription, decode_subscription_body,
    encode_assignment, encode_subscription, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, StickyUserData,
};
use krust_wire::protocol::RandomSource;

const SEEDS: u64 = 500;

fn with_header<T: Encodable>(v: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    v.encode(&mut buf, version).expect("oracle encode");
    buf.freeze()
}

#[test]
fn subscription_matches_kafka_protocol_at_every_version() {
    for v in 0..=3i16 {
        for seed in 0..SEEDS {
            let mut rnd = RandomSource::new(seed * 10 + v as u64, false);
            let value = decode_subscription_body(&mut rnd, v).unwrap();
            let bytes = with_header(&value, v);
            let (ver, ours) = decode_subscription(bytes.clone()).unwrap();
            assert_eq!((ver, &ours), (v, &value), "v{v} seed {seed}");
            let theirs = ConsumerProtocolSubscription::decode(&mut bytes.slice(2..), v).unwrap();
            assert_eq!(theirs, value, "oracle v{v} seed {seed}");
            assert_eq!(encode_subscription(&value, v).unwrap(), bytes);
            for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert!(
                        decode_subscription(bytes.slice(..cut)).is_err(),
                        "cut {cut}"
                    );
                }
            }
        }
    }
}

#[test]
fn assignment_matches_kafka_protocol_at_every_version() {
    for v in 0..=3i16 {
        for seed in 0..SEEDS {
            let mut rnd = RandomSource::new(seed * 10 + v as u64, false);
            let value = decode_assignment_body(&mut rnd, v).unwrap();
            let bytes = with_header(&value, v);
            let (ver, ours) = decode_assignment(bytes.clone()).unwrap();
            assert_eq!((ver, &ours), (v, &value), "v{v} seed {seed}");
            let theirs = ConsumerProtocolAssignment::decode(&mut bytes.slice(2..), v).unwrap();
            assert_eq!(theirs, value);
            assert_eq!(encode_assignment(&value, v).unwrap(), bytes);
            for cut in [1, 2, bytes.len() / 2, bytes.len() - 1] {
                if cut > 0 && cut < bytes.len() {
                    assert!(decode_assignment(bytes.slice(..cut)).is_err(), "cut {cut}");
                }
            }
        }
    }
}

#[test]
fn newer_versions_are_read_as_v3_and_trailing_fields_ignored() {
    let mut rnd = RandomSource::new(7, false);
    let value = decode_subscription_body(&mut rnd, 3).unwrap();
    let v3 = with_header(&value, 3);
    let mut v5 = BytesMut::from(&v3[..]);
    v5[0..2].copy_from_slice(&5i16.to_be_bytes());
    v5.put_slice(b"future fields");
    let (ver, got) = decode_subscription(v5.freeze()).unwrap();
    assert_eq!(ver, 5);
    assert_eq!(got, value);
    // But at a known version trailing garbage is an error.
    let mut bad = BytesMut::from(&v3[..]);
    bad.put_u8(0);
    assert!(decode_subscription(bad.freeze()).is_err());
}

#[test]
fn empty_assignment_bytes_are_an_empty_assignment() {
    let (v, a) = decode_assignment(Bytes::new()).unwrap();
    assert_eq!(v, 0);
    assert!(a.assigned_partitions.is_empty());
}

#[test]
fn hostile_bytes_fail_without_allocating_from_counts() {
    // Version 0, topic count 2^31-1 in 6 bytes.
    let b = Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff]);
    assert!(decode_subscription(b.clone()).is_err());
    assert!(decode_assignment(b).is_err());
    // Negative version.
    assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 0])).is_err());
    // A partition count larger than the bytes left.
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(1);
    b.put_u8(b't');
    b.put_i32(1_000_000);
    assert!(decode_assignment(b.freeze()).is_err());
    // Random garbage never panics.
    let mut rnd = RandomSource::new(99, false);
    for _ in 0..20_000 {
        let n = rnd.below(40) as usize;
        let v: Vec<u8> = (0..n).map(|_| rnd.next_u64() as u8).collect();
        let _ = decode_subscription(Bytes::from(v.clone()));
        let _ = decode_assignment(Bytes::from(v.clone()));
        let _ = StickyUserData::decode(Bytes::from(v));
    }
}

#[test]
fn sticky_user_data_round_trips() {
    let d = StickyUserData {
        previous: vec![("a".into(), vec![0, 2]), ("b".into(), vec![])],
        generation: Some(7),
    };
    assert_eq!(StickyUserData::decode(d.encode()).unwrap(), d);
    // v0 data (no generation).
    let mut b = BytesMut::new();
    b.put_i32(0);
    assert_eq!(
        StickyUserData::decode(b.freeze()).unwrap(),
        StickyUserData::default()
    );
}

#[test]
fn v0_refuses_owned_partitions() {
    let mut rnd = RandomSource::new(3, false);
    let mut s = decode_subscription_body(&mut rnd, 1).unwrap();
    s.owned_partitions
        .push(kafka_protocol::messages::consumer_protocol_subscription::TopicPartition::default());
    assert!(encode_subscription(&s, 0).is_err());
    assert!(encode_subscription(&s, 4).is_err());
}

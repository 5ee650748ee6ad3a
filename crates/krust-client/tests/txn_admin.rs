//! Transaction admin (ListTransactions / DescribeTransactions) against krust-testkit's fake
//! cluster: transactions opened with raw InitProducerId / AddPartitionsToTxn requests, then
//! listed by prefix and state, and described; a broker without the APIs gives a clear error.

use krust_client::admin::{Admin, TransactionFilter};
use krust_client::{ClientConfig, Cluster};
use krust_testkit::kafka_protocol::messages::ApiKey as FakeApi;
use krust_testkit::{ClusterConfig, FakeCluster};
use krust_wire::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use krust_wire::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, FindCoordinatorRequest, InitProducerIdRequest, TopicName,
    TransactionalId,
};
use krust_wire::kafka_protocol::protocol::StrBytes;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn connect(fake: &FakeCluster) -> Cluster {
    Cluster::connect(ClientConfig::new(&fake.bootstrap()))
        .await
        .expect("connect")
}

/// Opens a transaction for `id` and adds `partitions` of topic `t` (none: stays Empty).
async fn open(cluster: &Cluster, id: &str, partitions: &[i32]) {
    let (_, v, resp) = cluster
        .send_any(|v| {
            let mut r = FindCoordinatorRequest::default();
            if v >= 4 {
                r.coordinator_keys = vec![sb(id)];
            } else {
                r.key = sb(id);
            }
            r.key_type = 1;
            r
        })
        .await
        .unwrap();
    let node = if v >= 4 {
        resp.coordinators[0].node_id.0
    } else {
        resp.node_id.0
    };
    let (_, init) = cluster
        .send(node, |_| {
            let mut r = InitProducerIdRequest::default();
            r.transactional_id = Some(TransactionalId(sb(id)));
            r.transaction_timeout_ms = 60_000;
            r.producer_id = (-1).into();
            r.producer_epoch = -1;
            r
        })
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    if partitions.is_empty() {
        return;
    }
    let (_, add) = cluster
        .send(node, |_| {
            let mut r = AddPartitionsToTxnRequest::default();
            r.v3_and_below_transactional_id = TransactionalId(sb(id));
            r.v3_and_below_producer_id = init.producer_id;
            r.v3_and_below_producer_epoch = init.producer_epoch;
            let mut t = AddPartitionsToTxnTopic::default();
            t.name = TopicName(sb("t"));
            t.partitions = partitions.to_vec();
            r.v3_and_below_topics = vec![t];
            r
        })
        .await
        .unwrap();
    for t in add.results_by_topic_v3_and_below {
        for p in t.results_by_partition {
            assert_eq!(p.partition_error_code, 0);
        }
    }
}

#[tokio::test]
async fn list_and_describe_transactions() {
    let fake = FakeCluster::with_config(ClusterConfig::new().with_brokers(3))
        .await
        .unwrap();
    fake.create_topic("t", 2, 1).unwrap();
    let cluster = connect(&fake).await;
    open(&cluster, "app-1", &[0, 1]).await;
    open(&cluster, "app-2", &[]).await;
    open(&cluster, "other-1", &[0]).await;
    let admin = Admin::new(cluster);

    let all = admin
        .list_transactions(&TransactionFilter::default())
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|t| t.transactional_id.as_str()).collect();
    assert_eq!(ids, ["app-1", "app-2", "other-1"]);

    let app = admin
        .list_transactions(&TransactionFilter {
            prefix: Some("app-".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(app.len(), 2);

    let ongoing = admin
        .list_transactions(&TransactionFilter {
            states: vec!["Ongoing".into()],
            prefix: Some("app-".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ongoing.len(), 1);
    assert_eq!(ongoing[0].transactional_id, "app-1");
    assert_eq!(ongoing[0].state, "Ongoing");

    let d = admin
        .describe_transactions(&["other-1", "app-1"])
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].transactional_id, "other-1");
    assert_eq!(d[1].state, "Ongoing");
    let parts: Vec<i32> = d[1].partitions.iter().map(|p| p.partition).collect();
    assert_eq!(parts, [0, 1]);
    assert_eq!(d[1].timeout_ms, 60_000);
    assert!(d[1].producer_id >= 0);

    let err = admin.describe_transactions(&["missing"]).await.unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    let err = admin
        .list_transactions(&TransactionFilter {
            states: vec!["Bogus".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Bogus"), "{err}");
}

#[tokio::test]
async fn brokers_without_the_apis_give_a_clear_error() {
    let fake = FakeCluster::with_config(
        ClusterConfig::new()
            .without_api(FakeApi::ListTransactions)
            .without_api(FakeApi::DescribeTransactions),
    )
    .await
    .unwrap();
    let admin = Admin::new(connect(&fake).await);
    let err = admin
        .list_transactions(&TransactionFilter::default())
        .await
        .unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains("ListTransactions") && m.contains("does not support"),
        "{m}"
    );
    let err = admin.describe_transactions(&["x"]).await.unwrap_err();
    assert!(err.to_string().contains("DescribeTransactions"), "{err}");
}

#[tokio::test]
async fn describe_follows_a_moved_coordinator() {
    let fake = FakeCluster::with_config(ClusterConfig::new().with_brokers(2))
        .await
        .unwrap();
    fake.create_topic("t", 1, 1).unwrap();
    let cluster = connect(&fake).await;
    open(&cluster, "mover", &[0]).await;
    let admin = Admin::new(cluster);
    // The first describe lands on a broker that is no longer the coordinator.
    fake.fail_next(FakeApi::DescribeTransactions, 16);
    let d = admin.describe_transactions(&["mover"]).await.unwrap();
    assert_eq!(d[0].state, "Ongoing");
}

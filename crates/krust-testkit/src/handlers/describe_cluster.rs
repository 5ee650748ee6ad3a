//! DescribeCluster: the brokers as advertised, the cluster id and the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::sb;
use crate::cluster::Ctx;

pub(crate) fn handle(ctx: &Ctx<'_>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let s = ctx.shared.lock();
    DescribeClusterResponse::default()
        .with_cluster_id(sb(&s.cfg.cluster_id))
        .with_controller_id(BrokerId(0))
        .with_brokers(
            s.brokers
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(i as i32))
                        .with_host(sb(&b.advertised.0))
                        .with_port(i32::from(b.advertised.1))
                })
                .collect(),
        )
}

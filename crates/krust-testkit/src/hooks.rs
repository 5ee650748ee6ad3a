//! Fault hooks and the request log.
//!
//! A hook sees every request that matches its filter (API key, optionally broker) *before* the
//! fake handles it, and may take it over by returning an [`Action`]; returning `None` lets the
//! request through (an observer). A `once` hook is removed the first time it returns an action,
//! so "fail the next Produce" is a `once` hook that always returns an action, and "fail the
//! third Produce" is a `once` hook that counts and returns `None` twice.

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

/// A request as a hook sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The broker the request was sent to.
    pub broker: i32,
    /// The API.
    pub api_key: ApiKey,
    /// The request version.
    pub version: i16,
    /// The request's correlation id.
    pub correlation_id: i32,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// The decoded request.
    pub body: RequestKind,
}

/// What a hook does with a request it takes over.
#[derive(Debug)]
pub enum Action {
    /// Answer with this response instead of the fake's own.
    Respond(Box<ResponseKind>),
    /// Answer with this error code at every level of the response (top level, and each topic,
    /// partition or group the request named).
    Error(i16),
    /// Close the connection without answering (the client sees a disconnect with the request
    /// in flight).
    Close,
    /// Handle the request normally, then drop the response and close the connection (the
    /// request took effect; its acknowledgement was lost).
    DropResponse,
    /// Never answer. Later requests on the same connection wait behind it (Kafka answers a
    /// connection's requests in order), requests on other connections proceed.
    Hang,
    /// Handle the request after this delay; other connections proceed meanwhile.
    Delay(Duration),
    /// Delay, then apply the inner action.
    DelayThen(Duration, Box<Action>),
}

/// The closure type of a hook.
pub type HookFn = Box<dyn FnMut(&Request) -> Option<Action> + Send>;

/// Which requests a hook sees and how long it lives.
#[derive(Debug, Clone, Copy)]
pub struct Intercept {
    pub(crate) api: Option<ApiKey>,
    pub(crate) broker: Option<i32>,
    pub(crate) once: bool,
}

impl Intercept {
    /// Requests of `api` on any broker, until removed.
    pub fn api(api: ApiKey) -> Self {
        Intercept {
            api: Some(api),
            broker: None,
            once: false,
        }
    }
    /// Every request on any broker, until removed.
    pub fn all() -> Self {
        Intercept {
            api: None,
            broker: None,
            once: false,
        }
    }
    /// Only requests sent to `broker`.
    pub fn on_broker(mut self, broker: i32) -> Self {
        self.broker = Some(broker);
        self
    }
    /// Remove the hook the first time it returns an action.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }
}

/// Identifies an installed hook, for [`FakeCluster::remove_hook`](crate::FakeCluster::remove_hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HookId(pub(crate) u64);

/// An installed hook. The closure sits behind its own mutex so the hook list is not locked
/// while it runs (a hook may install or remove hooks, or drive the cluster).
#[derive(Clone)]
pub(crate) struct Hook {
    pub(crate) id: HookId,
    pub(crate) filter: Intercept,
    pub(crate) f: std::sync::Arc<std::sync::Mutex<HookFn>>,
    /// Set when a `once` hook has fired (so a concurrent request cannot fire it again).
    pub(crate) fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One produced batch as recorded in the request log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedBatch {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Producer id (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Base sequence (-1 when not idempotent).
    pub base_sequence: i32,
    /// Records in the batch.
    pub record_count: i32,
    /// Whether the batch is transactional.
    pub transactional: bool,
}

/// One entry of the request log.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// When the request arrived, since the cluster started.
    pub at: Duration,
    /// The broker it was sent to.
    pub broker: i32,
    /// The API.
    pub api_key: ApiKey,
    /// The version.
    pub version: i16,
    /// The correlation id.
    pub correlation_id: i32,
    /// The client id.
    pub client_id: Option<String>,
    /// For Produce: each batch's identity, in request order.
    pub batches: Vec<ProducedBatch>,
}

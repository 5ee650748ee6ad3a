//! [`GroupConsumer`]: the assign-mode [`Consumer`] driven by a [`GroupMember`]: the group
//! decides the partitions, the consumer's positions start at the committed offsets (or at
//! `auto.offset.reset` where nothing is committed), and every poll tells the group what was
//! consumed (for auto-commit and commit-on-revoke) and that the application is alive
//! (`max.poll.interval.ms`).

use std::collections::BTreeMap;
use std::time::Duration;

use krust_core::fetch::{OffsetReset, StartOffset, TopicPartition};
use krust_core::group::OffsetAndMetadata;

use super::{GroupMember, GroupSettings, Rebalance, Subscription};
use crate::consumer::{Consumer, ConsumerRecord};
use crate::error::{Error, Result};

/// A consumer that subscribes through a consumer group.
pub struct GroupConsumer {
    consumer: Consumer,
    member: GroupMember,
    fatal: Option<String>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("member", &self.member)
            .finish()
    }
}

impl GroupConsumer {
    /// Joins the group in `settings` with `consumer` (whose current assignment is dropped) and
    /// subscribes to `subscription`.
    pub fn subscribe(
        mut consumer: Consumer,
        settings: GroupSettings,
        subscription: Subscription,
    ) -> Result<Self> {
        let old = consumer.assignment();
        consumer.unassign(old.iter());
        let member = GroupMember::join(consumer.cluster().clone(), settings, subscription)?;
        Ok(GroupConsumer {
            consumer,
            member,
            fatal: None,
        })
    }

    /// The group member (assignment, group metadata for transactions, commits).
    pub fn member(&self) -> &GroupMember {
        &self.member
    }

    /// The underlying consumer (positions, pause/resume, watermarks).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Applies pending rebalance events to the consumer's assignment.
    async fn apply_events(&mut self) -> Result<()> {
        while let Some(ev) = self.member.try_next_event() {
            self.apply(ev).await?;
        }
        if let Some(e) = &self.fatal {
            return Err(Error::Other(format!("consumer group member failed: {e}")));
        }
        Ok(())
    }

    async fn apply(&mut self, ev: Rebalance) -> Result<()> {
        match ev {
            Rebalance::Assigned { partitions, .. } => {
                let reset = match self.consumer.config().auto_offset_reset {
                    OffsetReset::Earliest => StartOffset::Earliest,
                    // `none` has no position to fall back on; Java raises an error there. krust
                    // starts at the end, like `latest`, and logs nothing more.
                    OffsetReset::Latest | OffsetReset::None => StartOffset::Latest,
                };
                let starts: Vec<(TopicPartition, StartOffset)> = partitions
                    .into_iter()
                    .map(|(tp, c)| {
                        let s = c.map_or(reset, |o| StartOffset::Offset(o.offset));
                        (tp, s)
                    })
                    .collect();
                if !starts.is_empty() {
                    self.consumer.incremental_assign(starts).await?;
                }
            }
            Rebalance::Revoked { partitions, guard } => {
                self.consumer.unassign(partitions.iter());
                drop(guard);
            }
            Rebalance::Lost { partitions, .. } => {
                self.consumer.unassign(partitions.iter());
            }
            Rebalance::Fatal(e) => self.fatal = Some(e),
        }
        Ok(())
    }

    /// Waits for records from the group's partitions (handling rebalances in between).
    ///
    /// Cancel safety: cancel safe as [`Consumer::poll`] is; a rebalance event taken before the
    /// cancellation has been applied.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        loop {
            if let Some(r) = self.poll_timeout(Duration::from_millis(200)).await? {
                return Ok(r);
            }
        }
    }

    /// Like [`GroupConsumer::poll`], giving up (with `None`) after `timeout`.
    pub async fn poll_timeout(&mut self, timeout: Duration) -> Result<Option<Vec<ConsumerRecord>>> {
        self.apply_events().await?;
        self.member.polled();
        let recs = self.consumer.poll_timeout(timeout).await?;
        self.apply_events().await?;
        let owned = self.member.assignment();
        let recs: Vec<ConsumerRecord> = recs
            .into_iter()
            .filter(|r| owned.contains(&TopicPartition::new(r.topic.clone(), r.partition)))
            .collect();
        let mut last: BTreeMap<TopicPartition, (i64, Option<i32>)> = BTreeMap::new();
        for r in &recs {
            last.insert(
                TopicPartition::new(r.topic.clone(), r.partition),
                (r.offset + 1, r.leader_epoch),
            );
        }
        for (tp, (next, epoch)) in last {
            self.member.consumed(
                tp,
                OffsetAndMetadata {
                    offset: next,
                    leader_epoch: epoch,
                    metadata: None,
                },
            );
        }
        Ok((!recs.is_empty()).then_some(recs))
    }

    /// Commits the consumer's current positions of the owned partitions and waits.
    pub async fn commit(&mut self) -> Result<()> {
        let owned = self.member.assignment();
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = owned
            .into_iter()
            .filter_map(|tp| {
                let c = self.consumer.cursor(&tp)?;
                Some((
                    tp,
                    OffsetAndMetadata {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: None,
                    },
                ))
            })
            .collect();
        self.member.commit(offsets).await
    }

    /// Leaves the group (committing consumed positions first with auto-commit).
    pub async fn close(mut self) {
        let closing = self.member.clone();
        let close = tokio::spawn(async move { closing.close().await });
        // Release revocations while the member leaves.
        while let Some(ev) = self.member.next_event().await {
            let _ = self.apply(ev).await;
        }
        let _ = close.await;
    }
}

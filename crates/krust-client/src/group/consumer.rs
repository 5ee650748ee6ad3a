//! [`GroupConsumer`]: the assign-mode [`Consumer`] driven by a [`GroupMember`]: the group
//! decides the partitions, the consumer's positions start at the committed offsets (or at
//! `auto.offset.reset` where nothing is committed), and every poll tells the group what was
//! consumed (for auto-commit and commit-on-revoke) and that the application is alive
//! (`max.poll.interval.ms`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use krust_core::fetch::{OffsetReset, StartOffset, TopicPartition};
use krust_core::group::{GroupMetadata, OffsetAndMetadata};

use super::{CommittedRetry, GroupMember, GroupSettings, Rebalance, Subscription};
use crate::consumer::{Consumer, ConsumerRecord};
use crate::error::{Error, Result};

/// How many times [`GroupConsumer::rewind_to_committed`] retries a retriable offset lookup.
const REWIND_RETRIES: u32 = 20;

/// A consumer that subscribes through a consumer group.
pub struct GroupConsumer {
    consumer: Consumer,
    member: GroupMember,
    /// The membership the application has applied (the generation of the last
    /// [`Rebalance::Assigned`] handled here): the one the records handed out belong to.
    applied: GroupMetadata,
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
        let applied = member.group_metadata();
        Ok(GroupConsumer {
            consumer,
            member,
            applied,
            fatal: None,
        })
    }

    /// The group member (assignment, group metadata for transactions, commits).
    pub fn member(&self) -> &GroupMember {
        &self.member
    }

    /// The group metadata (generation, member id, instance id) that the records returned by
    /// the last poll belong to: pass this to `send_offsets_to_transaction` (KIP-447).
    ///
    /// It changes only inside a poll, when the poll applies a new assignment (as the Java
    /// client's `groupMetadata()`), never in the background: the member task may already be in
    /// a newer generation, in which the partitions of records handed out earlier can belong to
    /// another member; offsets sent with that newer generation would be accepted and the
    /// records processed twice. With this one a zombie's offsets are rejected instead.
    pub fn group_metadata(&self) -> GroupMetadata {
        self.applied.clone()
    }

    /// The underlying consumer (positions, pause/resume, watermarks).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Applies pending rebalance events to the consumer's assignment; adds every partition an
    /// event named to `touched`.
    async fn apply_events(&mut self, touched: &mut BTreeSet<TopicPartition>) -> Result<()> {
        while let Some(ev) = self.member.try_next_event() {
            match &ev {
                Rebalance::Assigned { partitions, .. } => {
                    touched.extend(partitions.keys().cloned())
                }
                Rebalance::Revoked { partitions, .. } | Rebalance::Lost { partitions, .. } => {
                    touched.extend(partitions.iter().cloned())
                }
                Rebalance::Fatal(_) => {}
            }
            self.apply(ev).await?;
        }
        if let Some(e) = &self.fatal {
            return Err(Error::Other(format!("consumer group member failed: {e}")));
        }
        Ok(())
    }

    async fn apply(&mut self, ev: Rebalance) -> Result<()> {
        match ev {
            Rebalance::Assigned {
                partitions,
                metadata,
            } => {
                self.applied = metadata;
                let reset = self.reset_start();
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

    /// Where a partition without a committed offset starts (`auto.offset.reset`).
    fn reset_start(&self) -> StartOffset {
        match self.consumer.config().auto_offset_reset {
            OffsetReset::Earliest => StartOffset::Earliest,
            // `none` has no position to fall back on; Java raises an error there. krust
            // starts at the end, like `latest`, and logs nothing more.
            OffsetReset::Latest | OffsetReset::None => StartOffset::Latest,
        }
    }

    /// Moves every partition this consumer owns back to the group's committed offset (where
    /// nothing is committed: `auto.offset.reset`), dropping what was fetched beyond it. The
    /// move after an aborted transaction: the records polled since the last commit are read
    /// again. Retriable errors of the offset lookup are retried, up to 20 times with the retry
    /// backoff (a transaction holding offsets may still be completing); others, or the last
    /// one, are returned and nothing moves.
    ///
    /// Cancel safety: not cancel safe; a cancelled call may have moved some partitions.
    pub async fn rewind_to_committed(&mut self) -> Result<()> {
        let owned = self.consumer.assignment();
        if owned.is_empty() {
            return Ok(());
        }
        let committed = self
            .member
            .committed_retrying(&owned, CommittedRetry::Bounded(REWIND_RETRIES))
            .await?;
        let reset = self.reset_start();
        for tp in owned {
            let start = match committed.get(&tp).cloned().flatten() {
                Some(o) => StartOffset::Offset(o.offset),
                None => reset,
            };
            self.consumer.seek(&tp, start)?;
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
    ///
    /// Records of a partition that a rebalance event named while the poll waited are dropped
    /// (they were fetched under the previous membership; the partition's position has been
    /// reset to its committed offset, so they are read again by whoever owns it now).
    pub async fn poll_timeout(&mut self, timeout: Duration) -> Result<Option<Vec<ConsumerRecord>>> {
        self.apply_events(&mut BTreeSet::new()).await?;
        self.member.polled();
        let recs = self.consumer.poll_timeout(timeout).await?;
        let mut touched = BTreeSet::new();
        self.apply_events(&mut touched).await?;
        let owned = self.member.assignment();
        let recs: Vec<ConsumerRecord> = recs
            .into_iter()
            .filter(|r| {
                let tp = TopicPartition::new(r.topic.clone(), r.partition);
                owned.contains(&tp) && !touched.contains(&tp)
            })
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

//! Shared harness of the group tests: member "applications" that record what they own in one
//! shared map and fail the test the moment a partition has two owners.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use krust_client::group::{GroupMember, GroupSettings, Rebalance, Subscription};
use krust_client::Cluster;
use krust_core::fetch::TopicPartition;
use tokio::sync::watch;

#[derive(Default)]
pub struct State {
    pub partitions: usize,
    pub owners: BTreeMap<TopicPartition, usize>,
    pub revoked: BTreeMap<usize, BTreeSet<TopicPartition>>,
    pub assigned_events: BTreeMap<usize, usize>,
    pub lost: usize,
}

impl State {
    pub fn of(&self, m: usize) -> BTreeSet<TopicPartition> {
        self.owners
            .iter()
            .filter(|(_, o)| **o == m)
            .map(|(tp, _)| tp.clone())
            .collect()
    }
    /// Every partition owned, only by these members.
    pub fn complete_with(&self, members: &[usize]) -> bool {
        self.owners.len() == self.partitions && self.owners.values().all(|o| members.contains(o))
    }
    /// Counts differ by at most one among `members`.
    pub fn balanced(&self, members: &[usize]) -> bool {
        let counts: Vec<usize> = members.iter().map(|m| self.of(*m).len()).collect();
        counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1
    }
}

pub struct App {
    pub member: GroupMember,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub struct World {
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
}

impl World {
    pub fn new(partitions: usize) -> World {
        World {
            state: Arc::new(Mutex::new(State {
                partitions,
                ..State::default()
            })),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    pub fn spawn(
        &self,
        idx: usize,
        cluster: &Cluster,
        settings: GroupSettings,
        sub: Subscription,
    ) -> App {
        let member = GroupMember::join(cluster.clone(), settings, sub).expect("join");
        let m = member.clone();
        let world = self.clone();
        let task = tokio::spawn(async move {
            let trace = std::env::var("KRUST_GROUP_TEST_TRACE").is_ok();
            let born = Instant::now();
            while let Some(ev) = m.next_event().await {
                if trace {
                    eprintln!(
                        "member {idx} at {:?}: {ev:?} gen {:?}",
                        born.elapsed(),
                        m.group_metadata().generation_id
                    );
                }
                {
                    let mut s = world.state.lock().unwrap();
                    match ev {
                        Rebalance::Assigned { partitions, .. } => {
                            *s.assigned_events.entry(idx).or_default() += 1;
                            for tp in partitions.keys() {
                                if let Some(o) = s.owners.insert(tp.clone(), idx) {
                                    assert_eq!(
                                        o, idx,
                                        "{tp} given to member {idx} while member {o} owns it"
                                    );
                                }
                            }
                        }
                        Rebalance::Revoked { partitions, guard } => {
                            for tp in &partitions {
                                if s.owners.get(tp) == Some(&idx) {
                                    s.owners.remove(tp);
                                }
                                s.revoked.entry(idx).or_default().insert(tp.clone());
                            }
                            drop(guard);
                        }
                        Rebalance::Lost { partitions, .. } => {
                            s.lost += 1;
                            for tp in &partitions {
                                if s.owners.get(tp) == Some(&idx) {
                                    s.owners.remove(tp);
                                }
                            }
                        }
                        Rebalance::Fatal(e) => panic!("member {idx} failed: {e}"),
                    }
                }
                world.changed.send_modify(|v| *v += 1);
            }
        });
        App { member, task }
    }

    pub fn state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    pub fn snapshot(&self) -> BTreeMap<usize, BTreeSet<TopicPartition>> {
        let s = self.state.lock().unwrap();
        let mut out: BTreeMap<usize, BTreeSet<TopicPartition>> = BTreeMap::new();
        for (tp, o) in &s.owners {
            out.entry(*o).or_default().insert(tp.clone());
        }
        out
    }

    pub fn revoked(&self, m: usize) -> BTreeSet<TopicPartition> {
        self.state(|s| s.revoked.get(&m).cloned().unwrap_or_default())
    }

    pub fn clear_revoked(&self) {
        self.state.lock().unwrap().revoked.clear();
    }

    pub fn assigned_events(&self, m: usize) -> usize {
        self.state(|s| s.assigned_events.get(&m).copied().unwrap_or(0))
    }

    /// Waits (at most 60 s) until `pred` holds, re-checking on every ownership change.
    pub async fn wait(&self, mut pred: impl FnMut(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if self.state(&mut pred) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "condition not reached; owners {:?}",
                self.snapshot()
            );
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }
}

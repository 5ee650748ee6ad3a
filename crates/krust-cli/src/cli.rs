//! The command line, as clap derive types. Flags follow kcat where kcat has one (`-b -t -p -K
//! -H -z -X -o -c -e -f`), and Kafka's perf-test tools for `bench`.

use clap::{Args, Parser, Subcommand};

use crate::args::{Acks, Brokers, Codec, Delimiter, Header, Property, StartAt, TopicSpec};
use crate::format::Format;

/// krust: produce, consume and administer Kafka topics (a pure-Rust, kcat-like tool).
#[derive(Debug, Parser)]
#[command(
    name = "krust",
    version,
    about,
    propagate_version = true,
    after_help = "Environment: KRUST_BROKER is the default for -b; KRUST_LOG=debug (or any \
                  tracing filter) prints the client's logs on stderr."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce one record per stdin line.
    Produce(ProduceArgs),
    /// Print records of a topic.
    Consume(ConsumeArgs),
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Print the earliest and latest offset of every partition of a topic.
    Offsets(OffsetsArgs),
    /// List, describe, reset the offsets of, or delete consumer groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Measure producer or consumer throughput and latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run an in-process fake Kafka cluster until interrupted (for tests and demos).
    FakeCluster(FakeClusterArgs),
    /// List, describe, abort or complete transactions; copy a topic exactly once.
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Run a stream job: read a topic, transform each value, write another topic, with a
    /// delivery guarantee (krust-stream). Scale out by starting more with the same -G.
    Pipe(PipeArgs),
}

/// Connection flags shared by every command that talks to a broker.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Bootstrap broker(s), HOST:PORT[,HOST:PORT...].
    #[arg(
        short = 'b',
        long = "brokers",
        env = "KRUST_BROKER",
        value_name = "HOST:PORT"
    )]
    pub brokers: Brokers,
    /// Client property (Kafka name), e.g. -X client.id=me -X request.timeout.ms=5000.
    #[arg(short = 'X', value_name = "PROP=VALUE")]
    pub properties: Vec<Property>,
}

/// `krust produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic to write to.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Partition to write to (default: the partitioner picks, by key when there is one).
    #[arg(short = 'p', long = "partition")]
    pub partition: Option<i32>,
    /// Key delimiter: the text before its first occurrence in a line is the key.
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<Delimiter>,
    /// Header added to every record (repeatable); NAME alone gives a null value.
    #[arg(short = 'H', value_name = "NAME=VALUE")]
    pub headers: Vec<Header>,
    /// Compression codec.
    #[arg(short = 'z', long = "compression", default_value = "none")]
    pub compression: Codec,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long = "acks", default_value = "all", allow_hyphen_values = true)]
    pub acks: Acks,
    /// Idempotent producer (enable.idempotence=true; needs --acks all). Without this flag or
    /// --no-idempotent it is on with --acks all and off with 0 or 1.
    #[arg(long = "idempotent", conflicts_with = "no_idempotent")]
    pub idempotent: bool,
    /// Not idempotent (enable.idempotence=false).
    #[arg(long = "no-idempotent")]
    pub no_idempotent: bool,
    /// Produce in transactions with this transactional.id (idempotent, acks all).
    #[arg(long = "transactional-id", value_name = "ID")]
    pub transactional_id: Option<String>,
    /// Records per transaction (with --transactional-id); the last one may be smaller.
    #[arg(
        long = "txn-size",
        value_name = "N",
        default_value_t = 1000,
        requires = "transactional_id",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub txn_size: u64,
    /// Abort every K-th transaction instead of committing it (for testing readers); 0 never.
    #[arg(
        long = "abort-every",
        value_name = "K",
        default_value_t = 0,
        requires = "transactional_id"
    )]
    pub abort_every: u64,
}

impl ProduceArgs {
    /// The `enable.idempotence` property the flags ask for, if any.
    pub fn idempotence(&self) -> Option<bool> {
        idempotence_flag(self.idempotent, self.no_idempotent)
    }
}

/// `--idempotent` / `--no-idempotent` as an explicit `enable.idempotence`, or `None` (the
/// producer's default).
fn idempotence_flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// `krust consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic to read; with -G repeatable, and a topic starting with ^ is a regex.
    #[arg(short = 't', long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Join this consumer group (kcat's -G): the group assigns the partitions, reading starts
    /// at its committed offsets, and consumed offsets are committed (enable.auto.commit).
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Partition(s) to read (repeatable; default: all). Not with -G.
    #[arg(short = 'p', long = "partition")]
    pub partitions: Vec<i32>,
    /// Start: beginning, end, OFFSET, -N (N before the end) or @TIMESTAMP_MS. With -G, where a
    /// partition without a committed offset starts: beginning or end.
    #[arg(
        short = 'o',
        long = "offset",
        default_value = "beginning",
        allow_hyphen_values = true
    )]
    pub start: StartAt,
    /// Stop after COUNT records.
    #[arg(short = 'c', long = "count")]
    pub count: Option<u64>,
    /// Exit once the end of every partition is reached.
    #[arg(short = 'e', long = "exit")]
    pub exit_at_end: bool,
    /// Output format (kcat tokens: %t %p %o %k %K %s %S %T %h %%, escapes \n \t \r \0 \\).
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Which records of transactions to read: read_committed (committed only, up to the last
    /// stable offset) or read_uncommitted (everything, the default). Same as -X isolation.level.
    #[arg(long = "isolation", value_name = "LEVEL")]
    pub isolation: Option<Isolation>,
}

/// `--isolation`: the consumer's `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional ones), up to the LSO.
    #[value(name = "read_committed")]
    ReadCommitted,
    /// Every record up to the high watermark, aborted ones included.
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
}

impl Isolation {
    /// The `isolation.level` property value.
    pub fn as_property(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// `krust topics ...`.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create(TopicCreateArgs),
    /// List topics.
    List(TopicListArgs),
    /// Show partitions, leaders and replicas of topics.
    Describe(TopicNamesArgs),
    /// Delete topics.
    Delete(TopicNamesArgs),
}

/// `krust topics create`.
#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic name.
    pub topic: String,
    /// Number of partitions.
    #[arg(short = 'p', long = "partitions", default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor.
    #[arg(short = 'r', long = "replication-factor", default_value_t = 1)]
    pub replication: i16,
    /// Topic config (repeatable), e.g. -c retention.ms=60000.
    #[arg(short = 'c', long = "config", value_name = "NAME=VALUE")]
    pub configs: Vec<Property>,
}

/// `krust topics list`.
#[derive(Debug, Args)]
pub struct TopicListArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Include internal topics (such as __consumer_offsets).
    #[arg(long)]
    pub internal: bool,
}

/// `krust topics describe|delete`.
#[derive(Debug, Args)]
pub struct TopicNamesArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic names.
    #[arg(required = true)]
    pub topics: Vec<String>,
}

/// `krust offsets`.
#[derive(Debug, Args)]
pub struct OffsetsArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic name.
    pub topic: String,
}

/// `krust groups ...`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups.
    List(GroupListArgs),
    /// Show a group's members, assignments, committed offsets and lag.
    Describe(GroupNameArgs),
    /// Move a group's committed offsets (the group must have no active member).
    ResetOffsets(GroupResetArgs),
    /// Delete groups (they must have no active member).
    Delete(GroupNamesArgs),
}

/// `krust groups list`.
#[derive(Debug, Args)]
pub struct GroupListArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
}

/// `krust groups describe`.
#[derive(Debug, Args)]
pub struct GroupNameArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Group id.
    pub group: String,
}

/// `krust groups delete`.
#[derive(Debug, Args)]
pub struct GroupNamesArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Group ids.
    #[arg(required = true)]
    pub groups: Vec<String>,
}

/// `krust groups reset-offsets`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("to")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_timestamp"])
))]
pub struct GroupResetArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Group id.
    pub group: String,
    /// Topic whose offsets move.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Partition(s) to move (repeatable; default: all).
    #[arg(short = 'p', long = "partition")]
    pub partitions: Vec<i32>,
    /// To the log start of each partition.
    #[arg(long = "to-earliest")]
    pub to_earliest: bool,
    /// To the log end of each partition.
    #[arg(long = "to-latest")]
    pub to_latest: bool,
    /// To this offset.
    #[arg(long = "to-offset", value_name = "N")]
    pub to_offset: Option<i64>,
    /// To the first record at or after this timestamp (ms since the epoch).
    #[arg(long = "to-timestamp", value_name = "MS")]
    pub to_timestamp: Option<i64>,
}

/// `krust bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce synthetic records as fast as allowed; report throughput and ack latency.
    Produce(BenchProduceArgs),
    /// Read records from the beginning of a topic; report throughput.
    Consume(BenchConsumeArgs),
}

/// `krust bench produce`.
#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic to write to (created with 1 partition if it does not exist).
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Number of records.
    #[arg(short = 'n', long = "records", default_value_t = 1_000_000)]
    pub records: u64,
    /// Value size in bytes.
    #[arg(short = 's', long = "record-size", default_value_t = 100)]
    pub record_size: usize,
    /// Target records per second; 0 means no limit.
    #[arg(long = "throughput", default_value_t = 0)]
    pub throughput: u64,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long = "acks", default_value = "1", allow_hyphen_values = true)]
    pub acks: Acks,
    /// Compression codec.
    #[arg(short = 'z', long = "compression", default_value = "none")]
    pub compression: Codec,
    /// linger.ms for the producer.
    #[arg(long = "linger-ms", default_value_t = 5)]
    pub linger_ms: u64,
    /// Seconds between progress lines.
    #[arg(long = "progress-secs", default_value_t = 5)]
    pub progress_secs: u64,
    /// Idempotent producer (needs --acks all).
    #[arg(long = "idempotent", conflicts_with = "no_idempotent")]
    pub idempotent: bool,
    /// Not idempotent.
    #[arg(long = "no-idempotent")]
    pub no_idempotent: bool,
    /// Run four times in one invocation, idempotent, not, not, idempotent (all with acks=all),
    /// and print the cost of idempotence (mean records/s of each, and the ratio).
    #[arg(long = "idempotence-cost", conflicts_with_all = ["idempotent", "no_idempotent"])]
    pub idempotence_cost: bool,
}

impl BenchProduceArgs {
    /// The `enable.idempotence` property the flags ask for, if any.
    pub fn idempotence(&self) -> Option<bool> {
        idempotence_flag(self.idempotent, self.no_idempotent)
    }
}

/// `krust bench consume`.
#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Topic to read.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Stop after this many records (default: at the end of every partition).
    #[arg(short = 'n', long = "records")]
    pub records: Option<u64>,
    /// Give up after this many seconds without a record.
    #[arg(long = "idle-secs", default_value_t = 10)]
    pub idle_secs: u64,
    /// Seconds between progress lines.
    #[arg(long = "progress-secs", default_value_t = 5)]
    pub progress_secs: u64,
}

/// `krust fake-cluster`.
#[derive(Debug, Args)]
pub struct FakeClusterArgs {
    /// Number of brokers.
    #[arg(long = "brokers", default_value_t = 1)]
    pub brokers: u16,
    /// Port of the first broker (the others take the next ports); 0 picks free ports.
    #[arg(long = "port", default_value_t = 0)]
    pub port: u16,
    /// Topic to create at start (repeatable), NAME or NAME:PARTITIONS.
    #[arg(long = "topic", value_name = "NAME[:PARTITIONS]")]
    pub topics: Vec<TopicSpec>,
}

/// `krust txn ...`.
#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List transactions (ListTransactions; Kafka 3.0+): id, state, producer id, coordinator.
    List(TxnListArgs),
    /// Describe transactions by transactional id.
    Describe(TxnIdsArgs),
    /// Abort open transactions, by id or every Ongoing one with an id prefix, by
    /// re-initialising each id: fences any producer still running with it.
    Abort(TxnAbortArgs),
    /// Commit or abort the transaction a producer left open, given the producer id and epoch
    /// it recorded (resume after a crash).
    Complete(TxnCompleteArgs),
    /// Copy a topic to another exactly once: a consumer-group member that writes each batch of
    /// input records and its input offsets in one transaction (consume-transform-produce).
    Copy(TxnCopyArgs),
}

/// `krust txn list`.
#[derive(Debug, Args)]
pub struct TxnListArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Only transactional ids starting with this.
    #[arg(long = "prefix", value_name = "P")]
    pub prefix: Option<String>,
    /// Only transactions in this coordinator state (repeatable): Empty, Ongoing,
    /// PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, ...
    #[arg(long = "state", value_name = "S")]
    pub states: Vec<String>,
}

/// `krust txn describe`.
#[derive(Debug, Args)]
pub struct TxnIdsArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Transactional ids.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// `krust txn abort`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("which").required(true).args(["prefix", "ids"])
))]
pub struct TxnAbortArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Abort every Ongoing transaction whose id starts with this (needs ListTransactions).
    #[arg(long = "prefix", value_name = "P")]
    pub prefix: Option<String>,
    /// Transactional ids to abort (works on every broker with transactions).
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
}

/// `krust txn complete`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("outcome").required(true).args(["commit", "abort"])
))]
pub struct TxnCompleteArgs {
    /// Broker and client properties.
    #[command(flatten)]
    pub conn: Connection,
    /// Transactional id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The producer id the transaction's producer had.
    #[arg(long = "producer-id", value_name = "N")]
    pub producer_id: i64,
    /// The producer epoch the transaction's producer had.
    #[arg(long = "epoch", value_name = "E")]
    pub epoch: i16,
    /// Commit the transaction.
    #[arg(long = "commit")]
    pub commit: bool,
    /// Abort the transaction.
    #[arg(long = "abort")]
    pub abort: bool,
}

/// `krust txn copy`.
#[derive(Debug, Args)]
pub struct TxnCopyArgs {
    /// Broker and client properties (-X applies to the consumer and the producer, so only
    /// client-wide ones fit there; see --consumer-property and --producer-property).
    #[command(flatten)]
    pub conn: Connection,
    /// Topic to read.
    #[arg(long = "from", value_name = "TOPIC")]
    pub from: String,
    /// Topic to write (records keep their key, value, headers and timestamp).
    #[arg(long = "to", value_name = "TOPIC")]
    pub to: String,
    /// Consumer group that owns the input offsets.
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: String,
    /// transactional.id of the producer; a restarted copier must use the same one, which
    /// fences the previous instance and aborts what it left open.
    #[arg(long = "transactional-id", value_name = "ID")]
    pub transactional_id: String,
    /// Records per transaction at most.
    #[arg(
        long = "batch",
        value_name = "N",
        default_value_t = 750,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub batch: u64,
    /// Exit (status 0) after this many seconds without an input record; default: run until
    /// SIGINT or SIGTERM.
    #[arg(long = "idle-exit-secs", value_name = "S")]
    pub idle_exit_secs: Option<u64>,
    /// Consumer-only property (repeatable), e.g. --consumer-property session.timeout.ms=6000.
    #[arg(long = "consumer-property", value_name = "PROP=VALUE")]
    pub consumer_properties: Vec<Property>,
    /// Producer-only property (repeatable), e.g. --producer-property transaction.timeout.ms=10000.
    #[arg(long = "producer-property", value_name = "PROP=VALUE")]
    pub producer_properties: Vec<Property>,
    /// Hold each transaction open this long after its records are sent and before its offsets
    /// and commit (simulates slow processing; for tests of fencing and crashes).
    #[arg(long = "hold-ms", value_name = "MS", default_value_t = 0)]
    pub hold_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("krust").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn produce_flags() {
        let cli = parse(&[
            "produce",
            "-b",
            "127.0.0.1:9092",
            "-t",
            "t1",
            "-p",
            "2",
            "-K",
            ":",
            "-H",
            "a=1",
            "-H",
            "b=2",
            "-z",
            "zstd",
            "--acks",
            "0",
            "-X",
            "linger.ms=1",
        ])
        .unwrap();
        let Command::Produce(p) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(p.conn.brokers.0, "127.0.0.1:9092");
        assert_eq!(p.topic, "t1");
        assert_eq!(p.partition, Some(2));
        assert_eq!(p.key_delimiter, Some(Delimiter(b":".to_vec())));
        assert_eq!(p.headers.len(), 2);
        assert_eq!(p.compression, Codec::Zstd);
        assert_eq!(p.acks, Acks::None);
        assert_eq!(p.conn.properties[0].name, "linger.ms");
    }

    #[test]
    fn produce_acks_minus_one() {
        let cli = parse(&["produce", "-b", "h:1", "-t", "t", "--acks", "-1"]).unwrap();
        let Command::Produce(p) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(p.acks, Acks::All);
    }

    #[test]
    fn consume_flags() {
        let cli = parse(&[
            "consume", "-b", "h:1", "-t", "t", "-o", "-5", "-c", "10", "-e", "-f", "%k %s\\n",
            "-p", "0", "-p", "1",
        ])
        .unwrap();
        let Command::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.start, StartAt::FromEnd(5));
        assert_eq!(c.count, Some(10));
        assert!(c.exit_at_end);
        assert_eq!(c.partitions, vec![0, 1]);
        assert_eq!(c.format, Some(Format::parse("%k %s\\n").unwrap()));
    }

    #[test]
    fn topics_and_bench() {
        let cli = parse(&[
            "topics",
            "create",
            "-b",
            "h:1",
            "t",
            "-p",
            "3",
            "-c",
            "retention.ms=1",
        ])
        .unwrap();
        let Command::Topics(TopicsCommand::Create(c)) = cli.command else {
            panic!("not create")
        };
        assert_eq!((c.topic.as_str(), c.partitions, c.replication), ("t", 3, 1));
        let cli = parse(&[
            "bench", "produce", "-b", "h:1", "-t", "t", "-n", "10", "-s", "1024",
        ])
        .unwrap();
        let Command::Bench(BenchCommand::Produce(b)) = cli.command else {
            panic!("not bench produce")
        };
        assert_eq!((b.records, b.record_size), (10, 1024));
    }

    #[test]
    fn group_consume_and_groups_flags() {
        let cli = parse(&[
            "consume", "-b", "h:1", "-G", "g1", "-t", "a", "-t", "^b.*", "-e",
        ])
        .unwrap();
        let Command::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.group.as_deref(), Some("g1"));
        assert_eq!(c.topics, ["a", "^b.*"]);
        let cli = parse(&[
            "groups",
            "reset-offsets",
            "-b",
            "h:1",
            "g1",
            "-t",
            "a",
            "-p",
            "2",
            "--to-offset",
            "7",
        ])
        .unwrap();
        let Command::Groups(GroupsCommand::ResetOffsets(r)) = cli.command else {
            panic!("not reset-offsets")
        };
        assert_eq!((r.group.as_str(), r.topic.as_str()), ("g1", "a"));
        assert_eq!((r.partitions.as_slice(), r.to_offset), (&[2][..], Some(7)));
        assert!(parse(&["groups", "reset-offsets", "-b", "h:1", "g", "-t", "a"]).is_err());
        assert!(parse(&[
            "groups",
            "reset-offsets",
            "-b",
            "h:1",
            "g",
            "-t",
            "a",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        assert!(parse(&["groups", "delete", "-b", "h:1"]).is_err());
        let cli = parse(&["groups", "delete", "-b", "h:1", "g1", "g2"]).unwrap();
        let Command::Groups(GroupsCommand::Delete(d)) = cli.command else {
            panic!("not delete")
        };
        assert_eq!(d.groups, ["g1", "g2"]);
    }

    #[test]
    fn txn_flags() {
        let cli = parse(&[
            "produce",
            "-b",
            "h:1",
            "-t",
            "t",
            "--transactional-id",
            "tx",
            "--txn-size",
            "10",
            "--abort-every",
            "3",
        ])
        .unwrap();
        let Command::Produce(p) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(p.transactional_id.as_deref(), Some("tx"));
        assert_eq!((p.txn_size, p.abort_every), (10, 3));
        // Transaction flags need a transactional id; a size of 0 is refused.
        assert!(parse(&["produce", "-b", "h:1", "-t", "t", "--abort-every", "2"]).is_err());
        assert!(parse(&[
            "produce",
            "-b",
            "h:1",
            "-t",
            "t",
            "--transactional-id",
            "x",
            "--txn-size",
            "0"
        ])
        .is_err());
        let cli = parse(&[
            "consume",
            "-b",
            "h:1",
            "-t",
            "t",
            "--isolation",
            "read_committed",
        ])
        .unwrap();
        let Command::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.isolation, Some(Isolation::ReadCommitted));
        assert!(parse(&["consume", "-b", "h:1", "-t", "t", "--isolation", "dirty"]).is_err());

        let cli = parse(&[
            "txn", "list", "-b", "h:1", "--prefix", "app-", "--state", "Ongoing",
        ])
        .unwrap();
        let Command::Txn(TxnCommand::List(l)) = cli.command else {
            panic!("not txn list")
        };
        assert_eq!(
            (l.prefix.as_deref(), l.states.as_slice()),
            (Some("app-"), &["Ongoing".to_string()][..])
        );
        assert!(parse(&["txn", "abort", "-b", "h:1"]).is_err());
        assert!(parse(&["txn", "abort", "-b", "h:1", "--prefix", "p", "id1"]).is_err());
        assert!(parse(&["txn", "describe", "-b", "h:1"]).is_err());
        let cli = parse(&[
            "txn",
            "complete",
            "-b",
            "h:1",
            "tx",
            "--producer-id",
            "7",
            "--epoch",
            "2",
            "--commit",
        ])
        .unwrap();
        let Command::Txn(TxnCommand::Complete(c)) = cli.command else {
            panic!("not txn complete")
        };
        assert_eq!(
            (c.id.as_str(), c.producer_id, c.epoch, c.commit),
            ("tx", 7, 2, true)
        );
        assert!(parse(&[
            "txn",
            "complete",
            "-b",
            "h:1",
            "tx",
            "--producer-id",
            "7",
            "--epoch",
            "2"
        ])
        .is_err());
        assert!(parse(&[
            "txn",
            "complete",
            "-b",
            "h:1",
            "tx",
            "--producer-id",
            "7",
            "--epoch",
            "2",
            "--commit",
            "--abort"
        ])
        .is_err());
        let cli = parse(&[
            "txn",
            "copy",
            "-b",
            "h:1",
            "--from",
            "in",
            "--to",
            "out",
            "-G",
            "g",
            "--transactional-id",
            "c1",
        ])
        .unwrap();
        let Command::Txn(TxnCommand::Copy(c)) = cli.command else {
            panic!("not txn copy")
        };
        assert_eq!(
            (c.from.as_str(), c.to.as_str(), c.batch),
            ("in", "out", 750)
        );
        assert!(
            parse(&["txn", "copy", "-b", "h:1", "--from", "in", "--to", "out", "-G", "g"]).is_err()
        );
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&["produce", "-b", "h:1"]).is_err()); // no topic
        assert!(parse(&["produce", "-b", "h:1", "-t", "t", "-z", "brotli"]).is_err());
        assert!(parse(&["consume", "-b", "h:1", "-t", "t", "-o", "soon"]).is_err());
        assert!(parse(&["consume", "-b", "nohost", "-t", "t"]).is_err());
        assert!(parse(&["produce", "-b", "h:1", "-t", "t", "-X", "novalue"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }
}

/// `krust pipe`.
#[derive(Debug, Args)]
pub struct PipeArgs {
    /// Broker and client properties (-X applies to the consumer and the producer, so only
    /// client-wide ones fit there; see --consumer-property and --producer-property).
    #[command(flatten)]
    pub conn: Connection,
    /// Topic to read.
    #[arg(long = "from", value_name = "TOPIC")]
    pub from: String,
    /// Topic to write.
    #[arg(long = "to", value_name = "TOPIC")]
    pub to: String,
    /// Consumer group: instances with one group share the partitions; offsets commit there.
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: String,
    /// Delivery guarantee: none, at-least-once or exactly-once.
    #[arg(long = "guarantee", default_value = "at-least-once", value_name = "G")]
    pub guarantee: String,
    /// What to do to each value: upper, lower or identity (values are UTF-8 text except
    /// with identity, which copies bytes).
    #[arg(long = "map", default_value = "identity", value_name = "OP")]
    pub map: String,
    /// Commit interval in milliseconds (default: 100 exactly-once, 1000 at-least-once, 5000
    /// none).
    #[arg(long = "commit-interval-ms", value_name = "N")]
    pub commit_interval_ms: Option<u64>,
    /// Stop by itself once every partition reached the end it had at start.
    #[arg(long = "bounded")]
    pub bounded: bool,
    /// Where a partition without a committed offset starts: earliest or latest.
    #[arg(long = "start", default_value = "earliest", value_name = "WHERE")]
    pub start: String,
    /// This instance's id, stable across its restarts and different for every instance
    /// (required with exactly-once: the transactional id is <prefix>-<id>; a restart fences
    /// the previous run and aborts its open transaction).
    #[arg(long = "instance-id", value_name = "ID")]
    pub instance_id: Option<String>,
    /// Transactional id prefix (exactly-once). Default: krust-pipe-<GROUP>.
    #[arg(long = "transactional-id-prefix", value_name = "P")]
    pub transactional_id_prefix: Option<String>,
    /// transaction.timeout.ms (exactly-once; default 60000).
    #[arg(long = "transaction-timeout-ms", value_name = "N")]
    pub transaction_timeout_ms: Option<u64>,
    /// A value that cannot be processed (invalid UTF-8): fail, skip, or dead-letter:TOPIC.
    #[arg(long = "on-error", default_value = "fail", value_name = "POLICY")]
    pub on_error: String,
    /// Consumer-only property (repeatable), e.g. --consumer-property session.timeout.ms=6000.
    #[arg(long = "consumer-property", value_name = "PROP=VALUE")]
    pub consumer_properties: Vec<Property>,
    /// Producer-only property (repeatable), e.g. --producer-property linger.ms=20.
    #[arg(long = "producer-property", value_name = "PROP=VALUE")]
    pub producer_properties: Vec<Property>,
    /// Print the job's metrics on stderr every S seconds (0: only the summary at the end).
    #[arg(long = "progress-secs", value_name = "S", default_value_t = 0)]
    pub progress_secs: u64,
    /// Process at most N records per second in this process (to spare what is downstream).
    #[arg(long = "max-rate", value_name = "N")]
    pub max_rate: Option<u64>,
}

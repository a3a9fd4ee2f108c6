//! A harness for integration tests: start the real `strom` binary on a
//! free loopback port with a temporary data directory, talk to it with a
//! minimal blocking Kafka client, kill or stop it, restart it.
//!
//! The binary is the one cargo built next to the test executable
//! (`target/<profile>/strom`); `STROM_BIN` overrides it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Where the `strom` binary is.
pub fn strom_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STROM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/strom
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("strom");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p strom` (or set STROM_BIN)",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, then released), below the kernel's
/// ephemeral range (32768 and up): a port the system picked for us could be
/// handed out again as the source port of some outgoing connection (the
/// cluster nodes' own, say) before the process that is to listen on it
/// binds it. Ports are drawn from a sequence that starts at a point set by
/// the process id and the clock, so test processes running side by side
/// start far apart, and no port is given out twice by one process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 32_768 - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN
    };
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below 32768")
}

/// A running (or stopped) broker process with its own data directory.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    config: Vec<(String, String)>,
    /// An open-files limit (soft and hard) to start the process with.
    pub nofile: Option<u64>,
    /// `process.roles=controller`: no client listener (`addr` unused);
    /// ready once it logs that it is.
    pub controller_only: bool,
    /// How many times the log said "ready" before the last launch.
    readies: usize,
    /// The network namespace to run in (a [`netns::Net`]'s), if any.
    pub namespace: Option<String>,
}

const CONTROLLER_READY: &str = "strom controller is ready";

impl Broker {
    /// Starts a broker with Kafka-named settings passed through a TOML file.
    pub fn start(config: &[(&str, &str)]) -> Broker {
        Self::start_with_nofile(config, None)
    }

    /// Starts a broker whose open-files limit is `nofile` (kept across
    /// restarts unless changed in the field).
    pub fn start_with_nofile(config: &[(&str, &str)], nofile: Option<u64>) -> Broker {
        let mut b = Self::stopped(
            free_port(),
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        b.nofile = nofile;
        b.spawn();
        b
    }

    /// A broker on `port` that is not started yet ([`Broker::launch`]).
    pub fn stopped(port: u16, config: Vec<(String, String)>) -> Broker {
        Broker {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: tempfile::tempdir().unwrap(),
            config,
            nofile: None,
            controller_only: false,
            readies: 0,
            namespace: None,
        }
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    /// Starts the process without waiting for it to serve.
    pub fn launch(&mut self) {
        let cfg_path = self.dir.path().join("strom.toml");
        let toml: String = self
            .config
            .iter()
            .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
            .collect();
        std::fs::write(&cfg_path, toml).unwrap();
        self.readies = self.log().matches(CONTROLLER_READY).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        // `ip netns exec` and the shell each become the next program, so
        // the child's process id is the broker's.
        let mut program: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = &self.namespace {
            program.extend(["ip", "netns", "exec", ns.as_str()].map(Into::into));
        }
        if let Some(n) = self.nofile {
            // The shell sets the limit, then becomes the broker.
            program.extend(["sh", "-c", "ulimit -n \"$0\" && exec \"$@\""].map(Into::into));
            program.push(n.to_string().into());
        }
        program.push(strom_bin().into());
        let mut command = Command::new(&program[0]);
        command.args(&program[1..]);
        if !self.controller_only {
            command.arg("--listen").arg(self.addr.to_string());
        }
        let child = command
            .arg("--http-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--config")
            .arg(&cfg_path)
            .arg("--log-level")
            .arg("debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strom");
        self.child = Some(child);
    }

    /// Whether the process runs (or is paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGSTOP: the process stays, but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.pid().expect("running");
        let status = Command::new("kill")
            .arg(which)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Waits until the broker answers ApiVersions (a controller-only node:
    /// until it logs that it is ready).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.controller_only {
                if self.log().matches(CONTROLLER_READY).count() > self.readies {
                    return;
                }
            } else if let Ok(mut c) = Client::connect(self.addr) {
                if c.api_versions().is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker did not become ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory the broker is started on.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect")
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "broker did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A paused process is killed as well (SIGKILL needs no SIGCONT).
        self.kill9();
    }
}

pub mod cluster;
pub mod netns;

/// A blocking Kafka client over one connection, for tests.
pub struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream,
            correlation: 0,
        })
    }

    /// How long a read may wait for the broker (30 s from `connect`).
    pub fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    /// Writes raw bytes (for bad-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame; `Err` when the broker closed the connection.
    pub fn read_frame(&mut self) -> std::io::Result<BytesMut> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(BytesMut::from(&body[..]))
    }

    /// True if the broker closed the connection (read returns EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }

    /// Sends a typed request and decodes the typed response.
    pub fn request<R: Request>(&mut self, version: i16, body: &R) -> std::io::Result<R::Response> {
        self.correlation += 1;
        let key = ApiKey::try_from(R::KEY).expect("known key");
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("strom-tests")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        let mut frame = self.read_frame()?.freeze();
        let rh = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
        assert_eq!(rh.correlation_id, self.correlation);
        let resp = R::Response::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "response fully consumed");
        Ok(resp)
    }

    pub fn api_versions(
        &mut self,
    ) -> std::io::Result<kafka_protocol::messages::ApiVersionsResponse> {
        self.request(
            3,
            &kafka_protocol::messages::ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("strom-tests"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        )
    }

    /// The versions the broker advertises for `key`.
    pub fn versions(&mut self, key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let all = self.api_versions().unwrap();
        let v = all
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} is not advertised"));
        v.min_version..=v.max_version
    }

    /// Creates a topic (CreateTopics v7) and checks that it was created.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let resp = self
            .request(
                7,
                &kafka_protocol::messages::CreateTopicsRequest::default()
                    .with_timeout_ms(5000)
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(name(topic))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)]),
            )
            .unwrap();
        assert_eq!(
            resp.topics[0].error_code, 0,
            "{:?}",
            resp.topics[0].error_message
        );
    }
}

/// A topic name for requests.
pub fn name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(s.to_owned()))
}

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An LZ4 batch of `values`, stamped now (older timestamps would be deleted by retention.ms).
pub fn batch(values: &[String]) -> Bytes {
    let now = now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now + i as i64,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    encode_batch(&records, Compression::Lz4)
}

/// Encodes `records` as one magic-2 batch.
pub fn encode_batch(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produces `values` (acks=all) and returns the base offset; panics on an error.
pub fn produce(c: &mut Client, topic: &str, partition: i32, values: &[String]) -> i64 {
    let (code, offset) = produce_answer(c, topic, partition, values);
    assert_eq!(code, 0);
    offset
}

/// As [`produce`] (acks=all), the error code of the answer.
pub fn produce_code(c: &mut Client, topic: &str, partition: i32, values: &[String]) -> i16 {
    produce_answer(c, topic, partition, values).0
}

fn produce_answer(c: &mut Client, topic: &str, partition: i32, values: &[String]) -> (i16, i64) {
    let resp = c
        .request(
            9,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch(values)))])]),
        )
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A Fetch (v4+) of one partition from `offset`, up to 1 MiB, answered at
/// once; `isolation_level` 1 reads committed.
pub fn fetch_from(topic: &str, partition: i32, offset: i64, isolation_level: i8) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// Every value of the partition, fetched from offset 0 to the end.
pub fn fetch_all(c: &mut Client, topic: &str, partition: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let resp = c
            .request(12, &fetch_from(topic, partition, offset, 0))
            .unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let mut records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records).unwrap();
            for r in set.records {
                if r.offset >= offset {
                    out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    offset = r.offset + 1;
                }
            }
        }
    }
}

// Producers and consumers of transactions over the raw protocol.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest,
    ProducerId, TransactionalId,
};

/// A transactional id for requests.
pub fn transactional_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_owned()))
}

/// One uncompressed batch of `values` from producer `pid` at `epoch`, its
/// records at sequences `seq`, `seq + 1`, ..., transactional or not,
/// stamped now.
pub fn producer_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    transactional: bool,
    values: &[&str],
) -> Bytes {
    let now = now_ms();
    let records: Vec<Record> = values
        .iter()
        .zip(0..)
        .map(|(v, i)| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: seq + i,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    encode_batch(&records, Compression::None)
}

/// The address of the coordinator of `key` (`key_type` 0: a group, 1: a
/// transactional id) as the broker answers FindCoordinator (v3); the
/// error code when it answers one.
pub fn find_coordinator(
    c: &mut Client,
    key: &str,
    key_type: i8,
) -> std::io::Result<Result<SocketAddr, i16>> {
    let r = c.request(
        3,
        &FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_owned()))
            .with_key_type(key_type),
    )?;
    if r.error_code != 0 {
        return Ok(Err(r.error_code));
    }
    let addr = format!("{}:{}", r.host, r.port)
        .parse()
        .map_err(|e| std::io::Error::other(format!("coordinator {}:{}: {e}", r.host, r.port)))?;
    Ok(Ok(addr))
}

/// InitProducerId (v4) for the transactional id `id`, with a transaction
/// timeout of `timeout_ms`: the error code, and the producer id and epoch.
pub fn init_transactional(
    c: &mut Client,
    id: &str,
    timeout_ms: i32,
) -> std::io::Result<(i16, (i64, i16))> {
    let r = c.request(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(transactional_id(id)))
            .with_transaction_timeout_ms(timeout_ms),
    )?;
    Ok((r.error_code, (r.producer_id.0, r.producer_epoch)))
}

/// AddPartitionsToTxn (v3, the last version a client sends) of
/// `partitions` of `topic` to the transaction of `id`: the first error
/// code of a partition, else 0.
pub fn add_partitions_to_txn(
    c: &mut Client,
    id: &str,
    (pid, epoch): (i64, i16),
    topic: &str,
    partitions: &[i32],
) -> std::io::Result<i16> {
    let r = c.request(
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(transactional_id(id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(name(topic))
                .with_partitions(partitions.to_vec())]),
    )?;
    Ok(r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| &t.results_by_partition)
        .map(|p| p.partition_error_code)
        .find(|code| *code != 0)
        .unwrap_or(0))
}

/// EndTxn (v3): commits (`commit`) or aborts the transaction of `id`; the
/// error code.
pub fn end_txn(
    c: &mut Client,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> std::io::Result<i16> {
    Ok(c.request(3, &end_txn_request(id, producer, commit))?
        .error_code)
}

/// The EndTxn request that commits (`commit`) or aborts the transaction of
/// `id`.
pub fn end_txn_request(id: &str, (pid, epoch): (i64, i16), commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(transactional_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

/// What a read_committed consumer reads of a partition from offset 0.
#[derive(Debug, Clone, Default)]
pub struct CommittedRead {
    /// The records it keeps: offset, value.
    pub records: Vec<(i64, String)>,
    /// The partition's last stable offset (where the reading stopped) and
    /// high watermark, as the last fetch answered them.
    pub last_stable_offset: i64,
    pub high_watermark: i64,
}

/// Reads a partition from offset 0 up to its last stable offset with
/// read_committed (isolation level 1) fetches (v12), and filters what they
/// answer as a Kafka consumer does: control batches are dropped, and so is
/// a transactional batch of a producer while one of its aborted
/// transactions the fetch reported (its first offset at or before the
/// batch's last) has not met that producer's abort marker. A fetch's error
/// code, if it answers one.
pub fn read_committed(
    c: &mut Client,
    topic: &str,
    partition: i32,
) -> std::io::Result<Result<CommittedRead, i16>> {
    let mut read = CommittedRead::default();
    let mut offset = 0;
    loop {
        let resp = c.request(12, &fetch_from(topic, partition, offset, 1))?;
        let p = &resp.responses[0].partitions[0];
        if p.error_code != 0 {
            return Ok(Err(p.error_code));
        }
        read.last_stable_offset = p.last_stable_offset;
        read.high_watermark = p.high_watermark;
        // The aborted transactions by first offset, as the consumer's queue.
        let mut aborted: Vec<(i64, i64)> = p
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.first_offset, a.producer_id.0))
            .collect();
        aborted.sort_unstable();
        let mut aborted = aborted.into_iter().peekable();
        let mut aborting = std::collections::HashSet::new();
        let mut bytes = p.records.clone().unwrap_or_default();
        if bytes.is_empty() {
            return Ok(Ok(read));
        }
        let before = offset;
        while !bytes.is_empty() {
            let set = RecordBatchDecoder::decode(&mut bytes)
                .map_err(|e| std::io::Error::other(format!("fetch at {offset}: {e}")))?;
            let (Some(first), Some(last)) = (set.records.first(), set.records.last()) else {
                continue;
            };
            let producer = first.producer_id;
            let batch_end = last.offset;
            offset = offset.max(batch_end + 1);
            if producer >= 0 {
                while let Some((_, pid)) = aborted.next_if(|(first, _)| *first <= batch_end) {
                    aborting.insert(pid);
                }
                if first.control {
                    // The key of a control record: version, then type (0: abort).
                    let key = first.key.as_deref().unwrap_or_default();
                    if key.len() >= 4 && key[2..4] == [0, 0] {
                        aborting.remove(&producer);
                    }
                    continue;
                }
                if first.transactional && aborting.contains(&producer) {
                    continue;
                }
            }
            if first.control {
                continue;
            }
            for r in &set.records {
                if r.offset >= before {
                    let value = r.value.as_deref().unwrap_or_default();
                    read.records
                        .push((r.offset, String::from_utf8_lossy(value).into_owned()));
                }
            }
        }
        if offset == before {
            return Err(std::io::Error::other(format!(
                "fetch at {offset} answered nothing past it"
            )));
        }
    }
}

impl Client {
    /// Sends a typed request and closes the connection without waiting for
    /// the answer: a client that dies right after sending.
    pub fn send_and_close<R: Request>(mut self, version: i16, body: &R) -> std::io::Result<()> {
        let mut message = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation + 1)
            .with_client_id(Some(StrBytes::from_static_str("strom-tests")))
            .encode(&mut message, R::header_version(version))
            .and_then(|()| body.encode(&mut message, version))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let length = (message.len() as i32).to_be_bytes();
        self.stream
            .write_all(&[&length[..], &message[..]].concat())?;
        self.stream.shutdown(std::net::Shutdown::Both)
    }
}

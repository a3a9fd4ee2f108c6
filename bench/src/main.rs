//! Drives a running broker with librdkafka (through `rdkafka`), never with
//! Strom's own codec, and prints what it measured.
//!
//! - `produce`: records of a given size to a topic's partitions as fast as
//!   the client goes, with acks=1 or all, optionally idempotent or
//!   transactional (committing every N ms); MB/s and records/s.
//! - `consume`: reads the topic from the beginning to its end; MB/s.
//! - `latency`: produces at a fixed rate with linger 0 while a consumer with
//!   the client's default fetch wait reads; end-to-end p50/p99/max.
//!
//! `--keys N` cycles keys through N values (for compacted topics, which
//! `bench/compaction.py` creates); by default each partition has one key.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
#[command(about = "Benchmark a Kafka-compatible broker with librdkafka")]
struct Args {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Produce {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Total bytes of record values to send.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: usize,
        /// 1 or all.
        #[arg(long, default_value = "1")]
        acks: String,
        /// Idempotent producer (implies acks=all).
        #[arg(long)]
        idempotent: bool,
        /// Transactional producer committing every this many ms (implies
        /// idempotence); 0 for none.
        #[arg(long, default_value_t = 0)]
        transaction_ms: u64,
        /// Keys cycle through this many values (for compacted topics);
        /// without it each partition's records share one key.
        #[arg(long)]
        keys: Option<u64>,
    },
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
    Latency {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// As for produce.
        #[arg(long)]
        keys: Option<u64>,
    },
}

/// What each record is: its value's size, and how many keys there are.
#[derive(Debug, Clone, Copy)]
struct Records {
    size: usize,
    keys: Option<u64>,
}

impl Records {
    /// The key of the `i`th record sent to `partitions` partitions round
    /// robin (with `keys` a multiple of `partitions`, a key stays on one
    /// partition).
    fn key(&self, i: u64, partitions: i32) -> Vec<u8> {
        match self.keys {
            Some(n) => (i % n.max(1)).to_be_bytes().to_vec(),
            None => ((i % partitions as u64) as i32).to_be_bytes().to_vec(),
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures_block_on(admin.create_topics(&[new], &AdminOptions::new()))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating {t}: {e}"),
        }
    }
    Ok(())
}

/// A minimal executor for the admin client's one future.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Thread(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// How `produce` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Idempotent,
    /// Commit a transaction every this often.
    Transactional(Duration),
}

fn produce(
    brokers: &str,
    topic: &str,
    partitions: i32,
    records: Records,
    total: usize,
    acks: &str,
    mode: Mode,
) -> Result<()> {
    let size = records.size;
    create_topic(brokers, topic, partitions)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000");
    match mode {
        Mode::Plain => config.set("acks", acks).set("enable.idempotence", "false"),
        Mode::Idempotent => config.set("enable.idempotence", "true"),
        Mode::Transactional(_) => config.set("transactional.id", format!("strom-bench-{topic}")),
    };
    let producer: BaseProducer = config.create()?;
    let timeout = Duration::from_secs(60);
    let mut commits = 0u64;
    let mut last_commit = Instant::now();
    if let Mode::Transactional(_) = mode {
        producer.init_transactions(timeout)?;
        producer.begin_transaction()?;
    }
    let payload = vec![b'x'; size];
    let count = total / size;
    let start = Instant::now();
    for i in 0..count {
        if let Mode::Transactional(every) = mode {
            if last_commit.elapsed() >= every {
                producer.commit_transaction(timeout)?;
                producer.begin_transaction()?;
                commits += 1;
                last_commit = Instant::now();
            }
        }
        let key = records.key(i as u64, partitions);
        let mut record = BaseRecord::to(topic)
            .payload(&payload)
            .key(&key)
            .partition(i as i32 % partitions);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => bail!("send: {e}"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    if let Mode::Transactional(_) = mode {
        producer.commit_transaction(timeout)?;
        commits += 1;
    } else {
        producer.flush(Duration::from_secs(120))?;
    }
    let secs = start.elapsed().as_secs_f64();
    let how = match mode {
        Mode::Plain => format!("acks={acks}"),
        Mode::Idempotent => "idempotent".to_owned(),
        Mode::Transactional(every) => {
            format!(
                "transactional every={}ms commits={commits}",
                every.as_millis()
            )
        }
    };
    println!(
        "produce {how} record_size={size} records={count} seconds={secs:.2} MB/s={:.1} records/s={:.0}",
        (count * size) as f64 / secs / 1e6,
        count as f64 / secs
    );
    Ok(())
}

fn consumer(brokers: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "strom-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?)
}

fn consume(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let c = consumer(brokers)?;
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high > 0 {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    c.assign(&tpl)?;
    let (mut bytes, mut records) = (0usize, 0usize);
    let start = Instant::now();
    while !ends.is_empty() {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                bytes += m.payload().map_or(0, <[u8]>::len);
                records += 1;
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => bail!(
                "no message for 10 s with {} partitions unfinished",
                ends.len()
            ),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "consume records={records} seconds={secs:.2} MB/s={:.1} records/s={:.0}",
        bytes as f64 / secs / 1e6,
        records as f64 / secs
    );
    Ok(())
}

fn latency(
    brokers: &str,
    topic: &str,
    partitions: i32,
    rate: u64,
    seconds: u64,
    records: Records,
) -> Result<()> {
    let size = records.size;
    create_topic(brokers, topic, partitions)?;
    let c = consumer(brokers)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::End)?;
    }
    c.assign(&tpl)?;
    // Let the consumer reach the end before producing.
    let warmup = Instant::now();
    while warmup.elapsed() < Duration::from_secs(2) {
        c.poll(Duration::from_millis(50));
    }
    let total = rate * seconds;
    let producer_topic = topic.to_owned();
    let producer_brokers = brokers.to_owned();
    let sender = std::thread::spawn(move || -> Result<()> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &producer_brokers)
            .set("acks", "1")
            .set("linger.ms", "0")
            .create()?;
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let start = Instant::now();
        let mut payload = vec![b'x'; size.max(8)];
        for i in 0..total {
            let due = start + interval * i as u32;
            while Instant::now() < due {
                producer.poll(
                    due.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(1)),
                );
            }
            payload[..8].copy_from_slice(&now_micros().to_be_bytes());
            let key = records.key(i, partitions);
            producer
                .send(
                    BaseRecord::to(&producer_topic)
                        .payload(&payload)
                        .key(&key)
                        .partition(i as i32 % partitions),
                )
                .map_err(|(e, _)| e)?;
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30))?;
        Ok(())
    });
    let mut lat = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while (lat.len() as u64) < total && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            let sent = u64::from_be_bytes(m.payload().context("payload")?[..8].try_into()?);
            lat.push(now_micros().saturating_sub(sent));
        }
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    if lat.is_empty() {
        bail!("nothing received");
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "latency rate={rate}/s records={} of {total} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        lat.len(),
        pct(0.50),
        pct(0.99),
        *lat.last().unwrap() as f64 / 1000.0
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.cmd {
        Cmd::Produce {
            topic,
            partitions,
            record_size,
            bytes,
            acks,
            idempotent,
            transaction_ms,
            keys,
        } => {
            let mode = match (idempotent, transaction_ms) {
                (_, ms) if ms > 0 => Mode::Transactional(Duration::from_millis(ms)),
                (true, _) => Mode::Idempotent,
                _ => Mode::Plain,
            };
            produce(
                &args.brokers,
                &topic,
                partitions,
                Records {
                    size: record_size,
                    keys,
                },
                bytes,
                &acks,
                mode,
            )
        }
        Cmd::Consume { topic, partitions } => consume(&args.brokers, &topic, partitions),
        Cmd::Latency {
            topic,
            partitions,
            rate,
            seconds,
            record_size,
            keys,
        } => latency(
            &args.brokers,
            &topic,
            partitions,
            rate,
            seconds,
            Records {
                size: record_size,
                keys,
            },
        ),
    }
}

//! What a careless or hostile client (or operator) must not be able to do
//! to a node: share its data directory, reach its own files by topic name,
//! make it allocate without bound.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strom_tests::{free_port, strom_bin, Broker};

#[test]
fn a_second_broker_on_the_same_data_directory_refuses_to_start() {
    let first = Broker::start(&[]);
    let pid = first.pid().expect("running");
    let mut second = Command::new(strom_bin())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(first.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second broker on a locked data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = second.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("another process is using this data directory")
            && text.contains(&format!("pid {pid}")),
        "the refusal names the holder: {text}"
    );
    // The first one is unharmed.
    first.client().api_versions().unwrap();
}

/// Under a low open-files limit, partitions beyond what the limit can keep
/// open are refused up front (POLICY_VIOLATION), those accepted work and
/// survive a restart, and a restart under a limit too low for them is
/// refused with a message that says so, instead of failing on files later.
#[test]
fn partitions_fit_the_open_files_limit_or_are_refused_up_front() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::CreateTopicsRequest;
    use strom_tests::{fetch_all, name, produce};

    // 400 descriptors leave room for 336 segment files.
    let mut b = Broker::start_with_nofile(&[], Some(400));
    let mut c = b.client();
    let create = |c: &mut strom_tests::Client, topic: &str, partitions: i32| {
        c.request(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)]),
        )
        .unwrap()
        .topics[0]
            .error_code
    };
    for t in 0..30 {
        assert_eq!(create(&mut c, &format!("t{t}"), 10), 0, "topic t{t}");
    }
    assert_eq!(create(&mut c, "one-too-many", 50), 44, "POLICY_VIOLATION");
    for t in 0..30 {
        produce(&mut c, &format!("t{t}"), 9, &[format!("v{t}")]);
    }
    b.terminate();
    b.restart();
    let mut c = b.client();
    for t in [0, 17, 29] {
        assert_eq!(fetch_all(&mut c, &format!("t{t}"), 9), [format!("v{t}")]);
    }
    b.terminate();
    // 300 partitions do not fit 200 descriptors: refused at start-up.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$@\"")
        .arg("sh")
        .arg(strom_bin())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(b.data_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("hosts 300 partitions") && text.contains("raise the limit"),
        "{text}"
    );
}

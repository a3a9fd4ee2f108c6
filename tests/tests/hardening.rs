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
        .arg("--http-listen")
        .arg("127.0.0.1:0")
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

/// Under a low open-files limit, more partitions than the limit could keep
/// open at once are created, served and restarted: segment files are
/// closed when idle and reopened on use.
#[test]
fn more_partitions_than_open_files_are_served_and_restarted() {
    use strom_tests::{fetch_all, produce};

    // 400 descriptors leave room for 336 segment files; 600 partitions.
    let mut b = Broker::start_with_nofile(&[], Some(400));
    let mut c = b.client();
    for t in 0..60 {
        c.create_topic(&format!("t{t}"), 10);
    }
    for t in 0..60 {
        for p in 0..10 {
            produce(&mut c, &format!("t{t}"), p, &[format!("v{t}-{p}")]);
        }
    }
    for t in [0, 31, 59] {
        assert_eq!(fetch_all(&mut c, &format!("t{t}"), 9), [format!("v{t}-9")]);
    }
    b.terminate();
    // Restarted under a still lower limit, every partition opens and serves.
    b.nofile = Some(200);
    b.restart();
    let mut c = b.client();
    for t in 0..60 {
        for p in 0..10 {
            assert_eq!(
                fetch_all(&mut c, &format!("t{t}"), p),
                [format!("v{t}-{p}")],
                "t{t}-{p} after the restart"
            );
        }
    }
    produce(&mut c, "t7", 3, &["after".to_string()]);
    assert_eq!(fetch_all(&mut c, "t7", 3), ["v7-3", "after"]);
}

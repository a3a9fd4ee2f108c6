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

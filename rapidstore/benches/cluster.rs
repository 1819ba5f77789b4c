//! Benchmark of a 3-node RapidStore cluster on loopback with a real
//! ZooKeeper: write throughput and latency (p50/p99) with concurrent
//! clients, and failover time after SIGKILL and after SIGTERM of the leader.
//!
//! Run: `cargo bench -p rapidstore --bench cluster` (needs Debian's
//! `zookeeper` package). Figures, not assertions.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const CLIENTS: usize = 8;
const SECONDS: u64 = 5;
const ROUNDS: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn throughput(c: &Cluster) {
    let (leader, _) = c.wait_leader();
    let addr = c.addr(leader);
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (stop, lat, addr) = (stop.clone(), lat.clone(), addr.clone());
            std::thread::spawn(move || {
                let http = http();
                let mut i = 0;
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let r = http
                        .put(format!("http://{addr}/kv/k{}", i % 16))
                        .json(&json!({"value": format!("{t}-{i}")}))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    mine.push(start.elapsed());
                    i += 1;
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(SECONDS));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    println!(
        "writes: {} clients, {:.0} acknowledged writes/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        CLIENTS,
        lat.len() as f64 / SECONDS as f64,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
}

/// Time from signalling the leader to the first write acknowledged by a new one.
fn failover(c: &mut Cluster, graceful: bool) -> Duration {
    let (leader, _) = c.wait_leader();
    let other = (leader + 1) % 3;
    let t = Instant::now();
    if graceful {
        c.terminate(leader);
    } else {
        c.kill(leader);
    }
    let took = wait_for(
        "a write through the new leader",
        Duration::from_secs(30),
        || {
            let (s, _) = c.try_put(other, "failover", json!({"value": "x"}))?;
            (s == 200).then(|| t.elapsed())
        },
    );
    c.restart(leader);
    wait_for("restarted node to rejoin", Duration::from_secs(30), || {
        (c.health(leader)?["role"] == "follower").then_some(())
    });
    took
}

fn main() {
    let mut c = Cluster::start(3, &[]);
    throughput(&c);
    for graceful in [false, true] {
        let mut times: Vec<Duration> = (0..ROUNDS).map(|_| failover(&mut c, graceful)).collect();
        times.sort();
        println!(
            "failover after {}: session timeout {:?}, {} rounds, min {:.0} ms, median {:.0} ms, max {:.0} ms",
            if graceful { "SIGTERM" } else { "SIGKILL" },
            SESSION,
            ROUNDS,
            times[0].as_secs_f64() * 1e3,
            times[ROUNDS / 2].as_secs_f64() * 1e3,
            times[ROUNDS - 1].as_secs_f64() * 1e3
        );
    }
}

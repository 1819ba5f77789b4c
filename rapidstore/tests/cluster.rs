//! End-to-end tests of RapidStore on loopback: a real standalone ZooKeeper
//! and three real `rapidstore` processes. Tests run one at a time (a JVM and
//! three servers each) and wait for conditions with generous deadlines,
//! never for fixed sleeps.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn exactly_one_leader_and_followers_redirect() {
    let _g = serial();
    let c = Cluster::start(3, &[]);
    let (leader, _) = c.wait_leader();
    let follower = (leader + 1) % 3;
    let r = http()
        .put(format!("http://{}/kv/a", c.addr(follower)))
        .json(&json!({"value": "1"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("http://{}/kv/a", c.addr(leader))
    );
    let (s, body) = c.put(follower, "a", json!({"value": "1"}));
    assert_eq!(s, 200, "{body}");
    assert_eq!(c.get(leader, "a").1["value"], "1");
    // Compare-and-set: mismatch gives 412 with the current value.
    let (s, body) = c.put(leader, "a", json!({"value": "3", "if": "2"}));
    assert_eq!((s, body["value"].as_str()), (412, Some("1")));
    let (s, _) = c.put(leader, "a", json!({"value": "2", "if": "1"}));
    assert_eq!(s, 200);
    let (s, _) = c.put(leader, "fresh", json!({"value": "x", "if": null}));
    assert_eq!(s, 200);
    // Bad input is refused with JSON errors.
    let r = http()
        .put(format!("http://{}/kv/a", c.addr(leader)))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("malformed JSON"));
    let (s, _) = c.put(leader, "big", json!({"value": "x".repeat(70_000)}));
    assert_eq!(s, 413);
    assert_eq!(c.get(leader, "missing").0, 404);
}

#[test]
fn leader_kill_elects_higher_token_and_keeps_acknowledged_writes() {
    let _g = serial();
    let mut c = Cluster::start(3, &[]);
    let (leader, token) = c.wait_leader();
    for i in 0..30 {
        let (s, b) = c.put(leader, &format!("k{i}"), json!({"value": format!("v{i}")}));
        assert_eq!(s, 200, "{b}");
    }
    let killed_at = Instant::now();
    c.kill(leader);
    let (new_leader, new_token) = c.wait_leader();
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(new_token > token, "token {new_token} not above {token}");
    assert!(
        failover < SESSION + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    for i in 0..30 {
        let (s, b) = c.get(new_leader, &format!("k{i}"));
        assert_eq!(
            (s, b["value"].as_str()),
            (200, Some(format!("v{i}").as_str()))
        );
    }
    // The killed node restarts and catches up from the leader.
    c.restart(leader);
    let (s, b) = c.put(new_leader, "after", json!({"value": "restart"}));
    assert_eq!(s, 200, "{b}");
    let last = b["index"].as_u64().unwrap();
    wait_for(
        "restarted node to catch up",
        Duration::from_secs(20),
        || {
            let h = c.health(leader)?;
            (h["role"] == "follower" && h["last_index"].as_u64()? >= last).then_some(())
        },
    );
}

/// A replica refuses an append whose token is below the highest it has seen;
/// with `--bug no-fencing` it accepts it.
fn stale_append(bugs: &[&str]) -> Value {
    let c = Cluster::start(3, bugs);
    let (leader, token) = c.wait_leader();
    let (s, _) = c.put(leader, "x", json!({"value": "1"}));
    assert_eq!(s, 200);
    let follower = (leader + 1) % 3;
    wait_for("follower to see the token", Duration::from_secs(10), || {
        (c.health(follower)?["highest_token"].as_u64()? >= token).then_some(())
    });
    let h = c.health(follower).unwrap();
    let last = h["last_index"].as_u64().unwrap();
    let prev_token = token;
    // Pretend to be a deposed leader with a lower token (token - 1 wraps at 0,
    // so bump the replica's highest first with a sync from a higher token).
    let higher = token + 100;
    let r: Value = http()
        .post(format!("http://{}/internal/sync", c.addr(follower)))
        .json(&json!({"token": higher, "from": last + 1}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["result"], "ok");
    http()
        .post(format!("http://{}/internal/append", c.addr(follower)))
        .json(&json!({
            "token": token, "leader": c.addr(leader), "prev_index": last, "prev_token": prev_token,
            "entries": [{"index": last + 1, "token": token, "key": "stale", "value": "s"}],
            "commit_index": 0
        }))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn stale_token_append_is_rejected() {
    let _g = serial();
    let r = stale_append(&[]);
    assert_eq!(r["result"], "stale", "{r}");
}

#[test]
fn stale_token_append_is_accepted_with_no_fencing_bug() {
    let _g = serial();
    let r = stale_append(&["no-fencing"]);
    assert_eq!(r["result"], "ok", "{r}");
}

#[test]
fn sigterm_hands_over_leadership_without_waiting_for_session_expiry() {
    let _g = serial();
    let mut c = Cluster::start(3, &[]);
    let (leader, token) = c.wait_leader();
    let (s, _) = c.put(leader, "k", json!({"value": "before"}));
    assert_eq!(s, 200);
    let t = Instant::now();
    c.terminate(leader);
    let (new_leader, new_token) = c.wait_leader();
    let handover = t.elapsed();
    assert!(new_token > token && new_leader != leader);
    // Expiry would take the whole session timeout; a graceful close does not.
    assert!(handover < SESSION, "handover took {handover:?}");
    assert_eq!(c.get(new_leader, "k").1["value"], "before");
}

#[test]
fn data_survives_kill_of_every_node() {
    let _g = serial();
    let mut c = Cluster::start(3, &[]);
    let (leader, _) = c.wait_leader();
    for i in 0..10 {
        assert_eq!(
            c.put(leader, &format!("d{i}"), json!({"value": i.to_string()}))
                .0,
            200
        );
    }
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let (leader, _) = c.wait_leader();
    for i in 0..10 {
        assert_eq!(c.get(leader, &format!("d{i}")).1["value"], i.to_string());
    }
}

use super::*;
use crate::checker::testkit::H;
use crate::checker::Validity;
use crate::history::{Completion, Invocation, Outcome};
use proptest::prelude::*;

fn check(h: &H) -> CheckResult {
    Linearizable::default().check(&h.build())
}

fn assert_valid(h: &H) {
    let r = check(h);
    assert_eq!(r.valid, Validity::Valid, "{r:#?}");
}

fn assert_invalid(h: &H) -> CheckResult {
    let r = check(h);
    assert_eq!(r.valid, Validity::Invalid, "{r:#?}");
    r
}

/// The counterexample entry for `op_id`, if listed.
fn cx_op(r: &CheckResult, op_id: u64) -> Option<&Value> {
    r.counterexample.iter().find(|v| v["op_id"] == op_id)
}

#[test]
fn sequential_history_is_valid() {
    let mut h = H::new();
    h.read(0, "k", "", 0.0, 5.0);
    h.write(0, "k", "a", 10.0, 20.0, Outcome::Ok);
    h.read(1, "k", "a", 30.0, 40.0);
    h.cas(0, "k", "a", "b", 50.0, 60.0, Outcome::Ok);
    h.cas(1, "k", "a", "c", 70.0, 80.0, Outcome::Fail);
    h.read(0, "k", "b", 90.0, 100.0);
    assert_valid(&h);
}

#[test]
fn stale_read_is_invalid_with_the_ops_that_show_it() {
    let mut h = H::new();
    let wa = h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    let wb = h.write(0, "k", "b", 20.0, 30.0, Outcome::Ok);
    let r = h.read(1, "k", "a", 40.0, 50.0);
    let res = assert_invalid(&h);
    assert_eq!(cx_op(&res, r).unwrap()["why"], "cannot be linearized");
    assert_eq!(
        cx_op(&res, wb).unwrap()["why"],
        "set the state of the longest linearizable prefix"
    );
    assert_eq!(
        cx_op(&res, wa).unwrap()["why"],
        "wrote the value the blocked op needed"
    );
    assert_eq!(res.counterexample[0]["op_id"], wa, "ordered by invocation");
    // Each op names its times and node.
    let blocked = cx_op(&res, r).unwrap();
    assert_eq!(
        (
            &blocked["invoke_ms"],
            &blocked["complete_ms"],
            &blocked["node"]
        ),
        (&json!(40.0), &json!(50.0), &json!("n1"))
    );
    assert!(
        res.summary.contains(r#"returned "a" but after the longest linearizable prefix (2 ok ops) the register held "b""#),
        "{}",
        res.summary
    );
}

#[test]
fn concurrent_reads_may_see_either_value_but_not_go_back() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.write(0, "k", "b", 20.0, 60.0, Outcome::Ok);
    h.read(1, "k", "a", 30.0, 40.0);
    h.read(2, "k", "b", 45.0, 50.0);
    assert_valid(&h);
    // Once a read saw b (by 50), a later read cannot see a again.
    h.read(1, "k", "a", 55.0, 70.0);
    assert_invalid(&h);
}

#[test]
fn simultaneous_completion_and_invocation_are_concurrent() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.read(1, "k", "", 10.0, 12.0);
    assert_valid(&h);
}

/// Regression: a write of the value the register already holds changes
/// nothing *there*, but it is not read-only: linearizing it early without
/// branching loses the order w(b), w(a), read a. (Found by the EDN round-trip
/// property test, with Jepsen-like small value domains.)
#[test]
fn a_write_of_the_current_value_is_not_committed_early() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 1.0, Outcome::Ok);
    h.write(1, "k", "a", 2.0, 9.0, Outcome::Ok);
    h.write(2, "k", "b", 3.0, 5.0, Outcome::Ok);
    h.read(3, "k", "a", 6.0, 8.0);
    assert_valid(&h);
}

#[test]
fn info_write_may_take_effect_late_or_never() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.write(1, "k", "b", 20.0, 30.0, Outcome::Info);
    h.read(2, "k", "a", 40.0, 50.0);
    assert_valid(&h);
    h.read(2, "k", "b", 60.0, 70.0); // took effect after 50
    assert_valid(&h);
    h.read(2, "k", "a", 80.0, 90.0); // but then a is gone for good
    assert_invalid(&h);
}

#[test]
fn pending_write_may_take_effect() {
    let mut h = H::new();
    h.invoke(1, OpKind::Write, "k", "b", None, 20.0);
    h.read(2, "k", "b", 40.0, 50.0);
    assert_valid(&h);
}

#[test]
fn failed_write_never_happened() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.write(1, "k", "b", 20.0, 30.0, Outcome::Fail);
    h.read(2, "k", "b", 40.0, 50.0);
    assert_invalid(&h);
}

#[test]
fn info_reads_are_dropped() {
    let mut h = H::new();
    let id = h.invoke(0, OpKind::Read, "k", "", None, 0.0);
    h.complete(id, 0, Outcome::Info, "nonsense", 10.0, None);
    assert_valid(&h);
}

#[test]
fn initial_state_is_absent() {
    let mut h = H::new();
    h.read(0, "k", "a", 0.0, 5.0);
    assert_invalid(&h);
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.read(0, "k", "", 20.0, 25.0);
    assert_invalid(&h);
}

#[test]
fn cas_needs_its_expected_value() {
    let mut h = H::new();
    h.cas(0, "k", "", "a", 0.0, 10.0, Outcome::Ok); // absent -> a
    h.write(0, "k", "b", 20.0, 30.0, Outcome::Ok);
    assert_valid(&h);
    let c = h.cas(1, "k", "a", "c", 40.0, 50.0, Outcome::Ok);
    let r = assert_invalid(&h);
    assert!(
        r.summary.contains(r#"succeeded expecting "a""#),
        "{}",
        r.summary
    );
    assert_eq!(cx_op(&r, c).unwrap()["expected"], "a");
}

#[test]
fn info_cas_may_or_may_not_apply() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.cas(1, "k", "a", "b", 20.0, 30.0, Outcome::Info);
    h.read(2, "k", "b", 40.0, 50.0);
    assert_valid(&h);
    let mut h = H::new();
    h.write(0, "k", "x", 0.0, 10.0, Outcome::Ok);
    h.cas(1, "k", "a", "b", 20.0, 30.0, Outcome::Info); // cannot apply: state is x
    h.read(2, "k", "b", 40.0, 50.0);
    assert_invalid(&h);
}

#[test]
fn keys_are_checked_independently() {
    let mut h = H::new();
    for k in 0..12 {
        let key = format!("k{k}");
        h.write(0, &key, "a", 0.0, 10.0, Outcome::Ok);
        h.read(1, &key, "a", 20.0, 30.0);
    }
    let lin = Linearizable {
        threads: Some(3),
        ..Linearizable::default()
    };
    assert_eq!(lin.check(&h.build()).valid, Validity::Valid);
    h.write(0, "k7", "b", 40.0, 50.0, Outcome::Ok);
    h.read(1, "k7", "a", 60.0, 70.0);
    let r = lin.check(&h.build());
    assert_eq!(r.valid, Validity::Invalid);
    assert!(r.summary.starts_with(r#"key "k7""#), "{}", r.summary);
    assert_eq!(r.details["per_key"]["k7"]["result"], "invalid");
}

#[test]
fn malformed_history_is_unknown() {
    let mut h = H::new();
    h.write(0, "k", "a", 0.0, 10.0, Outcome::Ok);
    h.complete(99, 0, Outcome::Ok, "", 5.0, None);
    let r = check(&h);
    assert_eq!(r.valid, Validity::Unknown);
    assert!(r.summary.contains("never invoked"), "{}", r.summary);
}

/// Many concurrent info writes and a read of a value nobody wrote: proving it
/// invalid means exploring every subset of the writes, so the budget must stop it.
fn explosive() -> H {
    let mut h = H::new();
    for p in 0..40 {
        h.write(p, "k", &format!("v{p}"), 0.0, 1.0, Outcome::Info);
    }
    for p in 0..40 {
        h.read(
            100 + p,
            "k",
            &format!("v{p}"),
            2.0 + f64::from(p as u32),
            2.5 + f64::from(p as u32),
        );
    }
    h.read(200, "k", "never", 100.0, 101.0);
    h
}

#[test]
fn info_writes_are_linearized_only_when_needed() {
    // Without the final impossible read, the 40 concurrent info writes each
    // read once are linearizable in order; the search must not try subsets.
    let mut h = explosive();
    h.events.pop();
    h.events.pop();
    let lin = Linearizable {
        max_memo_bytes: 1 << 20,
        ..Linearizable::default()
    };
    let r = lin.check(&h.build());
    assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
}

#[test]
fn unobserved_info_writes_are_dropped() {
    let mut h = H::new();
    for p in 0..200 {
        h.write(p, "k", &format!("lost{p}"), 0.0, 1.0, Outcome::Info);
    }
    for p in 0..50 {
        let t = 2.0 + 2.0 * f64::from(p as u32);
        h.write(300 + p, "k", &format!("v{p}"), t, t + 0.5, Outcome::Ok);
        h.read(400 + p, "k", &format!("v{p}"), t + 1.0, t + 1.5);
    }
    let lin = Linearizable {
        max_memo_bytes: 1 << 20,
        ..Linearizable::default()
    };
    let r = lin.check(&h.build());
    assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
    assert_eq!(r.details["unobserved_info_ops_dropped"], 200);
}

#[test]
fn gives_up_on_the_memo_budget_instead_of_running_out_of_memory() {
    let lin = Linearizable {
        max_memo_bytes: 1 << 20,
        ..Linearizable::default()
    };
    let r = lin.check(&explosive().build());
    assert_eq!(r.valid, Validity::Unknown, "{}", r.summary);
    assert!(
        r.summary.contains("memory budget of 1 MiB"),
        "{}",
        r.summary
    );
}

#[test]
fn gives_up_on_the_time_budget() {
    let lin = Linearizable {
        timeout: Duration::ZERO,
        ..Linearizable::default()
    };
    let r = lin.check(&explosive().build());
    assert_eq!(r.valid, Validity::Unknown);
    assert!(r.summary.contains("time budget"), "{}", r.summary);
}

// ---- Property tests: a simulated register with random concurrency. ----

/// A client operation in flight in the simulation.
#[derive(Debug, Clone)]
struct Active {
    inv: Invocation,
    /// Set once it took effect (its linearization point): the completion.
    result: Option<(Outcome, Option<String>)>,
}

/// Apply an operation to the true register; returns how it completes.
fn apply(reg: &mut [Option<String>], inv: &Invocation, key: usize) -> (Outcome, Option<String>) {
    match inv.f {
        OpKind::Read => (Outcome::Ok, reg[key].clone()),
        OpKind::Write => {
            reg[key] = inv.value.clone();
            (Outcome::Ok, None)
        }
        OpKind::Cas if reg[key] == inv.expected.clone().flatten() => {
            reg[key] = inv.value.clone();
            (Outcome::Ok, None)
        }
        OpKind::Cas => (Outcome::Fail, None),
    }
}

/// Run `procs` clients against a sequential register (one per key), each
/// choice driving one step: invoke, take effect, complete ok / fail / info,
/// or let a timed-out operation take effect late. Every operation takes effect
/// between its invocation and completion (or, for info, any time after its
/// invocation, or never), so the history is linearizable by construction.
/// Written values are unique. Times are non-decreasing, sometimes equal.
fn simulate(procs: usize, keys: usize, choices: &[u32]) -> Vec<Event> {
    let mut reg: Vec<Option<String>> = vec![None; keys];
    let mut active: Vec<Option<Active>> = vec![None; procs];
    let mut floating: Vec<(Invocation, usize)> = Vec::new();
    let mut events = Vec::new();
    let (mut t, mut next_id, mut next_val) = (0.0, 0u64, 0u64);
    let key_ix = |k: &str| k[1..].parse::<usize>().expect("key is k<n>");
    for &c in choices {
        t += f64::from((c >> 28) & 1);
        if c % 11 == 0 && !floating.is_empty() {
            let (inv, key) = floating.remove(0);
            if (c >> 4) & 1 == 0 {
                apply(&mut reg, &inv, key);
            }
            continue;
        }
        let pi = (c as usize >> 8) % procs;
        let step = (c >> 12) % 8;
        let Some(a) = active[pi].as_mut() else {
            let f = [OpKind::Read, OpKind::Write, OpKind::Cas][((c >> 13) % 3) as usize];
            let key = (c as usize >> 16) % keys;
            next_id += 1;
            let mut value = None;
            if f != OpKind::Read {
                next_val += 1;
                value = Some(format!("v{next_val}"));
            }
            let expected = (f == OpKind::Cas).then(|| {
                if (c >> 20) & 1 == 0 {
                    reg[key].clone()
                } else {
                    None
                }
            });
            let inv = Invocation {
                op_id: next_id,
                process: pi as u64,
                time_ms: t,
                f,
                key: format!("k{key}"),
                value,
                expected,
                node: format!("n{}", pi % 3 + 1),
            };
            events.push(Event::Invoke(inv.clone()));
            active[pi] = Some(Active { inv, result: None });
            continue;
        };
        let key = key_ix(&a.inv.key);
        let completion = match (&a.result, step) {
            // Take effect now.
            (None, 0..=5) => {
                a.result = Some(apply(&mut reg, &a.inv, key));
                None
            }
            // Never took effect: a write or cas can fail; a read just times out.
            (None, 6) if a.inv.f != OpKind::Read => Some(a.inv.fail(t, "refused")),
            // Unknown outcome; a write or cas may still take effect later.
            (None, _) => {
                if a.inv.f != OpKind::Read && (c >> 21) & 1 == 0 {
                    floating.push((a.inv.clone(), key));
                }
                Some(a.inv.info(t, "timeout"))
            }
            (Some(_), 7) => Some(a.inv.info(t, "timeout after taking effect")),
            (Some((Outcome::Ok, v)), _) => Some(a.inv.ok(t, v.clone())),
            (Some(_), _) => Some(a.inv.fail(t, "cas precondition failed")),
        };
        if let Some(c) = completion {
            events.push(Event::Complete(c));
            active[pi] = None;
        }
    }
    events
}

fn ok_reads(events: &[Event]) -> Vec<usize> {
    let ops = pair_ops(events);
    let reads: HashSet<u64> = ops
        .ops
        .iter()
        .filter(|o| o.invoke.f == OpKind::Read && o.outcome() == Outcome::Ok)
        .map(|o| o.invoke.op_id)
        .collect();
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Complete(c) if reads.contains(&c.op_id)))
        .map(|(i, _)| i)
        .collect()
}

fn completion_mut(e: &mut Event) -> &mut Completion {
    match e {
        Event::Complete(c) => c,
        _ => unreachable!("an index from ok_reads"),
    }
}

fn history() -> impl Strategy<Value = Vec<Event>> {
    (
        1usize..=5,
        1usize..=3,
        prop::collection::vec(any::<u32>(), 1..160),
    )
        .prop_map(|(procs, keys, choices)| simulate(procs, keys, &choices))
}

fn lin() -> Linearizable {
    Linearizable {
        threads: Some(2),
        ..Linearizable::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn simulated_register_histories_are_linearizable(events in history()) {
        let r = lin().check(&events);
        prop_assert_eq!(r.valid, Validity::Valid, "{:#?}", r);
    }

    /// A read of a value no operation ever wrote cannot be linearized.
    #[test]
    fn a_read_of_a_never_written_value_is_caught(events in history(), pick in any::<prop::sample::Index>()) {
        let reads = ok_reads(&events);
        prop_assume!(!reads.is_empty());
        let mut events = events;
        let c = completion_mut(&mut events[reads[pick.index(reads.len())]]);
        c.value = Some("never-written".into());
        let op_id = c.op_id;
        let r = lin().check(&events);
        prop_assert_eq!(r.valid, Validity::Invalid, "{:#?}", r);
        prop_assert!(r.counterexample.iter().any(|v| v["op_id"] == op_id), "{:#?}", r);
    }

    /// A read changed to a stale value: one whose write was overwritten by an
    /// acknowledged write that completed before the read began (values are
    /// unique, so nothing writes it again).
    #[test]
    fn a_stale_read_is_caught(events in history(), pick in any::<prop::sample::Index>()) {
        let ops = pair_ops(&events);
        let ok_writes: Vec<&Op> = ops.ops.iter().filter(|o| o.is_ok_write()).collect();
        let mut stale = Vec::new();
        for r in ops.ops.iter().filter(|o| o.invoke.f == OpKind::Read && o.outcome() == Outcome::Ok) {
            for w in &ok_writes {
                let overwritten = ok_writes.iter().any(|w2| {
                    w2.invoke.key == w.invoke.key
                        && w2.invoke.time_ms > w.end_ms().unwrap()
                        && w2.end_ms().unwrap() < r.invoke.time_ms
                });
                if w.invoke.key == r.invoke.key && overwritten {
                    stale.push((r.invoke.op_id, w.invoke.value.clone()));
                }
            }
        }
        prop_assume!(!stale.is_empty());
        let (read, value) = stale[pick.index(stale.len())].clone();
        let mut events = events;
        for e in &mut events {
            if let Event::Complete(c) = e {
                if c.op_id == read {
                    c.value = value.clone();
                }
            }
        }
        let r = lin().check(&events);
        prop_assert_eq!(r.valid, Validity::Invalid, "{:#?}", r);
        prop_assert!(r.counterexample.iter().any(|v| v["op_id"] == read), "{:#?}", r);
    }

    /// A read that returns the value of a write invoked only after the read
    /// completed (values are unique) cannot be linearized.
    #[test]
    fn a_read_from_the_future_is_caught(events in history(), pick in any::<prop::sample::Index>()) {
        let ops = pair_ops(&events);
        let mut pairs = Vec::new();
        for r in ops.ops.iter().filter(|o| o.invoke.f == OpKind::Read && o.outcome() == Outcome::Ok) {
            let done = r.end_ms().expect("ok ops completed");
            for w in ops.ops.iter().filter(|o| o.invoke.f != OpKind::Read) {
                if w.invoke.key == r.invoke.key && w.invoke.time_ms > done {
                    pairs.push((r.invoke.op_id, w.invoke.value.clone()));
                }
            }
        }
        prop_assume!(!pairs.is_empty());
        let (read, value) = pairs[pick.index(pairs.len())].clone();
        let mut events = events;
        for e in &mut events {
            if let Event::Complete(c) = e {
                if c.op_id == read {
                    c.value = value.clone();
                }
            }
        }
        let r = lin().check(&events);
        prop_assert_eq!(r.valid, Validity::Invalid, "{:#?}", r);
    }
}

//! Jepsen histories (`harness check --format edn`, issue 7): the EDN
//! fixtures in `tests/fixtures/edn/` with their expected verdicts in one
//! table, the command line's exit codes and JSON, and round-trip property
//! tests per model (generated histories check valid; one corrupted read makes
//! them invalid).

use harness::checker::jepsen::{
    check_file, check_text, EdnError, EdnOptions, Independent, ModelName,
};
use harness::checker::synth::{corrupt, simulate, to_edn, SynthConfig, SynthModel};
use harness::checker::Validity;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ModelName::{CasRegister, MultiRegister, Mutex, Register};
use Validity::{Invalid as I, Valid as V};

struct Fixture {
    file: &'static str,
    model: ModelName,
    init: Option<&'static str>,
    valid: Validity,
    /// A fragment the summary must contain.
    summary: &'static str,
    /// For invalid ones: (index, process) of the op that cannot be linearized,
    /// and the indexes the counterexample must name, in file order.
    blocked: Option<(i64, i64)>,
    counterexample: &'static [i64],
}

#[rustfmt::skip]
const FIXTURES: &[Fixture] = &[
    Fixture { file: "register-valid", model: Register, init: None, valid: V,
        summary: "4 operations on 1 key(s) are linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "register-stale-read", model: Register, init: None, valid: I,
        summary: "op 4 (process 2, :read 1, ok) cannot be linearized: after the longest linearizable prefix (2 ok ops) the register held 2",
        blocked: Some((4, 2)), counterexample: &[0, 2, 4] },
    Fixture { file: "register-nil-reads", model: Register, init: None, valid: V,
        summary: "linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "register-failed-write", model: Register, init: None, valid: I,
        summary: "register held 1", blocked: Some((4, 2)), counterexample: &[0, 4] },
    Fixture { file: "register-info-write", model: Register, init: None, valid: V,
        summary: "linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "register-info-write-undone", model: Register, init: None, valid: I,
        summary: "op 6 (process 0, :read 1, ok)", blocked: Some((6, 0)), counterexample: &[0, 2, 6] },
    Fixture { file: "cas-register-valid", model: CasRegister, init: Some("0"), valid: V,
        summary: "linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "cas-register-invalid", model: CasRegister, init: None, valid: I,
        summary: "op 4 (process 1, :cas [1 3], ok) cannot be linearized: after the longest linearizable prefix (2 ok ops) the register held 2",
        blocked: Some((4, 1)), counterexample: &[0, 2, 4] },
    Fixture { file: "cas-register-ok-value", model: CasRegister, init: None, valid: I,
        summary: "op 6 (process 1, :read 7, ok)", blocked: Some((6, 1)), counterexample: &[0, 4, 6] },
    Fixture { file: "cas-register-independent", model: CasRegister, init: None, valid: I,
        summary: "key 2: op 8 (process 0, :read 20, ok)", blocked: Some((8, 0)), counterexample: &[1, 4, 8] },
    Fixture { file: "cas-register-independent-valid", model: CasRegister, init: None, valid: V,
        summary: "on 2 key(s) are linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "multi-register-valid", model: MultiRegister, init: None, valid: V,
        summary: "linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "multi-register-invalid", model: MultiRegister, init: None, valid: I,
        summary: "the registers held {:x 2, :y 2}", blocked: Some((3, 2)), counterexample: &[0, 2, 3] },
    Fixture { file: "mutex-valid", model: Mutex, init: None, valid: V,
        summary: "linearizable", blocked: None, counterexample: &[] },
    Fixture { file: "mutex-invalid", model: Mutex, init: None, valid: I,
        summary: "op 2 (process 1, :acquire nil, ok) cannot be linearized: after the longest linearizable prefix (1 ok ops) the mutex was held",
        blocked: Some((2, 1)), counterexample: &[0, 2] },
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edn")
}

fn opts(model: ModelName, init: Option<&str>) -> EdnOptions {
    EdnOptions {
        init: init.map(String::from),
        threads: Some(2),
        ..EdnOptions::new(model)
    }
}

#[test]
fn fixtures_get_their_expected_verdicts() {
    let mut failures = Vec::new();
    for f in FIXTURES {
        let path = dir().join(format!("{}.edn", f.file));
        let r = match check_file(&path, &opts(f.model, f.init)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e}", f.file));
                continue;
            }
        };
        if r.valid != f.valid {
            failures.push(format!(
                "{}: {} (want {}): {}",
                f.file, r.valid, f.valid, r.summary
            ));
        }
        if !r.summary.contains(f.summary) {
            failures.push(format!(
                "{}: summary {:?} lacks {:?}",
                f.file, r.summary, f.summary
            ));
        }
        let got: Vec<i64> = r.counterexample.iter().map(|o| o.index).collect();
        if got != f.counterexample {
            failures.push(format!(
                "{}: counterexample indexes {got:?} (want {:?})",
                f.file, f.counterexample
            ));
        }
        if let Some((index, process)) = f.blocked {
            let blocked = r
                .counterexample
                .iter()
                .find(|o| o.why == "cannot be linearized");
            if blocked.map(|o| (o.index, o.process)) != Some((index, process)) {
                failures.push(format!(
                    "{}: blocked op {blocked:?} (want index {index}, process {process})",
                    f.file
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_edn_fixture_is_in_the_table() {
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let stem = name.strip_suffix(".edn").expect("only .edn files here");
        assert!(
            stem == "malformed" || FIXTURES.iter().any(|f| f.file == stem),
            "{name} has no row in FIXTURES"
        );
    }
}

#[test]
fn counterexamples_carry_times_lines_and_outcomes() {
    let r = check_file(
        &dir().join("register-info-write-undone.edn"),
        &opts(Register, None),
    )
    .unwrap();
    let info = r
        .counterexample
        .iter()
        .find(|o| o.index == 2)
        .expect("the info write");
    assert_eq!(
        (info.outcome, info.completion_index, info.invoke_time),
        ("info", Some(3), Some(3000))
    );
    assert_eq!(info.line, 5);
    let read = r.counterexample.iter().find(|o| o.index == 6).unwrap();
    assert_eq!((read.value.as_str(), read.complete_time), ("1", Some(8000)));
    let r = check_file(
        &dir().join("cas-register-independent.edn"),
        &opts(CasRegister, None),
    )
    .unwrap();
    assert!(r
        .counterexample
        .iter()
        .all(|o| o.key.as_deref() == Some("2")));
    assert!(r.history.independent);
    assert_eq!(r.history.keys, 2);
}

#[test]
fn history_preparation_follows_knossos() {
    // Failed ops are dropped, nemesis ops ignored, unmatched invocations kept
    // as unknown; the init value counts.
    let r = check_file(
        &dir().join("cas-register-valid.edn"),
        &opts(CasRegister, Some("0")),
    )
    .unwrap();
    let h = &r.history;
    assert_eq!(
        (h.client_ops, h.ok, h.fail, h.info, h.ignored),
        (5, 3, 1, 1, 1),
        "{h:?}"
    );
    // Without --init 0 the first cas [0 1] cannot apply to nil.
    let r = check_file(
        &dir().join("cas-register-valid.edn"),
        &opts(CasRegister, None),
    )
    .unwrap();
    assert_eq!(r.valid, Validity::Invalid, "{}", r.summary);
    // A read of nil constrains nothing and is dropped before the search.
    let r = check_file(&dir().join("register-nil-reads.edn"), &opts(Register, None)).unwrap();
    assert_eq!(r.history.dropped, 1);
}

#[test]
fn independent_keys_are_detected_and_can_be_forced() {
    let check = |text: &str, o: &EdnOptions| check_text(text, "t.edn", o, Instant::now());
    // A plain cas [from to] is not a [key value] tuple: invalid from nil.
    let text = "{:type :invoke, :f :cas, :value [1 2], :process 0}\n\
                {:type :ok, :f :cas, :value [1 2], :process 0}\n";
    let r = check(text, &opts(CasRegister, None)).unwrap();
    assert!(!r.history.independent);
    assert_eq!(r.valid, Validity::Invalid);
    // Tuples everywhere (reads invoked with [k nil]): key 1 reads 2 after writing 2.
    let tuples = "{:type :invoke, :f :write, :value [1 2], :process 0}\n\
                  {:type :ok, :f :write, :value [1 2], :process 0}\n\
                  {:type :invoke, :f :read, :value [1 nil], :process 0}\n\
                  {:type :ok, :f :read, :value [1 2], :process 0}\n";
    let r = check(tuples, &opts(Register, None)).unwrap();
    assert!(r.history.independent);
    assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
    // The same read as a bare nil: not independent, a register of vectors.
    let bare = tuples.replace(":value [1 nil]", ":value nil").replace(
        ":value [1 2], :process 0}\n{:type :ok, :f :read",
        ":value (1 2), :process 0}\n{:type :ok, :f :read",
    );
    let bare = bare.replace(
        "{:type :ok, :f :read, :value [1 2]",
        "{:type :ok, :f :read, :value (1 2)",
    );
    let r = check(&bare, &opts(Register, None)).unwrap();
    assert!(!r.history.independent);
    assert_eq!(
        r.valid,
        Validity::Valid,
        "a list equals a vector, as in Clojure: {}",
        r.summary
    );
    // Forced either way.
    let plain = EdnOptions {
        independent: Independent::No,
        ..opts(Register, None)
    };
    let r = check(tuples, &plain).unwrap();
    assert!(!r.history.independent);
    assert_eq!(r.history.keys, 1);
    assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
    let keyed = EdnOptions {
        independent: Independent::Yes,
        ..opts(Register, None)
    };
    let err = check(&bare, &keyed).unwrap_err().to_string();
    assert!(err.contains("expected a [key value] tuple"), "{err}");
}

#[test]
fn malformed_files_name_line_column_and_expectation() {
    let err = check_file(&dir().join("malformed.edn"), &opts(Register, None)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EdnError::Syntax { .. }), "{msg}");
    assert!(msg.contains("line 3, column 41"), "{msg}");
    assert!(msg.contains("even number of elements"), "{msg}");
    let bad = [
        (
            "{:type :invoke, :f :read, :process 0}\n{:type :done, :f :read, :process 0}",
            "line 2, column 1",
            ":type to be :invoke",
        ),
        (
            "{:type :ok, :f :read, :process 0, :value 1}",
            "line 1, column 1",
            "never invoked",
        ),
        (
            "{:type :invoke, :f :read, :process 0}\n{:type :invoke, :f :read, :process 0}",
            "line 2",
            "has not completed",
        ),
        (
            "{:type :invoke, :f :inc, :process 0}",
            "line 1",
            "no :f :inc",
        ),
        (
            "{:type :invoke, :f :cas, :process 0, :value 3}",
            "line 1",
            "[from to]",
        ),
    ];
    for (text, at, what) in bad {
        let msg = check_text(text, "t.edn", &opts(CasRegister, None), Instant::now())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(at) && msg.contains(what), "{text:?}: {msg}");
    }
    let msg = check_text("", "t.edn", &opts(Register, Some("{:x")), Instant::now())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bad --init"), "{msg}");
}

fn harness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_exit_codes_and_json() {
    let f = |name: &str| dir().join(name).display().to_string();
    let (code, out, _) = harness(&["check", &f("register-valid.edn"), "--model", "register"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verdict  VALID") && out.contains("peak RSS"),
        "{out}"
    );
    let (code, out, _) = harness(&[
        "check",
        &f("register-stale-read.edn"),
        "--model",
        "register",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot be linearized"), "{out}");
    let (code, out, _) = harness(&[
        "check",
        &f("register-valid.edn"),
        "--model",
        "register",
        "--check-timeout",
        "0s",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("UNKNOWN") && out.contains("time budget"),
        "{out}"
    );
    let (code, _, err) = harness(&["check", &f("malformed.edn"), "--model", "register"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("line 3, column 41"), "{err}");
    let (code, _, err) = harness(&["check", &f("register-valid.edn")]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--model is required"), "{err}");
    let (code, _, err) = harness(&["check", &f("register-valid.edn"), "--model", "queue"]);
    assert_eq!(code, 64, "{err}");

    // --json, and --format edn for a file without the extension.
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("history.txt");
    std::fs::copy(dir().join("mutex-invalid.edn"), &plain).unwrap();
    let (code, out, err) = harness(&[
        "check",
        "--format",
        "edn",
        plain.to_str().unwrap(),
        "--model",
        "mutex",
        "--json",
    ]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["valid"], false);
    assert_eq!(v["model"], "mutex");
    assert_eq!(v["counterexample"][1]["index"], 2);
    assert_eq!(v["counterexample"][1]["process"], 1);
    assert!(v["time"]["total_ms"].is_number() && v["memory"]["memo_budget_bytes"].is_number());
}

// ---- Round trip: generated histories of each model, written as EDN. ----

fn synth_model(m: ModelName) -> SynthModel {
    match m {
        Register => SynthModel::Register,
        CasRegister => SynthModel::CasRegister,
        MultiRegister => SynthModel::MultiRegister,
        Mutex => SynthModel::Mutex,
    }
}

fn config(
    m: ModelName,
    seed: u64,
    procs: usize,
    ops: usize,
    keys: usize,
    info: f64,
) -> SynthConfig {
    SynthConfig {
        info_rate: info,
        values: Some(5),
        seed,
        ..SynthConfig::new(synth_model(m), ops, procs, keys)
    }
}

fn round_trip(
    m: ModelName,
    cfg: &SynthConfig,
    corrupt_pick: Option<usize>,
) -> Result<(), TestCaseError> {
    let mut events = simulate(cfg);
    let corrupted = match corrupt_pick {
        Some(pick) => match corrupt(&mut events, pick) {
            Some(i) => Some(i),
            None => return Ok(()), // no read to corrupt
        },
        None => None,
    };
    let independent = cfg.keys > 1;
    let text = to_edn(&events, independent);
    let r = check_text(&text, "gen.edn", &opts(m, None), Instant::now())
        .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(r.history.independent, independent);
    match corrupted {
        None => prop_assert_eq!(r.valid, Validity::Valid, "{}\n{}", r.summary, text),
        Some(i) => {
            prop_assert_eq!(r.valid, Validity::Invalid, "{}\n{}", r.summary, text);
            if m != Mutex {
                // The corrupted read is the op that cannot be linearized, or
                // its completion index is named among the ops shown.
                let named = r
                    .counterexample
                    .iter()
                    .any(|o| o.completion_index == Some(i as i64));
                prop_assert!(
                    named || r.counterexample.len() == 6,
                    "{:?}\n{}",
                    r.counterexample,
                    text
                );
            }
        }
    }
    Ok(())
}

fn models() -> impl Strategy<Value = ModelName> {
    prop_oneof![
        Just(Register),
        Just(CasRegister),
        Just(MultiRegister),
        Just(Mutex)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn generated_histories_round_trip_valid(
        m in models(), seed in any::<u64>(), procs in 1usize..=5, ops in 1usize..120,
        keys in 1usize..=3, info in prop::sample::select(vec![0.0, 0.1, 0.3]),
    ) {
        round_trip(m, &config(m, seed, procs, ops, keys, info), None)?;
    }

    #[test]
    fn one_corrupted_read_makes_them_invalid(
        m in models(), seed in any::<u64>(), procs in 1usize..=5, ops in 1usize..120,
        // Up to 10% of ops time out: realistic, and quick to refute (at 30%
        // with five values, refuting can take the search seconds: every
        // subset of the unknown ops must be ruled out).
        keys in 1usize..=3, info in prop::sample::select(vec![0.0, 0.05, 0.1]), pick in any::<usize>(),
    ) {
        round_trip(m, &config(m, seed, procs, ops, keys, info), Some(pick))?;
    }
}

//! `junit.xml` for CI (written with quick-junit): one test suite per run
//! named after its nemesis, one test case per check. An invalid check is a
//! failure whose message carries the summary and the counterexample; an
//! unknown one is an error; valid is success. Heal and teardown problems go
//! to the suite's system-err (they are never part of the verdict).

use super::{write_atomic, Report};
use crate::checker::Validity;
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the JUnit report inside a run directory.
pub const JUNIT_XML: &str = "junit.xml";

/// The counterexample in a failure message is cut at this many characters;
/// the failure's body holds all of it.
const MESSAGE_CX_MAX: usize = 4000;

/// The JUnit document for one run.
pub fn render_junit(r: &Report) -> String {
    let mut doc = quick_junit::Report::new(format!("harness {}", r.run.id));
    let mut suite = TestSuite::new(format!("rapidstore.{}", r.run.nemesis));
    suite.set_time(Duration::from_secs_f64(r.stats.duration_s.max(0.0)));
    suite.add_properties([
        Property::new("run", &r.run.id),
        Property::new("nemesis", &r.run.nemesis),
        Property::new("workload", &r.run.workload),
        Property::new("seed", r.run.seed.to_string()),
        Property::new("nodes", r.run.nodes.join(" ")),
        Property::new("zookeeper", r.run.zk.join(" ")),
        Property::new("bug", r.run.bug.join(" ")),
        Property::new("started_at", &r.run.started_at),
        Property::new(
            "failover_p99_ms",
            r.failover.p99_ms.map_or("-".into(), |v| format!("{v:.0}")),
        ),
    ]);
    let classname = format!("rapidstore.{}", r.run.nemesis);
    for (name, c) in &r.checks {
        let status = match c.valid {
            Validity::Valid => TestCaseStatus::success(),
            Validity::Invalid => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let cx_short = super::view::compact_max(
                    &serde_json::Value::Array(c.counterexample.clone()),
                    MESSAGE_CX_MAX,
                );
                s.set_type("invalid")
                    .set_message(format!("{} | counterexample: {cx_short}", c.summary))
                    .set_description(
                        serde_json::to_string_pretty(&c.counterexample).unwrap_or_default(),
                    );
                s
            }
            Validity::Unknown => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_type("unknown").set_message(&c.summary);
                if !c.details.is_null() {
                    s.set_description(serde_json::to_string_pretty(&c.details).unwrap_or_default());
                }
                s
            }
        };
        let mut case = TestCase::new(name.as_str(), status);
        case.set_classname(classname.as_str());
        if c.valid == Validity::Valid {
            case.set_system_out(c.summary.as_str());
        }
        suite.add_test_case(case);
    }
    if !r.teardown_errors.is_empty() {
        suite.set_system_err(format!(
            "heal/teardown problems (not part of the verdict):\n{}",
            r.teardown_errors.join("\n")
        ));
    }
    suite.set_system_out(super::render_table(r));
    doc.add_test_suite(suite);
    doc.to_string().expect("JUnit reports always serialize")
}

/// Write `run_dir/junit.xml`.
pub fn write_junit(run_dir: &Path, r: &Report) -> std::io::Result<PathBuf> {
    let path = run_dir.join(JUNIT_XML);
    write_atomic(&path, render_junit(r).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use crate::checker::CheckResult;

    #[test]
    fn one_case_per_check_with_failures_and_errors() {
        let mut r = sample();
        r.checks.insert(
            "linearizable".into(),
            CheckResult::invalid(
                "key \"k1\": read (op 35) saw v3",
                vec![serde_json::json!({"op_id": 35, "f": "read", "value": "v3"})],
            ),
        );
        let xml = render_junit(&r);
        let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let suite = &parsed.test_suites[0];
        assert_eq!(suite.name.as_str(), "rapidstore.partition-leader");
        assert_eq!(suite.test_cases.len(), r.checks.len());
        let lin = suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "linearizable")
            .unwrap();
        match &lin.status {
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                message,
                ..
            } => {
                let m = message.as_ref().unwrap().as_str();
                assert!(m.contains("op 35") && m.contains("\"op_id\":35"), "{m}");
            }
            other => panic!("linearizable should fail: {other:?}"),
        }
        // The sample's empty history leaves some checks unknown: errors.
        assert!(suite.test_cases.iter().any(|c| matches!(
            c.status,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                ..
            }
        )));
        assert_eq!(parsed.failures, 1);
    }
}

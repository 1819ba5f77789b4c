//! JSON Schemas generated from the types: `report.json` ([`Report`]) and one
//! line of `history.jsonl` ([`Event`]). The generated files are checked in
//! under `schema/`; a test fails when the types and the files disagree
//! (regenerate with `HARNESS_UPDATE_SCHEMA=1 cargo test -p harness schema`).

use super::Report;
use crate::checker::Validity;
use crate::history::Event;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// Where the checked-in schemas live, relative to the repository root.
pub const REPORT_SCHEMA_PATH: &str = "schema/report.schema.json";
/// Schema of one `history.jsonl` line.
pub const HISTORY_SCHEMA_PATH: &str = "schema/history-event.schema.json";

/// `Validity` serializes as `true`, `false` or `"unknown"` (Jepsen's
/// convention), not as an enum of names, so its schema is written by hand.
impl JsonSchema for Validity {
    fn schema_name() -> Cow<'static, str> {
        "Validity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A check's answer: true (valid), false (invalid) or \"unknown\" (the checker could not decide).",
            "oneOf": [
                { "type": "boolean" },
                { "const": "unknown" }
            ]
        })
    }
}

fn pretty(schema: &Schema) -> String {
    serde_json::to_string_pretty(schema).expect("schemas always serialize") + "\n"
}

/// The JSON Schema of `report.json`, pretty-printed with a trailing newline.
pub fn report_schema() -> String {
    let mut s = schemars::schema_for!(Report);
    s.insert(
        "$id".into(),
        "https://rapidstore.invalid/harness/report.schema.json".into(),
    );
    pretty(&s)
}

/// The JSON Schema of one line of `history.jsonl`.
pub fn history_event_schema() -> String {
    let mut s = schemars::schema_for!(Event);
    s.insert(
        "$id".into(),
        "https://rapidstore.invalid/harness/history-event.schema.json".into(),
    );
    pretty(&s)
}

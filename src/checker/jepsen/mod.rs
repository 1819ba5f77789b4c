//! Jepsen histories (`history.edn`) checked for linearizability against
//! Knossos' models, by the same [search](super::search) engine as
//! RapidStore's histories and inside the same time and memory budget.
//!
//! - `edn`: reading the file into op maps (line and column of every error)
//! - `prepare`: Knossos' history preparation, independent keys, model ops
//!
//! [`check_file`] reads, prepares, searches every key (in parallel) and
//! returns an [`EdnReport`]: verdict, counterexample (the ops that cannot be
//! ordered, with their indexes and processes), time and memory used.

mod edn;
mod prepare;

pub use edn::{OpType, Pos, SyntaxError};
pub use prepare::{HistoryCounts, Independent, ModelName};

use super::linearizable::{human_bytes, limit_reason, thread_count};
use super::models::{writers_of, MultiRegister, Mutex, Register, NIL};
use super::resources::peak_rss_bytes;
use super::search::{search_all, Budget, Failure, Outcome, Problem};
use super::Validity;
use edn::RawOp;
use prepare::{Convert, KeyHistory};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Version of the `--json` output shape.
pub const EDN_REPORT_VERSION: u32 = 1;

/// How to check a Jepsen history.
#[derive(Debug, Clone, PartialEq)]
pub struct EdnOptions {
    pub model: ModelName,
    /// Initial state as EDN text (`None`: nil, or a free mutex).
    pub init: Option<String>,
    pub independent: Independent,
    /// Wall-clock budget for the search (all keys together).
    pub timeout: Duration,
    /// Bytes the memo tables of all keys may hold at once.
    pub max_memo_bytes: usize,
    /// Worker threads for parsing and searching (`None`: all cores).
    pub threads: Option<usize>,
}

impl EdnOptions {
    /// Defaults for `model`: the budgets of [`super::CheckOptions`].
    pub fn new(model: ModelName) -> Self {
        let d = super::CheckOptions::default();
        EdnOptions {
            model,
            init: None,
            independent: Independent::Auto,
            timeout: d.timeout,
            max_memo_bytes: d.max_memo_bytes,
            threads: d.threads,
        }
    }
}

/// Why a Jepsen history could not be checked (all usage errors: exit 64).
#[derive(Debug, thiserror::Error)]
pub enum EdnError {
    #[error("failed to read history `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed history `{path}` at {pos}: {message}\n  hint: a Jepsen history is one EDN vector of op maps, or one op map per line, like {{:process 0, :type :invoke, :f :read, :value nil}}")]
    Syntax {
        path: String,
        pos: Pos,
        message: String,
    },
    #[error("history `{path}` does not fit the {model} model at {message}")]
    Model {
        path: String,
        model: &'static str,
        message: String,
    },
    #[error("bad --init `{init}`: {message}")]
    Init { init: String, message: String },
}

/// One op of a counterexample, as the history has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterexampleOp {
    /// The independent key, as EDN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `:index` of the invocation (its position in the file if not given).
    pub index: i64,
    pub process: i64,
    /// `:f`, as EDN.
    pub f: String,
    /// The value checked: an `:ok` completion's, else the invocation's (as EDN,
    /// unwrapped from its key).
    pub value: String,
    /// `ok`, `info`, or `pending` (never completed).
    pub outcome: &'static str,
    /// `:index` of the completion, if any.
    pub completion_index: Option<i64>,
    /// `:time` of the invocation and completion, if given.
    pub invoke_time: Option<i64>,
    pub complete_time: Option<i64>,
    /// Line of the invocation in the file.
    pub line: u32,
    pub why: &'static str,
}

/// How one key went, for keys that were not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyVerdict {
    pub result: &'static str,
    pub ops: usize,
    pub memo_entries: usize,
    pub ms: u128,
}

/// Time used.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Reading and parsing the file.
    pub read_ms: f64,
    /// Preparation and search.
    pub check_ms: f64,
    pub total_ms: f64,
}

/// Memory used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Peak resident memory of the whole process (Linux `VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// Most bytes the search memo tables held at once.
    pub memo_peak_bytes: usize,
    pub memo_budget_bytes: usize,
}

/// What `harness check --format edn` concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdnReport {
    pub version: u32,
    pub file: String,
    pub model: &'static str,
    /// Initial state, as EDN.
    pub init: String,
    pub valid: Validity,
    /// One line for people.
    pub summary: String,
    pub history: HistoryCounts,
    /// The ops that cannot be ordered (empty unless invalid), in file order.
    pub counterexample: Vec<CounterexampleOp>,
    /// Keys that were not valid (unknown, invalid, cancelled), by key.
    pub keys: BTreeMap<String, KeyVerdict>,
    pub time: Timing,
    pub memory: Memory,
}

impl EdnReport {
    /// The process exit code: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(&self) -> i32 {
        match self.valid {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

/// Read and check the Jepsen history in `path`.
pub fn check_file(path: &Path, opts: &EdnOptions) -> Result<EdnReport, EdnError> {
    let started = Instant::now();
    let file = path.display().to_string();
    let init = parse_init(opts)?;
    let text = std::fs::read_to_string(path).map_err(|source| EdnError::Io {
        path: file.clone(),
        source,
    })?;
    let ops = parse(&text, &file, opts)?;
    // The ops own their values: the text need not stay in memory.
    drop(text);
    check_ops(ops, &file, opts, &init, started)
}

/// Check a Jepsen history held in `text` (`file` names it in messages);
/// `started` is when reading began, for the timing.
pub fn check_text(
    text: &str,
    file: &str,
    opts: &EdnOptions,
    started: Instant,
) -> Result<EdnReport, EdnError> {
    let init = parse_init(opts)?;
    let ops = parse(text, file, opts)?;
    check_ops(ops, file, opts, &init, started)
}

fn parse_init(opts: &EdnOptions) -> Result<edn_format::Value, EdnError> {
    match &opts.init {
        None => Ok(edn_format::Value::Nil),
        Some(s) => edn_format::parse_str(s).map_err(|e| EdnError::Init {
            init: s.clone(),
            message: e.error.to_string().to_lowercase(),
        }),
    }
}

fn syntax(file: &str) -> impl Fn(SyntaxError) -> EdnError + '_ {
    move |e| EdnError::Syntax {
        path: file.to_string(),
        pos: e.pos,
        message: e.message,
    }
}

fn parse(text: &str, file: &str, opts: &EdnOptions) -> Result<Vec<RawOp>, EdnError> {
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    edn::read_ops(text, threads).map_err(syntax(file))
}

fn check_ops(
    ops: Vec<RawOp>,
    file: &str,
    opts: &EdnOptions,
    init: &edn_format::Value,
    started: Instant,
) -> Result<EdnReport, EdnError> {
    let read_ms = ms(started.elapsed());
    let check_started = Instant::now();
    let mut counts = HistoryCounts::default();
    let pairs = prepare::pair(&ops, &mut counts).map_err(syntax(file))?;
    let independent = prepare::is_independent(opts.independent, opts.model, &ops, &pairs);
    let ctx = Ctx {
        file,
        opts,
        init,
        ops: &ops,
        pairs: &pairs,
        independent,
    };
    let mut report = match opts.model {
        ModelName::Register | ModelName::CasRegister => check_model::<Register>(&ctx, counts)?,
        ModelName::MultiRegister => check_model::<MultiRegister>(&ctx, counts)?,
        ModelName::Mutex => check_model::<Mutex>(&ctx, counts)?,
    };
    report.time = Timing {
        read_ms,
        check_ms: ms(check_started.elapsed()),
        total_ms: ms(started.elapsed()),
    };
    report.memory.peak_rss_bytes = peak_rss_bytes();
    Ok(report)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Ctx<'a> {
    file: &'a str,
    opts: &'a EdnOptions,
    init: &'a edn_format::Value,
    ops: &'a [RawOp],
    pairs: &'a [prepare::Pair],
    independent: bool,
}

/// How a model explains itself in a counterexample.
trait Explain: Convert {
    /// The state, for people ("the register held 3").
    fn show_state(h: &KeyHistory<Self>, state: &Self::State) -> String;
    /// Further ops worth showing: who produced what the blocked op needed.
    fn needed(_h: &KeyHistory<Self>, _f: &Failure<Self::State>) -> Vec<usize> {
        Vec::new()
    }
}

impl Explain for Register {
    fn show_state(h: &KeyHistory<Self>, &s: &u32) -> String {
        format!("the register held {}", h.values.show(s))
    }
    fn needed(h: &KeyHistory<Self>, f: &Failure<u32>) -> Vec<usize> {
        match h.problem.ops[f.blocked].op.observes() {
            Some(v) if v != NIL => writers_of(&h.problem.ops, v).take(2).collect(),
            _ => Vec::new(),
        }
    }
}

impl Explain for MultiRegister {
    fn show_state(h: &KeyHistory<Self>, s: &Box<[u32]>) -> String {
        let regs: Vec<String> = h
            .regs
            .iter()
            // Register numbers start at 1 (the interner keeps 0 for nil).
            .zip(s.iter().skip(1))
            .map(|(r, &v)| format!("{r} {}", h.values.show(v)))
            .collect();
        format!("the registers held {{{}}}", regs.join(", "))
    }
    fn needed(h: &KeyHistory<Self>, f: &Failure<Box<[u32]>>) -> Vec<usize> {
        // For each read the blocked transaction could not make, the first
        // transaction that wrote what it read.
        let wanted: Vec<(u32, u32)> = h.problem.ops[f.blocked]
            .op
            .iter()
            .filter(|m| !m.write && m.value != NIL && f.state.get(m.reg as usize) != Some(&m.value))
            .map(|m| (m.reg, m.value))
            .collect();
        wanted
            .iter()
            .filter_map(|&(reg, value)| {
                h.problem.ops.iter().position(|o| {
                    o.op.iter()
                        .any(|m| m.write && m.reg == reg && m.value == value)
                })
            })
            .take(2)
            .collect()
    }
}

impl Explain for Mutex {
    fn show_state(_: &KeyHistory<Self>, &locked: &bool) -> String {
        if locked {
            "the mutex was held"
        } else {
            "the mutex was free"
        }
        .into()
    }
}

fn check_model<M>(ctx: &Ctx, mut counts: HistoryCounts) -> Result<EdnReport, EdnError>
where
    M: Explain + Clone + Sync,
    M::Op: Sync,
    M::State: Send,
{
    let name = ctx.opts.model;
    let mut keys = prepare::key_histories::<M>(
        name,
        ctx.init,
        ctx.ops,
        ctx.pairs,
        ctx.independent,
        &mut counts,
    )
    .map_err(|message| {
        if message.starts_with("--init") {
            EdnError::Init {
                init: ctx.opts.init.clone().unwrap_or_default(),
                message,
            }
        } else {
            EdnError::Model {
                path: ctx.file.to_string(),
                model: name.as_str(),
                message,
            }
        }
    })?;
    // Biggest first, so the long pole starts early.
    keys.sort_by(|a, b| {
        b.problem
            .ops
            .len()
            .cmp(&a.problem.ops.len())
            .then_with(|| a.key.cmp(&b.key))
    });
    let problems: Vec<Problem<M>> = keys
        .iter_mut()
        .map(|h| Problem {
            model: h.problem.model.clone(),
            ops: std::mem::take(&mut h.problem.ops),
        })
        .collect();
    let budget = Budget::new(ctx.opts.timeout, ctx.opts.max_memo_bytes);
    let threads = thread_count(ctx.opts.threads, keys.len());
    let results = search_all(&problems, &budget, threads);
    for (h, p) in keys.iter_mut().zip(problems) {
        h.problem.ops = p.ops;
    }

    let key_name = |h: &KeyHistory<M>| h.key.as_ref().map(|k| k.to_string());
    let mut key_results = BTreeMap::new();
    let mut invalid = None;
    let mut gave_up = Vec::new();
    for (i, (h, r)) in keys.iter().zip(&results).enumerate() {
        let result = match &r.outcome {
            Outcome::Valid => continue,
            Outcome::Invalid(f) => {
                // The first invalid key in key order.
                if invalid
                    .as_ref()
                    .is_none_or(|&(j, _): &(usize, _)| h.key < keys[j].key)
                {
                    invalid = Some((i, f));
                }
                "invalid"
            }
            Outcome::GaveUp(l) => {
                gave_up.push((i, *l));
                "unknown"
            }
            Outcome::Cancelled => "cancelled",
        };
        key_results.insert(
            key_name(h).unwrap_or_else(|| "(history)".into()),
            KeyVerdict {
                result,
                ops: h.problem.ops.len(),
                memo_entries: r.memo_entries,
                ms: r.elapsed.as_millis(),
            },
        );
    }
    let init_shown = match (&ctx.opts.init, name) {
        (Some(s), _) => s.clone(),
        (None, ModelName::Mutex) => "false".into(),
        (None, _) => "nil".into(),
    };
    let mut report = EdnReport {
        version: EDN_REPORT_VERSION,
        file: ctx.file.to_string(),
        model: name.as_str(),
        init: init_shown,
        valid: Validity::Valid,
        summary: String::new(),
        history: counts,
        counterexample: Vec::new(),
        keys: key_results,
        time: Timing::default(),
        memory: Memory {
            peak_rss_bytes: None,
            memo_peak_bytes: budget.peak_bytes(),
            memo_budget_bytes: budget.max_bytes(),
        },
    };
    let searched: usize = keys.iter().map(|h| h.problem.ops.len()).sum();
    if let Some((i, f)) = invalid {
        let h = &keys[i];
        report.valid = Validity::Invalid;
        report.summary = describe(ctx, h, f);
        report.counterexample = counterexample(ctx, h, f);
    } else if let Some(&(i, limit)) = gave_up
        .iter()
        .min_by(|a, b| keys[a.0].key.cmp(&keys[b.0].key))
    {
        let h = &keys[i];
        report.valid = Validity::Unknown;
        report.summary = format!(
            "gave up on {} ({} ops){}: {}",
            key_name(h).map_or("the history".into(), |k| format!("key {k}")),
            h.problem.ops.len(),
            if gave_up.len() > 1 {
                format!(" and {} other key(s)", gave_up.len() - 1)
            } else {
                String::new()
            },
            limit_reason(limit, ctx.opts.timeout, ctx.opts.max_memo_bytes)
        );
    } else {
        report.summary = format!(
            "{searched} operations on {} key(s) are linearizable ({} model)",
            keys.len(),
            name.as_str()
        );
    }
    Ok(report)
}

fn describe<M: Explain>(ctx: &Ctx, h: &KeyHistory<M>, f: &Failure<M::State>) -> String {
    let pair = &h.source[f.blocked];
    let inv = &ctx.ops[pair.invoke];
    let key = h
        .key
        .as_ref()
        .map_or(String::new(), |k| format!("key {k}: "));
    format!(
        "{key}op {} (process {}, {} {}, {}) cannot be linearized: after the longest \
         linearizable prefix ({} ok ops) {}",
        inv.index.unwrap_or(pair.invoke as i64),
        process_of(inv),
        inv.f.as_ref().map_or("nil".into(), ToString::to_string),
        edn::short(&prepare::checked_value(ctx.ops, pair, ctx.independent)),
        outcome_word(pair),
        f.linearized,
        M::show_state(h, &f.state)
    )
}

fn process_of(op: &RawOp) -> i64 {
    match op.process {
        edn::Process::Client(p) => p,
        edn::Process::Other => -1,
    }
}

fn outcome_word(p: &prepare::Pair) -> &'static str {
    match p.outcome {
        OpType::Ok => "ok",
        OpType::Info => "info",
        OpType::Fail => "fail",
        OpType::Invoke => "pending",
    }
}

fn counterexample<M: Explain>(
    ctx: &Ctx,
    h: &KeyHistory<M>,
    f: &Failure<M::State>,
) -> Vec<CounterexampleOp> {
    let mut picked: Vec<(usize, &'static str)> = vec![(f.blocked, "cannot be linearized")];
    if let Some(w) = f.last_change {
        picked.push((w, "set the state of the longest linearizable prefix"));
    }
    for w in M::needed(h, f) {
        picked.push((w, "wrote the value the blocked op needed"));
    }
    for &c in &f.concurrent {
        picked.push((c, "concurrent, not linearized"));
    }
    let mut seen = HashSet::new();
    picked.retain(|(i, _)| seen.insert(*i));
    picked.sort_by_key(|&(i, _)| h.source[i].invoke);
    picked
        .into_iter()
        .map(|(i, why)| {
            let pair = &h.source[i];
            let inv = &ctx.ops[pair.invoke];
            let comp = pair.complete.map(|c| (c, &ctx.ops[c]));
            CounterexampleOp {
                key: h.key.as_ref().map(ToString::to_string),
                index: inv.index.unwrap_or(pair.invoke as i64),
                process: process_of(inv),
                f: inv.f.as_ref().map_or("nil".into(), ToString::to_string),
                value: prepare::checked_value(ctx.ops, pair, ctx.independent).to_string(),
                outcome: outcome_word(pair),
                completion_index: comp.map(|(c, op)| op.index.unwrap_or(c as i64)),
                invoke_time: inv.time,
                complete_time: comp.and_then(|(_, op)| op.time),
                line: inv.pos.line,
                why,
            }
        })
        .collect()
}

/// The report for people.
pub fn render_text(r: &EdnReport) -> String {
    let mut out = String::new();
    let h = &r.history;
    let _ = writeln!(
        out,
        "history  {}: {} ops, {} client operations ({} ok, {} fail, {} info/pending), {} processes, {} key(s){}; {} non-client ops ignored",
        r.file,
        h.ops,
        h.client_ops,
        h.ok,
        h.fail,
        h.info,
        h.processes,
        h.keys,
        if h.independent { " (independent)" } else { "" },
        h.ignored
    );
    let _ = writeln!(out, "model    {} (init {})", r.model, r.init);
    let _ = writeln!(
        out,
        "verdict  {}: {}",
        r.valid.as_str().to_uppercase(),
        r.summary
    );
    if !r.counterexample.is_empty() {
        let _ = writeln!(out, "counterexample: operations that cannot be ordered");
        let _ = writeln!(
            out,
            "  {:>8} {:>8} {:>6} {:>8} {:>9} {:>6}  {:<48}  op",
            "index", "process", "key", "outcome", "completed", "line", "why"
        );
        for op in &r.counterexample {
            let _ = writeln!(
                out,
                "  {:>8} {:>8} {:>6} {:>8} {:>9} {:>6}  {:<48}  {} {}",
                op.index,
                op.process,
                op.key.as_deref().unwrap_or("-"),
                op.outcome,
                op.completion_index.map_or("-".into(), |c| c.to_string()),
                op.line,
                op.why,
                op.f,
                op.value
            );
        }
    }
    let not_valid: Vec<String> = r
        .keys
        .iter()
        .filter(|(_, k)| k.result != "invalid")
        .take(10)
        .map(|(name, k)| format!("{name} {}", k.result))
        .collect();
    if !not_valid.is_empty() {
        let _ = writeln!(out, "keys     {}", not_valid.join(", "));
    }
    let _ = writeln!(
        out,
        "time     {:.2} s (read {:.2} s, check {:.2} s)",
        r.time.total_ms / 1000.0,
        r.time.read_ms / 1000.0,
        r.time.check_ms / 1000.0
    );
    let _ = writeln!(
        out,
        "memory   peak RSS {}; search memo peak {} of a {} budget",
        r.memory
            .peak_rss_bytes
            .map_or("unknown".into(), human_bytes),
        human_bytes(r.memory.memo_peak_bytes as u64),
        human_bytes(r.memory.memo_budget_bytes as u64)
    );
    out
}

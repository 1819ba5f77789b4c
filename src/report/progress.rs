//! What a run is doing, while it goes: phase (setup, running, healing,
//! final reads, checking, teardown), elapsed / time limit, operations ok /
//! fail / info, and the active fault(s).
//!
//! It follows `history.jsonl` as the run writes it (the history is the one
//! event stream every part of a run already feeds), so the run only says
//! when it starts, which phases happen outside the history (setup,
//! checking), and when it is done. On a terminal it is an indicatif bar; when
//! stderr is not a terminal (CI) it prints plain lines: on each phase or
//! fault change, and every [`PLAIN_EVERY`] while running.

use crate::history::{Event, Outcome};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the display follows the history.
const TICK: Duration = Duration::from_millis(250);
/// A plain status line at least this often while running.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Counts and state read from the history so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub phase: String,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Active faults: label (`partition n3`) by (fault, targets).
    pub faults: BTreeMap<(String, Vec<String>), String>,
    /// Harness time of the latest event.
    pub last_ms: f64,
}

impl Snapshot {
    /// Take one history event into account.
    pub fn observe(&mut self, e: &Event) {
        if let Some(t) = e.time_ms() {
            self.last_ms = self.last_ms.max(t);
        }
        match e {
            Event::Phase { phase, .. } => self.phase = phase.clone(),
            Event::Complete(c) => match c.outcome {
                Outcome::Ok => self.ok += 1,
                Outcome::Fail => self.fail += 1,
                Outcome::Info => self.info += 1,
            },
            Event::Nemesis {
                fault,
                action,
                targets,
                ..
            } => match action.as_str() {
                "heal-all" => self.faults.clear(),
                "heal" | "start" | "resume" | "reset_clock" => {
                    let key = (fault.clone(), targets.clone());
                    if self.faults.remove(&key).is_none() {
                        // A heal naming other targets ends that fault's windows.
                        self.faults.retain(|(f, _), _| f != fault);
                    }
                }
                _ => {
                    let label = format!("{action} {}", targets.join(" "));
                    self.faults
                        .insert((fault.clone(), targets.clone()), label.trim().to_string());
                }
            },
            _ => {}
        }
    }

    /// `partition n3` or `none`.
    pub fn fault_text(&self) -> String {
        if self.faults.is_empty() {
            "none".into()
        } else {
            self.faults.values().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// The status line (without the phase's elapsed/limit part).
    pub fn ops_text(&self) -> String {
        format!("ops ok {} fail {} info {}", self.ok, self.fail, self.info)
    }
}

/// Follows a file that another part of the process appends JSON lines to.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Tail {
    fn read_new(&mut self, snap: &mut Snapshot) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated (recreated): start over.
            self.offset = 0;
            self.partial.clear();
            *snap = Snapshot {
                phase: snap.phase.clone(),
                ..Snapshot::default()
            };
        }
        if len == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.take(len - self.offset).read_to_end(&mut buf).is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            if let Ok(e) = serde_json::from_str::<Event>(line.trim()) {
                snap.observe(&e);
            }
        }
    }
}

struct Shared {
    snap: Mutex<Snapshot>,
    /// A phase set by the run (setup, checking, ...) overrides the history's
    /// until the history names a later one.
    stop: AtomicBool,
}

/// The live display of one run. Stops (and clears the bar) on
/// [`Progress::finish`] or when dropped.
pub struct Progress {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
    started: Instant,
}

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// Plain lines on stderr.
    Plain,
    /// Nothing.
    Off,
}

impl Mode {
    /// `HARNESS_PROGRESS=bar|plain|off`, else a bar on a terminal and plain
    /// lines otherwise.
    pub fn detect() -> Mode {
        match std::env::var("HARNESS_PROGRESS").as_deref() {
            Ok("bar") => Mode::Bar,
            Ok("plain") => Mode::Plain,
            Ok("off") => Mode::Off,
            _ if std::io::stderr().is_terminal() => Mode::Bar,
            _ => Mode::Plain,
        }
    }
}

fn status(snap: &Snapshot, running_for: Option<Duration>, limit: Duration) -> String {
    let time = match (snap.phase.as_str(), running_for) {
        ("running", Some(d)) => format!(
            " {:.1}/{:.0} s",
            d.as_secs_f64().min(limit.as_secs_f64()),
            limit.as_secs_f64()
        ),
        _ => String::new(),
    };
    format!(
        "{}{time} · {} · fault: {}",
        if snap.phase.is_empty() {
            "setup"
        } else {
            &snap.phase
        },
        snap.ops_text(),
        snap.fault_text()
    )
}

impl Progress {
    /// Start following `run_dir/history.jsonl`, in the setup phase.
    pub fn start(run_dir: &Path, time_limit: Duration) -> Progress {
        Self::with_mode(run_dir, time_limit, Mode::detect())
    }

    /// Like [`Progress::start`] with an explicit mode (tests).
    pub fn with_mode(run_dir: &Path, time_limit: Duration, mode: Mode) -> Progress {
        let shared = Arc::new(Shared {
            snap: Mutex::new(Snapshot {
                phase: "setup".into(),
                ..Snapshot::default()
            }),
            stop: AtomicBool::new(false),
        });
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::with_draw_target(
                Some(time_limit.as_millis() as u64),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template("{spinner:.green} [{bar:28.cyan/blue}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b.set_message("setup");
            b
        });
        let thread = (mode != Mode::Off).then(|| {
            let shared = shared.clone();
            let bar = bar.clone();
            let mut tail = Tail {
                path: run_dir.join("history.jsonl"),
                offset: 0,
                partial: String::new(),
            };
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || {
                    let mut running_since: Option<Instant> = None;
                    let mut last_line = String::new();
                    let mut last_print = Instant::now();
                    let mut last_key = (String::new(), String::new());
                    while !shared.stop.load(Ordering::Relaxed) {
                        let snap = {
                            let mut s = shared.snap.lock().unwrap_or_else(|e| e.into_inner());
                            tail.read_new(&mut s);
                            s.clone()
                        };
                        if snap.phase == "running" && running_since.is_none() {
                            running_since = Some(Instant::now());
                        }
                        let running_for = running_since.map(|s| s.elapsed());
                        let line = status(&snap, running_for, time_limit);
                        match &bar {
                            Some(b) => {
                                if let Some(d) = running_for {
                                    b.set_position(
                                        (d.as_millis() as u64).min(time_limit.as_millis() as u64),
                                    );
                                }
                                b.set_message(line);
                            }
                            None => {
                                let key = (snap.phase.clone(), snap.fault_text());
                                let periodic =
                                    snap.phase == "running" && last_print.elapsed() >= PLAIN_EVERY;
                                if (key != last_key || periodic) && line != last_line {
                                    eprintln!("harness: {line}");
                                    last_print = Instant::now();
                                    last_line = line;
                                    last_key = key;
                                }
                            }
                        }
                        std::thread::sleep(TICK);
                    }
                })
                .ok()
        });
        Progress {
            shared,
            thread: thread.flatten(),
            bar,
            started: Instant::now(),
        }
    }

    /// The run entered a phase the history does not record (setup, checking),
    /// or one it records, a little earlier than the history says so.
    pub fn phase(&self, phase: &str) {
        let mut s = self.shared.snap.lock().unwrap_or_else(|e| e.into_inner());
        s.phase = phase.to_string();
    }

    /// What the display shows now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared
            .snap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// Stop the display and print one closing line.
    pub fn finish(mut self) {
        self.stop();
        let s = self.snapshot();
        if Mode::detect() != Mode::Off {
            eprintln!(
                "harness: done in {:.1} s · {}",
                self.started.elapsed().as_secs_f64(),
                s.ops_text()
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HistoryWriter, Invocation, OpKind};

    fn inv(id: u64) -> Invocation {
        Invocation {
            op_id: id,
            process: 0,
            time_ms: id as f64,
            f: OpKind::Write,
            key: "k".into(),
            value: Some(format!("v{id}")),
            expected: None,
            node: "n1".into(),
        }
    }

    #[test]
    fn follows_the_history_as_it_is_written() {
        let d = tempfile::tempdir().unwrap();
        let p = Progress::with_mode(d.path(), Duration::from_secs(10), Mode::Off);
        assert_eq!(p.snapshot().phase, "setup");
        drop(p);

        let mut snap = Snapshot::default();
        let mut tail = Tail {
            path: d.path().join("history.jsonl"),
            offset: 0,
            partial: String::new(),
        };
        tail.read_new(&mut snap); // no file yet: nothing
        let w = HistoryWriter::create(&tail.path).unwrap();
        w.record(&Event::Phase {
            time_ms: 0.0,
            phase: "running".into(),
        });
        w.record(&Event::Complete(inv(1).ok(2.0, None)));
        w.record(&Event::Complete(inv(2).info(3.0, "timeout")));
        w.record(&Event::Nemesis {
            time_ms: 4.0,
            fault: "partition-leader".into(),
            action: "partition".into(),
            targets: vec!["n3".into()],
            detail: serde_json::Value::Null,
        });
        tail.read_new(&mut snap);
        assert_eq!(snap.phase, "running");
        assert_eq!((snap.ok, snap.fail, snap.info), (1, 0, 1));
        assert_eq!(snap.fault_text(), "partition n3");
        w.record(&Event::Nemesis {
            time_ms: 5.0,
            fault: "partition-leader".into(),
            action: "heal".into(),
            targets: vec!["n3".into()],
            detail: serde_json::Value::Null,
        });
        tail.read_new(&mut snap);
        assert_eq!(snap.fault_text(), "none");
        let line = status(&snap, Some(Duration::from_secs(3)), Duration::from_secs(10));
        assert_eq!(
            line,
            "running 3.0/10 s · ops ok 1 fail 0 info 1 · fault: none"
        );
    }
}

//! The replicated log and the fencing state, persisted in the data directory.
//!
//! `log.jsonl` holds one [`Entry`] per line and is fsynced on every append, so
//! an entry a node acknowledged survives `kill -9`. `meta.json` holds the
//! highest fencing token the node has seen, written atomically (tmp + rename +
//! fsync). A torn last line (a crash mid-append) is cut off on load.

use crate::api::Entry;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Outcome of matching a leader's append against the local log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The log holds the leader's previous entry: append from there.
    Ok,
    /// The log does not match at `prev_index`; the leader should retry from
    /// `hint + 1` (the index up to which this log may still agree).
    Mismatch { hint: u64 },
}

/// The on-disk log with its in-memory copy.
pub struct Log {
    dir: PathBuf,
    entries: Vec<Entry>,
    file: File,
    highest_token: u64,
}

/// Persisted fencing state.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Meta {
    highest_token: u64,
}

impl Log {
    /// Open (or create) the log in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Log> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log.jsonl");
        let mut entries = Vec::new();
        let mut good_len = 0u64;
        if path.exists() {
            let reader = BufReader::new(File::open(&path)?);
            for line in reader.split(b'\n') {
                let line = line?;
                match serde_json::from_slice::<Entry>(&line) {
                    Ok(e) if e.index == entries.len() as u64 + 1 => {
                        entries.push(e);
                        good_len += line.len() as u64 + 1;
                    }
                    // A torn or out-of-place line: everything from here on is
                    // unacknowledged garbage from a crash mid-write.
                    _ => break,
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .append(true)
            .open(&path)?;
        if file.metadata()?.len() != good_len {
            tracing::warn!(path = %path.display(), "cutting torn tail off the log");
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        let meta: Meta = match std::fs::read(dir.join("meta.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("corrupt {}: {e}", dir.join("meta.json").display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(e),
        };
        Ok(Log {
            dir: dir.to_path_buf(),
            entries,
            file,
            highest_token: meta.highest_token,
        })
    }

    /// Index of the last entry (0 when empty).
    pub fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Token of the last entry (0 when empty).
    pub fn last_token(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.token)
    }

    /// Token of the entry at `index` (0 for index 0); `None` past the end.
    pub fn token_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get(index as usize - 1).map(|e| e.token)
    }

    /// The entry at `index`, if present.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(1)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Entries from `from` (inclusive) to the end, at most `max` of them.
    pub fn entries_from(&self, from: u64, max: usize) -> Vec<Entry> {
        let start = from.max(1) as usize - 1;
        self.entries.iter().skip(start).take(max).cloned().collect()
    }

    /// Highest fencing token this node has seen (persisted).
    pub fn highest_token(&self) -> u64 {
        self.highest_token
    }

    /// Raise the highest seen token and persist it before returning.
    pub fn observe_token(&mut self, token: u64) -> std::io::Result<()> {
        if token <= self.highest_token {
            return Ok(());
        }
        let tmp = self.dir.join("meta.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&Meta {
            highest_token: token,
        })?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("meta.json"))?;
        File::open(&self.dir)?.sync_all()?;
        self.highest_token = token;
        Ok(())
    }

    /// Does this log agree with a leader whose entry at `prev_index` has
    /// `prev_token`? On a conflict the hint skips the whole run of the
    /// conflicting token, so a divergent follower is repaired in few rounds.
    pub fn matches(&self, prev_index: u64, prev_token: u64) -> Match {
        match self.token_at(prev_index) {
            None => Match::Mismatch {
                hint: self.last_index(),
            },
            Some(t) if t == prev_token => Match::Ok,
            Some(t) => {
                let mut i = prev_index;
                while i > 1 && self.token_at(i - 1) == Some(t) {
                    i -= 1;
                }
                Match::Mismatch { hint: i - 1 }
            }
        }
    }

    /// Append `entries` after a successful [`Log::matches`]: entries already
    /// present with the same token are kept, a conflicting suffix is cut off.
    /// Returns the entries newly written. One fsync for the batch.
    pub fn merge(&mut self, entries: &[Entry]) -> std::io::Result<Vec<Entry>> {
        let mut fresh = Vec::new();
        for e in entries {
            match self.token_at(e.index) {
                Some(t) if t == e.token => continue,
                Some(_) => self.truncate_from(e.index)?,
                None => {}
            }
            if e.index != self.last_index() + 1 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "entry {} does not follow last index {}",
                        e.index,
                        self.last_index()
                    ),
                ));
            }
            fresh.push(e.clone());
            self.entries.push(e.clone());
        }
        self.write_out(&fresh)?;
        Ok(fresh)
    }

    /// Append one new entry at the end (leader path), fsynced.
    pub fn append(&mut self, token: u64, key: String, value: String) -> std::io::Result<Entry> {
        let e = Entry {
            index: self.last_index() + 1,
            token,
            key,
            value,
        };
        self.entries.push(e.clone());
        self.write_out(std::slice::from_ref(&e))?;
        Ok(e)
    }

    fn write_out(&mut self, fresh: &[Entry]) -> std::io::Result<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in fresh {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Drop every entry from `index` on, rewriting the file atomically.
    pub fn truncate_from(&mut self, index: u64) -> std::io::Result<()> {
        let keep = index.saturating_sub(1) as usize;
        if keep >= self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        let tmp = self.dir.join("log.jsonl.tmp");
        let mut f = File::create(&tmp)?;
        let mut buf = Vec::new();
        for e in &self.entries {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("log.jsonl"))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join("log.jsonl"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, token: u64, v: &str) -> Entry {
        Entry {
            index,
            token,
            key: "k".into(),
            value: v.into(),
        }
    }

    #[test]
    fn appends_survive_reopen_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = Log::open(dir.path()).unwrap();
            log.append(3, "k".into(), "a".into()).unwrap();
            log.append(3, "k".into(), "b".into()).unwrap();
            log.observe_token(5).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log.jsonl"))
            .unwrap();
        f.write_all(b"{\"index\":3,\"tok").unwrap();
        let log = Log::open(dir.path()).unwrap();
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.get(2).unwrap().value, "b");
        assert_eq!(log.highest_token(), 5);
        let len = std::fs::metadata(dir.path().join("log.jsonl"))
            .unwrap()
            .len();
        let again = Log::open(dir.path()).unwrap();
        assert_eq!(again.last_index(), 2);
        assert_eq!(
            std::fs::metadata(dir.path().join("log.jsonl"))
                .unwrap()
                .len(),
            len
        );
    }

    #[test]
    fn highest_token_never_goes_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        log.observe_token(9).unwrap();
        log.observe_token(4).unwrap();
        assert_eq!(Log::open(dir.path()).unwrap().highest_token(), 9);
    }

    #[test]
    fn matching_and_conflict_hints() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        log.merge(&[e(1, 1, "a"), e(2, 1, "b"), e(3, 2, "c"), e(4, 2, "d")])
            .unwrap();
        assert_eq!(log.matches(0, 0), Match::Ok);
        assert_eq!(log.matches(4, 2), Match::Ok);
        assert_eq!(log.matches(9, 2), Match::Mismatch { hint: 4 });
        // Leader has token 5 at index 4: skip back over our whole token-2 run.
        assert_eq!(log.matches(4, 5), Match::Mismatch { hint: 2 });
    }

    #[test]
    fn merge_cuts_conflicting_suffix_and_keeps_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        log.merge(&[e(1, 1, "a"), e(2, 1, "b"), e(3, 1, "stale")])
            .unwrap();
        let fresh = log.merge(&[e(2, 1, "b"), e(3, 4, "new")]).unwrap();
        assert_eq!(fresh, vec![e(3, 4, "new")]);
        let reopened = Log::open(dir.path()).unwrap();
        assert_eq!(
            reopened.entries_from(1, 10),
            vec![e(1, 1, "a"), e(2, 1, "b"), e(3, 4, "new")]
        );
    }

    #[test]
    fn merge_refuses_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        assert!(log.merge(&[e(2, 1, "x")]).is_err());
    }
}

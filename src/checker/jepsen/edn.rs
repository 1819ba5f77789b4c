//! Reading a Jepsen history from EDN text: either one vector or list of op
//! maps (Knossos style) or one op map after another (Jepsen's
//! `history.edn`, one per line), comments and multi-line maps allowed.
//!
//! Values are parsed by the `edn-format` crate. Before that, a small scanner
//! finds where each op's form starts and ends (it tracks only brackets,
//! strings, character literals, comments, tags and discards, never values).
//! That is what lets a 100 MB history be read op by op (the whole file as one
//! parsed EDN value would take gigabytes), in parallel, and lets every error
//! name its line and column in the file.

use edn_format::{ParserOptions, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A position in the file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// What went wrong at a position of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// `:type` of an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// `:process` of an op: a client (an integer) or something else (`:nemesis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Client(i64),
    Other,
}

/// `:f` of an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum F {
    Read,
    Write,
    Cas,
    Txn,
    Acquire,
    Release,
    /// Anything else, as written.
    Other(Box<str>),
}

impl F {
    fn from_value(v: &Value) -> F {
        match v {
            Value::Keyword(k) if k.namespace().is_none() => match k.name() {
                "read" => F::Read,
                "write" => F::Write,
                "cas" => F::Cas,
                "txn" => F::Txn,
                "acquire" => F::Acquire,
                "release" => F::Release,
                _ => F::Other(v.to_string().into()),
            },
            _ => F::Other(v.to_string().into()),
        }
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            F::Read => f.write_str(":read"),
            F::Write => f.write_str(":write"),
            F::Cas => f.write_str(":cas"),
            F::Txn => f.write_str(":txn"),
            F::Acquire => f.write_str(":acquire"),
            F::Release => f.write_str(":release"),
            F::Other(s) => f.write_str(s),
        }
    }
}

/// One op map of the history, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOp {
    /// Where its map starts.
    pub pos: Pos,
    /// `:index`, if given.
    pub index: Option<i64>,
    pub process: Process,
    pub kind: OpType,
    /// `:f` (`None` if absent: allowed only for non-client ops).
    pub f: Option<F>,
    /// `:value` (`nil` if absent), shared between equal values: a long
    /// history holds each distinct value a few times, not once per op.
    pub value: Arc<Value>,
    /// `:time`, if given (Jepsen: nanoseconds since the test began).
    pub time: Option<i64>,
}

/// Parse a whole history text into ops, on up to `threads` threads.
pub fn read_ops(text: &str, threads: usize) -> Result<Vec<RawOp>, SyntaxError> {
    let forms = split_forms(text)?;
    let threads = threads.clamp(1, forms.len().div_ceil(1000).max(1));
    if threads == 1 {
        return parse_forms(text, &forms);
    }
    // Many small chunks pulled by the workers, then moved into one vector
    // chunk by chunk: at the peak the ops exist once, plus one chunk.
    let chunks: Vec<&[Form]> = forms.chunks(forms.len().div_ceil(threads * 16)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Parsed = Option<Result<Vec<RawOp>, SyntaxError>>;
    let done: Vec<std::sync::Mutex<Parsed>> =
        chunks.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else { return };
                let r = parse_forms(text, chunk);
                *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    let mut ops = Vec::with_capacity(forms.len());
    drop(forms);
    for slot in done {
        let part = slot
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every chunk is parsed");
        ops.extend(part?);
    }
    Ok(ops)
}

fn parse_forms(text: &str, forms: &[Form]) -> Result<Vec<RawOp>, SyntaxError> {
    // `#jepsen.history.Op{...}` is a tagged record, not a namespaced map.
    let opts = ParserOptions {
        allow_namespaced_map_syntax: false,
    };
    let mut ops = Vec::with_capacity(forms.len());
    let mut shared: BTreeMap<Value, Arc<Value>> = BTreeMap::new();
    for form in forms {
        let src = &text[form.start..form.end];
        let value = match edn_format::parse_str_with_options(src, opts) {
            Ok(v) => v,
            Err(e) if e.error == edn_format::ParserError::EmptyInput && form.discard => continue,
            Err(e) => {
                // edn-format counts lines in `col` and columns in `row`.
                let line = form.pos.line + e.col.saturating_sub(1) as u32;
                let col = if e.col <= 1 {
                    form.pos.col + e.row.saturating_sub(1) as u32
                } else {
                    e.row.max(1) as u32
                };
                return Err(SyntaxError {
                    pos: Pos { line, col },
                    message: format!("malformed EDN: {}", edn_message(&e.error)),
                });
            }
        };
        ops.push(op_from_value(value, form.pos, &mut shared)?);
    }
    Ok(ops)
}

fn edn_message(e: &edn_format::ParserError) -> String {
    use edn_format::ParserError as P;
    match e {
        P::UnexpectedCharacter(c) => format!("unexpected character `{c}`"),
        P::EmptyInput => "unsupported form (e.g. `##Inf`), expected an op map".into(),
        other => other.to_string().to_lowercase(),
    }
}

const OP_SHAPE: &str = "{:process 0, :type :invoke, :f :read, :value nil}";

/// An op map (or a tagged record holding one, as Jepsen writes them) to a [`RawOp`].
fn op_from_value(
    value: Value,
    pos: Pos,
    shared: &mut BTreeMap<Value, Arc<Value>>,
) -> Result<RawOp, SyntaxError> {
    let err = |message: String| SyntaxError { pos, message };
    let map = match value {
        Value::Map(m) => m,
        Value::TaggedElement(_, inner) if matches!(*inner, Value::Map(_)) => match *inner {
            Value::Map(m) => m,
            _ => unreachable!("matched a map"),
        },
        other => {
            return Err(err(format!(
                "expected an op map like {OP_SHAPE}, got `{}`",
                short(&other)
            )))
        }
    };
    let mut process = None;
    let mut kind = None;
    let mut f = None;
    let mut op_value = Value::Nil;
    let mut time = None;
    let mut index = None;
    for (k, v) in map {
        let Value::Keyword(k) = &k else { continue };
        match k.name() {
            "process" => {
                process = Some(match v {
                    Value::Integer(p) => Process::Client(p),
                    _ => Process::Other,
                })
            }
            "type" => {
                kind = Some(match &v {
                    Value::Keyword(t) if t.namespace().is_none() => match t.name() {
                        "invoke" => OpType::Invoke,
                        "ok" => OpType::Ok,
                        "fail" => OpType::Fail,
                        "info" => OpType::Info,
                        _ => None.ok_or_else(|| bad_type(&v, pos))?,
                    },
                    _ => None.ok_or_else(|| bad_type(&v, pos))?,
                })
            }
            "f" => f = Some(F::from_value(&v)),
            "value" => op_value = v,
            "time" => time = integer(&v),
            "index" => {
                index = Some(integer(&v).ok_or_else(|| {
                    err(format!(
                        "expected :index to be an integer, got `{}`",
                        short(&v)
                    ))
                })?)
            }
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| {
        err(format!(
            "op map has no :type (expected :invoke, :ok, :fail or :info), like {OP_SHAPE}"
        ))
    })?;
    let process = process.ok_or_else(|| err(format!("op map has no :process, like {OP_SHAPE}")))?;
    if f.is_none() && matches!(process, Process::Client(_)) {
        return Err(err(format!("client op map has no :f, like {OP_SHAPE}")));
    }
    Ok(RawOp {
        pos,
        index,
        process,
        kind,
        f,
        value: match shared.get(&op_value) {
            Some(v) => Arc::clone(v),
            None => {
                let v = Arc::new(op_value.clone());
                shared.insert(op_value, Arc::clone(&v));
                v
            }
        },
        time,
    })
}

fn bad_type(v: &Value, pos: Pos) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!(
            "expected :type to be :invoke, :ok, :fail or :info, got `{}`",
            short(v)
        ),
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        _ => None,
    }
}

/// A value for an error message, cut to a readable length.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 60 {
        s
    } else {
        format!("{}…", s.chars().take(60).collect::<String>())
    }
}

/// One top-level op form in the text.
#[derive(Debug, Clone, Copy)]
struct Form {
    start: usize,
    end: usize,
    pos: Pos,
    /// Starts with `#_`: may parse to nothing.
    discard: bool,
}

/// Finds the op forms of the text (see the module docs).
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
}

impl Scanner<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if c & 0xC0 != 0x80 {
            // Count characters, not UTF-8 continuation bytes.
            self.col += 1;
        }
        Some(c)
    }
    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                    self.bump();
                }
                b';' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }
    fn is_delim(c: u8) -> bool {
        matches!(
            c,
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b','
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'"'
                | b';'
        )
    }
    fn skip_atom(&mut self) {
        while self.peek().is_some_and(|c| !Self::is_delim(c)) {
            self.bump();
        }
    }
    fn skip_string(&mut self, start: Pos) -> Result<(), SyntaxError> {
        self.bump(); // the opening quote
        loop {
            match self.bump() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => {
                    self.bump();
                }
                Some(_) => {}
                None => {
                    return Err(SyntaxError {
                        pos: start,
                        message: "string is never closed: expected `\"`".into(),
                    })
                }
            }
        }
    }
    /// Skip one form (the scanner is at its first character).
    fn skip_form(&mut self) -> Result<(), SyntaxError> {
        let start = self.pos();
        match self.peek() {
            None => Err(SyntaxError {
                pos: start,
                message: "unexpected end of file: expected a form".into(),
            }),
            Some(b'"') => self.skip_string(start),
            Some(b'(' | b'[' | b'{') => self.skip_coll(),
            Some(b')' | b']' | b'}') => Err(SyntaxError {
                pos: start,
                message: format!("unexpected `{}`", char::from(self.b[self.i])),
            }),
            Some(b'\\') => {
                self.bump();
                self.bump();
                self.skip_atom();
                Ok(())
            }
            Some(b'#') => match self.b.get(self.i + 1) {
                Some(b'{') => {
                    self.bump();
                    self.skip_coll()
                }
                Some(b'#') => {
                    self.skip_atom();
                    Ok(())
                }
                _ => {
                    // A tag (`#inst`, `#jepsen.history.Op`) or a discard
                    // (`#_`): the prefix, then the form it applies to.
                    self.bump();
                    self.skip_atom();
                    self.skip_space();
                    self.skip_form()
                }
            },
            Some(_) => {
                self.skip_atom();
                Ok(())
            }
        }
    }
    /// Skip a collection (the scanner is at its opening bracket).
    fn skip_coll(&mut self) -> Result<(), SyntaxError> {
        let mut open: Vec<(u8, Pos)> = Vec::new();
        loop {
            self.skip_space();
            let pos = self.pos();
            let Some(c) = self.peek() else {
                let (b, at) = open.last().copied().unwrap_or((b'(', pos));
                return Err(SyntaxError {
                    pos: at,
                    message: format!(
                        "`{}` is never closed: expected `{}` before the end of the file",
                        char::from(b),
                        char::from(closer(b))
                    ),
                });
            };
            match c {
                b'(' | b'[' | b'{' => {
                    open.push((c, pos));
                    self.bump();
                }
                b')' | b']' | b'}' => {
                    let (b, _) = open.pop().expect("inside a collection");
                    if closer(b) != c {
                        return Err(SyntaxError {
                            pos,
                            message: format!(
                                "unexpected `{}`: expected `{}`",
                                char::from(c),
                                char::from(closer(b))
                            ),
                        });
                    }
                    self.bump();
                    if open.is_empty() {
                        return Ok(());
                    }
                }
                b'#' if self.b.get(self.i + 1) == Some(&b'{') => {
                    self.bump();
                    open.push((b'{', pos));
                    self.bump();
                }
                b'"' => self.skip_string(pos)?,
                b'\\' => {
                    self.bump();
                    self.bump();
                    self.skip_atom();
                }
                _ => {
                    self.bump();
                    self.skip_atom();
                }
            }
        }
    }
}

fn closer(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'[' => b']',
        _ => b'}',
    }
}

/// The op forms of a history: the elements of its one top-level vector or
/// list, or else every top-level form.
fn split_forms(text: &str) -> Result<Vec<Form>, SyntaxError> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut forms = Vec::new();
    s.skip_space();
    let wrapped = match s.peek() {
        Some(c @ (b'[' | b'(')) => {
            let at = s.pos();
            s.bump();
            Some((c, at))
        }
        _ => None,
    };
    loop {
        s.skip_space();
        let pos = s.pos();
        match (s.peek(), wrapped) {
            (None, None) => break,
            (None, Some((c, at))) => {
                return Err(SyntaxError {
                    pos: at,
                    message: format!(
                    "the history's `{}` is never closed: expected `{}` before the end of the file",
                    char::from(c),
                    char::from(closer(c))
                ),
                })
            }
            (Some(c), Some((open, _))) if c == closer(open) => {
                s.bump();
                s.skip_space();
                if s.peek().is_some() {
                    return Err(SyntaxError {
                        pos: s.pos(),
                        message: format!(
                            "expected the end of the file after the history's closing `{}`",
                            char::from(c)
                        ),
                    });
                }
                break;
            }
            _ => {}
        }
        let start = s.i;
        let discard = text[start..].starts_with("#_");
        s.skip_form()?;
        forms.push(Form {
            start,
            end: s.i,
            pos,
            discard,
        });
    }
    Ok(forms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<RawOp>, SyntaxError> {
        read_ops(text, 1)
    }

    #[test]
    fn reads_a_vector_with_comments_and_multi_line_maps() {
        let text = r#"; a comment
[{:process 0, :type :invoke, :f :write, :value 3, :time 10}
 ; between ops
 {:process 0
  :type :ok   ; trailing comment
  :f :write
  :value 3}
 #_ {:process 9 :type :bogus}
 {:process :nemesis, :type :info, :f :start, :value "a ] in a string"}]
"#;
        let ops = read(text).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].pos, Pos { line: 2, col: 2 });
        assert_eq!(ops[0].time, Some(10));
        assert_eq!(ops[1].pos, Pos { line: 4, col: 2 });
        assert_eq!(ops[1].kind, OpType::Ok);
        assert_eq!(ops[2].process, Process::Other);
    }

    #[test]
    fn reads_one_map_per_line_and_jepsen_records() {
        let text = "{:type :invoke, :f :read, :value nil, :process 1, :index 0}\n\
                    #jepsen.history.Op{:index 1, :type :ok, :f :read, :value 2, :process 1}\n";
        let ops = read(text).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[1].index, Some(1));
        assert_eq!(*ops[1].value, Value::Integer(2));
        assert_eq!(ops[1].pos.line, 2);
        assert_eq!(read_ops(&text.repeat(2000), 2).unwrap().len(), 4000);
    }

    #[test]
    fn errors_name_line_column_and_what_was_expected() {
        let e =
            read("{:process 0 :type :invoke :f :read}\n{:process 0 :type :ok :f}\n").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e:?}");
        assert!(e.message.contains("even number"), "{e:?}");
        let e = read("[{:process 0 :type :invoke :f :read}\n {:process 0 :type :okay :f :read}]")
            .unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 2 });
        assert!(e.message.contains(":type to be :invoke"), "{e:?}");
        let e = read("[{:process 0 :type :invoke :f :read}\n").unwrap_err();
        assert!(e.message.contains("never closed"), "{e:?}");
        assert_eq!(e.pos, Pos { line: 1, col: 1 });
        let e = read("{:process 0 :type :invoke :f :read :value [1 2}").unwrap_err();
        assert!(e.message.contains("expected `]`"), "{e:?}");
        let e = read("[{:process 0 :type :invoke :f :read}] extra").unwrap_err();
        assert!(e.message.contains("end of the file"), "{e:?}");
        let e = read("{:process 0 :f :read}").unwrap_err();
        assert!(e.message.contains("no :type"), "{e:?}");
        let e = read("  :oops").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 3 });
        assert!(e.message.contains("expected an op map"), "{e:?}");
        let e = read("{:process 0 :type :invoke :f :read :value \"open}").unwrap_err();
        assert!(e.message.contains("string is never closed"), "{e:?}");
    }

    #[test]
    fn tricky_characters_do_not_confuse_the_scanner() {
        let text = r#"{:process 0 :type :invoke :f :write :value [\] \" "x\"]" #{1 2}]}
{:process 0 :type :ok :f :write :value ["é" \a]}"#;
        let ops = read(text).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[1].pos, Pos { line: 2, col: 1 });
        // edn-format rejects `\;`, but the scanner must not read it as a comment.
        let forms = split_forms(r"{:a [\; \(]} {:b 1}").unwrap();
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[1].pos, Pos { line: 1, col: 14 });
    }
}

//! The second line of defence against SQL assembled at run time. The first is the workspace's
//! `clippy.toml`: sqlx's entry points that take SQL text (`sqlx::query`, `query_as`,
//! `query_scalar`, the `*_with` variants, `raw_sql`, the `Executor` methods, `begin_with`,
//! `copy_in_raw`, `QueryBuilder`, ...) are `disallowed-methods`, and code reaches them only
//! through wrappers that take `&'static str` (each backend's `sql` module, re-exported by its
//! `queries`, and `drydock_state_testsupport::sql` for tests and benches), so a statement built
//! at run time does not compile under `cargo clippy ... -D warnings`.
//!
//! This test scans every `.rs` file of the workspace, token by token (comments skipped, string
//! literals whole, across lines), and fails on:
//!
//! * SQL-looking text (any case, across lines) or a SQL constant (a `const`/`static` whose
//!   value is SQL, a `macro_rules!` that expands to SQL, or a local bound to one) that is
//!   assembled: inside `format!`, `write!`, `writeln!` or `format_args!` (as the format string,
//!   an argument, or an inline `{capture}`), next to `+` or `+=`, pushed with `push_str`,
//!   `push`, `insert_str`, `extend` or `write_str`, in an array that is `.concat()`ed or
//!   `.join()`ed, or turned into an owned or edited string (`String::from`, `.to_string()`,
//!   `.to_owned()`, `.into()`, `.replace(..)`, `.concat()`, `.join(..)`, `.repeat(..)`);
//! * a SQL entry point (`query`, `query_as`, `query_scalar`, `raw_sql`, the `Executor` methods
//!   called as methods or as `Executor::method(..)`, `copy_in_raw`, `begin_with`, `pragma`)
//!   whose text is not constant: `.as_str()`, `.as_ref()`, `&*`, `format!`, `Box::leak`, or a
//!   local built at run time;
//! * any `query_with`, `query_as_with`, `query_scalar_with`, `QueryBuilder`, `Separated` or
//!   `RawSql`.
//!
//! A line may be allowed with a `sql-hygiene: allow (<reason>)` comment on it or on one of the
//! three lines above. The single documented exception (also in `clippy.toml`) is test-harness
//! DDL, which takes no bind parameters: `drydock_state_testsupport::sql::database_ddl` writes a
//! checked, generated database name into `CREATE DATABASE` / `DROP DATABASE`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

// ---- tokens -----------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Ident,
    /// A string literal (plain, raw, byte); `text` is its content.
    Str,
    Punct,
    Other,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    text: String,
    /// Byte offset in the source.
    at: usize,
}

/// The tokens of `src`, comments dropped.
fn lex(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_';
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if src[i..].starts_with("//") {
            i = src[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if src[i..].starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if src[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((content, end)) = string_at(src, i) {
            out.push(Token {
                kind: Kind::Str,
                text: content,
                at: i,
            });
            i = end;
        } else if c == b'\'' {
            // A char literal or a lifetime.
            let rest = &src[i + 1..];
            let mut chars = rest.char_indices();
            match chars.next() {
                Some((_, '\\')) => {
                    let end = rest[1..].find('\'').map_or(b.len(), |n| i + 1 + 1 + n + 1);
                    out.push(Token {
                        kind: Kind::Other,
                        text: src[i..end.min(b.len())].to_string(),
                        at: i,
                    });
                    i = end;
                }
                Some((_, ch)) if rest[ch.len_utf8()..].starts_with('\'') => {
                    out.push(Token {
                        kind: Kind::Other,
                        text: format!("'{ch}'"),
                        at: i,
                    });
                    i += 1 + ch.len_utf8() + 1;
                }
                _ => {
                    let mut j = i + 1;
                    while j < b.len() && ident_char(b[j]) {
                        j += 1;
                    }
                    out.push(Token {
                        kind: Kind::Other,
                        text: src[i..j].to_string(),
                        at: i,
                    });
                    i = j.max(i + 1);
                }
            }
        } else if ident_start(c) {
            let mut j = i;
            while j < b.len() && ident_char(b[j]) {
                j += 1;
            }
            let mut text = &src[i..j];
            if text == "r"
                && src[j..].starts_with('#')
                && src.len() > j + 1
                && ident_start(b[j + 1])
            {
                // A raw identifier, r#name.
                let mut k = j + 1;
                while k < b.len() && ident_char(b[k]) {
                    k += 1;
                }
                text = &src[j + 1..k];
                j = k;
            }
            out.push(Token {
                kind: Kind::Ident,
                text: text.to_string(),
                at: i,
            });
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < b.len() && ident_char(b[j]) {
                j += 1;
            }
            out.push(Token {
                kind: Kind::Other,
                text: src[i..j].to_string(),
                at: i,
            });
            i = j;
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let len = if [
                "::", "+=", "-=", "->", "=>", "==", "!=", "<=", ">=", "&&", "||", "..",
            ]
            .contains(&two)
            {
                2
            } else {
                src[i..].chars().next().map_or(1, char::len_utf8)
            };
            out.push(Token {
                kind: Kind::Punct,
                text: src[i..i + len].to_string(),
                at: i,
            });
            i += len;
        }
    }
    out
}

/// The string literal starting at `i` (`"…"`, `r#"…"#`, `b"…"`, `br"…"`, `c"…"`), as its
/// content (escapes left as written, `\` line continuations as a space) and the offset after it.
fn string_at(src: &str, i: usize) -> Option<(String, usize)> {
    let rest = &src[i..];
    let prefix = ["br", "cr", "b", "c", "r", ""].into_iter().find(|p| {
        rest.starts_with(p) && matches!(rest[p.len()..].chars().next(), Some('"' | '#'))
    })?;
    if i > 0 && !prefix.is_empty() {
        let before = src.as_bytes()[i - 1];
        if before.is_ascii_alphanumeric() || before == b'_' {
            return None;
        }
    }
    let raw = prefix.ends_with('r');
    let after = &rest[prefix.len()..];
    let hashes = after.chars().take_while(|c| *c == '#').count();
    if (hashes > 0 && !raw) || !after[hashes..].starts_with('"') {
        return None;
    }
    let body_start = i + prefix.len() + hashes + 1;
    let body = &src[body_start..];
    if raw {
        let close = format!("\"{}", "#".repeat(hashes));
        let end = body.find(&close)?;
        return Some((body[..end].to_string(), body_start + end + close.len()));
    }
    let bytes = body.as_bytes();
    let mut j = 0;
    let mut content = String::new();
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => {
                if bytes.get(j + 1).is_some_and(|c| c.is_ascii_whitespace()) {
                    content.push(' ');
                } else {
                    content.push_str(&body[j..j + 2.min(bytes.len() - j)]);
                }
                j += 2;
            }
            b'"' => return Some((content, body_start + j + 1)),
            _ => {
                let ch = body[j..].chars().next()?;
                content.push(ch);
                j += ch.len_utf8();
            }
        }
    }
    None
}

// ---- what SQL looks like ----------------------------------------------------------------------

/// The words and operators of `text`, lower-cased: runs of letters, digits, `_` and `.`, and
/// the characters SQL's shape depends on, one each.
fn sql_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '.' {
            word.extend(ch.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if "=<>!*()$?',;".contains(ch) {
            words.push(ch.to_string());
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Whether `text` looks like SQL or a piece of a statement, in any case and across lines.
fn looks_like_sql(text: &str) -> bool {
    let w = sql_words(text);
    let is = |i: usize, s: &str| w.get(i).is_some_and(|x| x == s);
    let any = |i: usize, set: &[&str]| w.get(i).is_some_and(|x| set.contains(&x.as_str()));
    let word = |i: usize| {
        w.get(i).is_some_and(|x| {
            x.chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    };
    let number = |i: usize| {
        w.get(i)
            .is_some_and(|x| x.chars().all(|c| c.is_ascii_digit()))
    };
    let compare = [
        "=", "<", ">", "!", "in", "is", "like", "between", "not", "any",
    ];
    const OBJECTS: &[&str] = &[
        "table",
        "index",
        "database",
        "schema",
        "trigger",
        "view",
        "function",
        "role",
        "user",
        "extension",
        "type",
        "sequence",
    ];
    let whole = w.join(" ");
    let whole = whole.trim_end_matches(" ;");
    if [
        "begin",
        "begin immediate",
        "begin exclusive",
        "begin deferred",
        "begin transaction",
        "commit",
        "rollback",
    ]
    .contains(&whole)
        || whole.starts_with("savepoint ")
        || whole.starts_with("release savepoint ")
        || whole.starts_with("rollback to ")
        || (w.len() == 2 && is(0, "show") && word(1))
        || (is(0, "truncate") && word(1))
        || (is(0, "notify") && word(1))
    {
        return true;
    }
    let has_from = w.iter().any(|x| x == "from");
    let has_std_stream = w.iter().any(|x| x == "stdin" || x == "stdout");
    (0..w.len()).any(|i| {
        (is(i, "select")
            && (has_from
                || any(
                    i + 1,
                    &["*", "(", "$", "?", "count", "exists", "distinct", "now"],
                )
                || (word(i + 1) && is(i + 2, "("))
                || number(i + 1)))
            || (is(i, "insert") && is(i + 1, "into"))
            || (is(i, "delete") && is(i + 1, "from"))
            || (is(i, "update") && word(i + 1) && is(i + 2, "set"))
            || (is(i, "where") && word(i + 1) && any(i + 2, &compare))
            || (any(i, &["and", "or"])
                && word(i + 1)
                && any(i + 2, &["=", "<", ">", "!"])
                && (any(i + 3, &["$", "?", "'", "("])
                    || number(i + 3)
                    || any(i + 4, &["$", "?"])
                    || i + 3 == w.len()))
            || (any(i, &["create", "drop", "alter"])
                && (any(i + 1, OBJECTS)
                    || (any(i + 1, &["unique", "temp", "temporary", "or"])
                        && (2..=3).any(|k| any(i + k, OBJECTS)))))
            || (is(i, "truncate") && is(i + 1, "table"))
            || (is(i, "values") && is(i + 1, "("))
            || (any(i, &["order", "group"]) && is(i + 1, "by"))
            || (any(i, &["limit", "offset"]) && (any(i + 1, &["$", "?"]) || number(i + 1)))
            || (is(i, "pragma") && word(i + 1))
            || (is(i, "set")
                && any(
                    i + 1,
                    &["search_path", "time", "local", "session", "transaction"],
                ))
            || (is(i, "copy") && word(i + 1) && has_std_stream)
            || (is(i, "join") && word(i + 1) && (is(i + 2, "on") || is(i + 3, "on")))
            || (is(i, "from") && word(i + 1) && is(i + 2, "where"))
            || (is(i, "on") && is(i + 1, "conflict"))
            || (is(i, "returning") && (is(i + 1, "*") || (word(i + 1) && is(i + 2, ","))))
    })
}

// ---- the scan ---------------------------------------------------------------------------------

/// Names whose value is SQL, across the workspace: statements (`const`/`static` items of a
/// `queries` or `sql` module, or handed to a SQL entry point anywhere) and `macro_rules!` that
/// expand to SQL. A SQL-looking constant that never reaches the database (an injection payload
/// a test stores as data) is not a statement.
#[derive(Default)]
struct SqlNames {
    consts: HashSet<String>,
    macros: HashSet<String>,
    /// SQL-looking constants outside the statement modules, statements once seen in use.
    candidates: HashSet<String>,
}

/// The index of the bracket that closes the one at `open`, if `open` opens one.
fn closing(tokens: &[Token], open: usize) -> Option<usize> {
    let (o, c) = match tokens.get(open)?.text.as_str() {
        "(" => ("(", ")"),
        "[" => ("[", "]"),
        "{" => ("{", "}"),
        _ => return None,
    };
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if t.kind == Kind::Punct {
            if t.text == o {
                depth += 1;
            } else if t.text == c {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
        }
    }
    None
}

/// The index of the `;` that ends the item or statement whose tokens start after `from`
/// (brackets skipped), or the end.
fn statement_end(tokens: &[Token], from: usize) -> usize {
    let mut j = from;
    while j < tokens.len() {
        let t = &tokens[j];
        if t.kind == Kind::Punct && t.text == ";" {
            return j;
        }
        if t.kind == Kind::Punct && ["(", "[", "{"].contains(&t.text.as_str()) {
            j = closing(tokens, j).unwrap_or(tokens.len());
        }
        j += 1;
    }
    tokens.len()
}

/// The `(` of a call of the identifier at `i` (`f(`, `f::<T>(`), if it is one.
fn call_open(tokens: &[Token], i: usize) -> Option<usize> {
    let mut open = i + 1;
    if is_punct(tokens.get(open), "::") && is_punct(tokens.get(open + 1), "<") {
        let mut depth = 0;
        let mut j = open + 1;
        while j < tokens.len() {
            match tokens[j].text.as_str() {
                "<" => depth += 1,
                ">" => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        open = j + 1;
    }
    is_punct(tokens.get(open), "(").then_some(open)
}

/// The tokens of `tokens` outside brackets, with each bracket's opening token kept.
fn top_level(tokens: &[Token]) -> Vec<&Token> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < tokens.len() {
        out.push(&tokens[k]);
        if tokens[k].kind == Kind::Punct && ["(", "[", "{"].contains(&tokens[k].text.as_str()) {
            k = closing(tokens, k).unwrap_or(tokens.len());
        }
        k += 1;
    }
    out
}

fn is_punct(t: Option<&Token>, s: &str) -> bool {
    t.is_some_and(|t| t.kind == Kind::Punct && t.text == s)
}

fn is_ident(t: Option<&Token>, s: &str) -> bool {
    t.is_some_and(|t| t.kind == Kind::Ident && t.text == s)
}

impl SqlNames {
    /// Adds the SQL constants and macros `source` defines; true if any was new. Constants of a
    /// `statements` module are statements; others are candidates until [`SqlNames::promote`].
    fn learn(&mut self, source: &str, statements: bool) -> bool {
        let tokens = lex(source);
        let mut learned = false;
        for (i, t) in tokens.iter().enumerate() {
            if t.kind != Kind::Ident {
                continue;
            }
            if (t.text == "const" || t.text == "static")
                && tokens.get(i + 1).is_some_and(|n| n.kind == Kind::Ident)
                && is_punct(tokens.get(i + 2), ":")
            {
                let end = statement_end(&tokens, i + 2);
                let name = tokens[i + 1].text.clone();
                if self.holds_sql(&tokens[i + 3..end]) && !self.consts.contains(&name) {
                    learned |= if statements {
                        self.consts.insert(name)
                    } else {
                        self.candidates.insert(name)
                    };
                }
            }
            if t.text == "macro_rules"
                && is_punct(tokens.get(i + 1), "!")
                && tokens.get(i + 2).is_some_and(|n| n.kind == Kind::Ident)
            {
                let end = closing(&tokens, i + 3).unwrap_or(tokens.len() - 1);
                if self.holds_sql(&tokens[i + 3..=end]) {
                    learned |= self.macros.insert(tokens[i + 2].text.clone());
                }
            }
        }
        learned
    }

    /// Makes statements of the candidates `source` hands to a SQL entry point.
    fn promote(&mut self, source: &str) {
        let tokens = lex(source);
        for (i, t) in tokens.iter().enumerate() {
            if t.kind == Kind::Ident
                && (TEXT_SINKS.contains(&t.text.as_str()) || FORBIDDEN.contains(&t.text.as_str()))
            {
                let Some(open) = call_open(&tokens, i) else {
                    continue;
                };
                let close = closing(&tokens, open).unwrap_or(tokens.len() - 1);
                for a in &tokens[open + 1..close] {
                    if self.candidates.remove(&a.text) {
                        self.consts.insert(a.text.clone());
                    }
                }
            }
        }
    }

    fn holds_sql(&self, tokens: &[Token]) -> bool {
        (0..tokens.len()).any(|i| self.is_sql_operand(tokens, i, &HashSet::new(), true))
    }

    /// Whether token `i` is SQL: a SQL-looking literal (if `literals`), a statement, a SQL
    /// macro's invocation or a local in `aliases`.
    fn is_sql_operand(
        &self,
        tokens: &[Token],
        i: usize,
        aliases: &HashSet<String>,
        literals: bool,
    ) -> bool {
        let t = &tokens[i];
        match t.kind {
            Kind::Str => literals && looks_like_sql(&t.text),
            // A path segment (`queries::X`) is not a local, whatever its name.
            Kind::Ident if is_punct(tokens.get(i + 1), "::") => false,
            Kind::Ident => {
                // Not the definition `const NAME: …` itself, nor a field `x.NAME`.
                let defining = is_punct(tokens.get(i + 1), ":")
                    && i > 0
                    && ["const", "static", "let", "mut"].contains(&tokens[i - 1].text.as_str());
                let macro_call = is_punct(tokens.get(i + 1), "!");
                !defining
                    && if macro_call {
                        self.macros.contains(&t.text)
                    } else {
                        self.consts.contains(&t.text) || aliases.contains(&t.text)
                    }
            }
            _ => false,
        }
    }
}

/// Formatting macros: their output is a run-time string.
const FORMAT_MACROS: &[&str] = &["format", "write", "writeln", "format_args"];
/// Methods that add text to a string being built.
const PUSHERS: &[&str] = &["push_str", "push", "insert_str", "extend", "write_str"];
/// Methods whose result is a new (owned or edited) string made from the receiver.
const BUILDERS: &[&str] = &[
    "to_string",
    "to_owned",
    "into",
    "into_owned",
    "concat",
    "join",
    "replace",
    "replacen",
    "repeat",
    "to_lowercase",
    "to_uppercase",
];
/// Entry points whose first argument is SQL text (as functions or as methods).
const TEXT_SINKS: &[&str] = &[
    "query",
    "query_as",
    "query_scalar",
    "raw_sql",
    "copy_in_raw",
    "copy_out_raw",
    "begin_with",
    "try_begin_with",
    "pragma",
    "execute_script",
];
/// `Executor` methods: their argument is an executor when called on a query, and SQL when
/// called on an executor.
const EXECUTOR_METHODS: &[&str] = &[
    "execute",
    "execute_many",
    "fetch",
    "fetch_many",
    "fetch_all",
    "fetch_one",
    "fetch_optional",
    "prepare",
    "prepare_with",
    "describe",
];
/// Never allowed, whatever their arguments.
const FORBIDDEN: &[&str] = &[
    "query_with",
    "query_as_with",
    "query_scalar_with",
    "__query_with_result",
    "__query_scalar_with_result",
    "QueryBuilder",
    "Separated",
    "RawSql",
];
/// Tokens that make an argument a run-time string.
const DYNAMIC: &[&str] = &[
    "as_str",
    "as_ref",
    "as_deref",
    "deref",
    "borrow",
    "leak",
    "format",
    "to_string",
    "to_owned",
    "String",
    "Cow",
    "concat",
    "join",
];

/// Every offending place in `source` as (line number, what was found).
fn offences(source: &str, names: &SqlNames) -> Vec<(usize, String)> {
    let tokens = lex(source);
    let lines: Vec<&str> = source.lines().collect();
    let line_of = |t: &Token| source[..t.at].matches('\n').count();
    let allowed = |line: usize| {
        lines[line.saturating_sub(3)..=line.min(lines.len().saturating_sub(1))]
            .iter()
            .any(|l| l.contains("sql-hygiene: allow"))
    };

    // Locals bound to SQL (`let sql = if … { queries::A } else { queries::B };`), and locals
    // holding a string built at run time (`let q = format!(…)`, `let mut q = String::new()`).
    let mut aliases = HashSet::new();
    let mut dynamic = HashSet::new();
    loop {
        let before = (aliases.len(), dynamic.len());
        for (i, t) in tokens.iter().enumerate() {
            if t.kind != Kind::Ident || t.text != "let" {
                continue;
            }
            let mut n = i + 1;
            if is_ident(tokens.get(n), "mut") {
                n += 1;
            }
            let Some(name) = tokens.get(n).filter(|t| t.kind == Kind::Ident) else {
                continue;
            };
            let end = statement_end(&tokens, n + 1);
            let rhs = n + 1..end;
            let has = |set: &[&str]| {
                tokens[rhs.clone()]
                    .iter()
                    .any(|t| set.contains(&t.text.as_str()))
            };
            let calls_the_database = has(&["await", "bind", "query", "query_as", "query_scalar"]);
            if !calls_the_database
                && rhs
                    .clone()
                    .any(|j| names.is_sql_operand(&tokens, j, &aliases, false))
            {
                aliases.insert(name.text.clone());
            }
            // Built at run time: typed `String`/`Cow`, made by `format!`/`String::…`, ending in
            // a method that makes a new string, a `+`, or a copy of such a local.
            let eq = (n + 1..end).find(|&j| is_punct(tokens.get(j), "="));
            let (ty, value) = match eq {
                Some(eq) => (&tokens[n + 1..eq], &tokens[eq + 1..end]),
                None => (&tokens[n + 1..n + 1], &tokens[n + 1..n + 1]),
            };
            let top = top_level(value);
            let last_method = top
                .iter()
                .enumerate()
                .filter(|(k, t)| {
                    t.kind == Kind::Ident
                        && *k > 0
                        && is_punct(top.get(k - 1).copied(), ".")
                        && is_punct(top.get(k + 1).copied(), "(")
                })
                .map(|(_, t)| t.text.as_str())
                .next_back();
            let builds = ty.iter().any(|t| t.text == "String" || t.text == "Cow")
                || value
                    .first()
                    .is_some_and(|t| ["format", "String", "Cow"].contains(&t.text.as_str()))
                || last_method.is_some_and(|m| {
                    [
                        "to_string",
                        "to_owned",
                        "concat",
                        "collect",
                        "into_owned",
                        "replace",
                        "repeat",
                    ]
                    .contains(&m)
                })
                || top.iter().any(|t| t.kind == Kind::Punct && t.text == "+")
                || top.iter().any(|t| {
                    t.kind == Kind::Ident
                        && dynamic.contains(&t.text)
                        && !is_punct(top.get(1).copied(), "::")
                        && top.len() <= 4
                });
            if builds && !calls_the_database {
                dynamic.insert(name.text.clone());
            }
        }
        // Appended to: `q += …`, `q.push_str(…)`, `write!(q, …)`.
        for (i, t) in tokens.iter().enumerate() {
            let appended = is_punct(tokens.get(i + 1), "+=")
                || (is_punct(tokens.get(i + 1), ".")
                    && tokens.get(i + 2).is_some_and(|m| {
                        ["push_str", "insert_str", "write_str"].contains(&m.text.as_str())
                    }))
                || (i >= 3
                    && ["write", "writeln"].contains(&tokens[i - 3].text.as_str())
                    && is_punct(tokens.get(i - 2), "!")
                    && is_punct(tokens.get(i - 1), "("))
                || (i >= 5
                    && ["write", "writeln"].contains(&tokens[i - 5].text.as_str())
                    && is_punct(tokens.get(i - 2), "&")
                    && is_ident(tokens.get(i - 1), "mut"));
            if t.kind == Kind::Ident && appended {
                dynamic.insert(t.text.clone());
            }
        }
        if (aliases.len(), dynamic.len()) == before {
            break;
        }
    }

    // Token ranges that build strings: formatting macros' arguments, pushers' arguments, and
    // arrays that are `.concat()`ed or `.join()`ed.
    let mut building: Vec<(usize, usize, &'static str)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.kind != Kind::Ident {
            continue;
        }
        if FORMAT_MACROS.contains(&t.text.as_str()) && is_punct(tokens.get(i + 1), "!") {
            if let Some(close) = closing(&tokens, i + 2) {
                building.push((i + 2, close, "a formatting macro"));
            }
        }
        if PUSHERS.contains(&t.text.as_str())
            && i > 0
            && is_punct(tokens.get(i - 1), ".")
            && is_punct(tokens.get(i + 1), "(")
        {
            if let Some(close) = closing(&tokens, i + 1) {
                building.push((i + 1, close, "a string push"));
            }
        }
    }
    for (i, t) in tokens.iter().enumerate() {
        if t.kind == Kind::Punct && t.text == "[" {
            if let Some(close) = closing(&tokens, i) {
                if is_punct(tokens.get(close + 1), ".")
                    && tokens
                        .get(close + 2)
                        .is_some_and(|m| m.text == "concat" || m.text == "join")
                {
                    building.push((i, close, "an array that is concatenated"));
                }
            }
        }
    }

    let mut found = BTreeSet::new();
    let mut flag = |t: &Token, what: String| {
        let line = line_of(t);
        if !allowed(line) {
            found.insert((line + 1, what));
        }
    };

    for (i, t) in tokens.iter().enumerate() {
        // Never allowed.
        if t.kind == Kind::Ident && FORBIDDEN.contains(&t.text.as_str()) {
            flag(t, format!("`{}` takes SQL text of any lifetime", t.text));
        }

        // SQL being assembled.
        if names.is_sql_operand(&tokens, i, &aliases, true) {
            let what = if t.kind == Kind::Str {
                "SQL text".to_string()
            } else {
                format!("the SQL `{}`", t.text)
            };
            if let Some((_, _, how)) = building.iter().find(|(a, b, _)| *a < i && i < *b) {
                flag(t, format!("{what} in {how}"));
            }
            // Left: `+ "…"`, `+= X`, `+ &X`, `String::from(X)`.
            let mut l = i;
            while l >= 2 && t.kind == Kind::Ident && is_punct(tokens.get(l - 1), "::") {
                l -= 2; // the path `queries::X`
            }
            while l > 0 && ["&", "*", "("].contains(&tokens[l - 1].text.as_str()) {
                l -= 1;
            }
            if l > 0 && ["+", "+="].contains(&tokens[l - 1].text.as_str()) {
                flag(
                    t,
                    format!("{what} concatenated with `{}`", tokens[l - 1].text),
                );
            }
            if l >= 3
                && is_ident(tokens.get(l - 1), "from")
                && is_punct(tokens.get(l - 2), "::")
                && ["String", "Cow"].contains(&tokens[l - 3].text.as_str())
            {
                flag(t, format!("{what} made into an owned string"));
            }
            // Right: `X.to_string()`, `X.replace(…)`, `X.concat()`, then `+`.
            let mut r = i + 1;
            if t.kind == Kind::Ident && is_punct(tokens.get(r), "!") {
                r = closing(&tokens, r + 1).map_or(r, |c| c + 1);
            }
            while is_punct(tokens.get(r), ")") {
                r += 1;
            }
            if is_punct(tokens.get(r), ".") {
                if let Some(m) = tokens
                    .get(r + 1)
                    .filter(|m| BUILDERS.contains(&m.text.as_str()))
                {
                    flag(
                        t,
                        format!("{what} turned into a new string with `.{}`", m.text),
                    );
                }
            }
            while is_punct(tokens.get(r), ".") && is_punct(tokens.get(r + 2), "(") {
                r = closing(&tokens, r + 2).map_or(r + 3, |c| c + 1);
                while is_punct(tokens.get(r), ")") {
                    r += 1;
                }
            }
            if tokens
                .get(r)
                .is_some_and(|n| n.kind == Kind::Punct && (n.text == "+" || n.text == "+="))
            {
                flag(t, format!("{what} concatenated with `{}`", tokens[r].text));
            }
            // Inline captures of SQL in a format string: `format!("{BASE} WHERE …")`.
        }
        if t.kind == Kind::Str
            && building
                .iter()
                .any(|(a, b, how)| *how == "a formatting macro" && *a < i && i < *b)
        {
            for capture in t.text.split('{').skip(1) {
                let name: String = capture
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if names.consts.contains(&name) || aliases.contains(&name) {
                    flag(t, format!("the SQL `{name}` captured by a format string"));
                }
            }
        }

        // SQL entry points handed text that is not constant.
        if t.kind != Kind::Ident {
            continue;
        }
        let Some(open) = call_open(&tokens, i) else {
            continue;
        };
        let close = closing(&tokens, open).unwrap_or(tokens.len() - 1);
        let args = &tokens[open + 1..close];
        // The token that makes an argument a run-time string, if any.
        let dynamic_part = |arg: &[Token]| {
            let slices = arg
                .iter()
                .enumerate()
                .any(|(k, a)| a.text == "[" && is_punct(arg.get(k + 1), ".."));
            let top = top_level(arg);
            let found = top.iter().enumerate().find_map(|(k, a)| {
                let hit = (a.kind == Kind::Ident
                    && !is_punct(top.get(k + 1).copied(), "::")
                    && (DYNAMIC.contains(&a.text.as_str()) || dynamic.contains(&a.text)))
                    || (a.text == "&" && is_punct(top.get(k + 1).copied(), "*"));
                hit.then(|| a.text.clone())
            });
            found.or_else(|| slices.then(|| "[..]".to_string()))
        };
        // Split the arguments at top-level commas.
        let mut split = Vec::new();
        let mut start = 0;
        let mut k = 0;
        while k < args.len() {
            if ["(", "[", "{"].contains(&args[k].text.as_str()) && args[k].kind == Kind::Punct {
                let c = closing(args, k).unwrap_or(args.len() - 1);
                k = c + 1;
                continue;
            }
            if args[k].kind == Kind::Punct && args[k].text == "," {
                split.push(&args[start..k]);
                start = k + 1;
            }
            k += 1;
        }
        split.push(&args[start..]);
        let first = split[0];
        let method = i > 0 && is_punct(tokens.get(i - 1), ".");
        let ufcs =
            i > 1 && is_punct(tokens.get(i - 1), "::") && is_ident(tokens.get(i - 2), "Executor");
        if let Some(part) = dynamic_part(first).filter(|_| TEXT_SINKS.contains(&t.text.as_str())) {
            flag(
                t,
                format!("`{}` on a string built at run time (`{part}`)", t.text),
            );
        } else if EXECUTOR_METHODS.contains(&t.text.as_str()) && (method || ufcs) {
            let sql_args = if ufcs { &split[..] } else { &split[..1] };
            if let Some(part) = sql_args.iter().find_map(|a| dynamic_part(a)) {
                flag(
                    t,
                    format!("`{}` on a string built at run time (`{part}`)", t.text),
                );
            }
        }
    }
    found.into_iter().collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name() != Some("sql_hygiene.rs".as_ref())
        {
            out.push(path);
        }
    }
}

/// The SQL names `sources` (each with whether it is a statements module) define, to a fixed
/// point (a constant built from constants), with the candidates they use as statements.
fn learn_all<'a>(sources: impl Iterator<Item = (&'a str, bool)> + Clone) -> SqlNames {
    let mut names = SqlNames::default();
    while sources.clone().fold(false, |new, (s, statements)| {
        names.learn(s, statements) | new
    }) {}
    for (s, _) in sources {
        names.promote(s);
    }
    names
}

/// Whether `path` is a module of statements (`queries.rs`, `sql.rs`).
fn is_statements_module(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n == "queries.rs" || n == "sql.rs")
}

#[test]
fn no_sql_is_assembled_at_run_time() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(
        files.len() > 20,
        "the scan found only {} files; is it looking in the right place?",
        files.len()
    );
    let sources: HashMap<&PathBuf, String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap()))
        .collect();
    let names = learn_all(
        sources
            .iter()
            .map(|(path, source)| (source.as_str(), is_statements_module(path))),
    );
    for expected in ["CLAIM_BATCH", "GET_TASK", "MIGRATION_LOCK", "NEXT_QUEUED"] {
        assert!(
            names.consts.contains(expected),
            "the scan does not know the statement {expected}; is it reading the backends?"
        );
    }
    let mut report = Vec::new();
    for (file, source) in &sources {
        for (line, what) in offences(source, &names) {
            report.push(format!(
                "{}:{line}: {what}",
                file.strip_prefix(root).unwrap_or(file).display()
            ));
        }
    }
    report.sort();
    assert!(
        report.is_empty(),
        "SQL assembled at run time:\n{}",
        report.join("\n")
    );
}

/// The names a snippet's own `queries` module would define, for the unit tests below.
const SNIPPET_QUERIES: &str = r#"
pub const LIST_TASKS: &str = "SELECT task_id FROM drydock_state.tasks";
pub const BASE: &str = concat!("select * from tasks", " where true");
"#;

fn snippet_offences(source: &str) -> Vec<(usize, String)> {
    let names = learn_all([(SNIPPET_QUERIES, true), (source, false)].into_iter());
    offences(source, &names)
}

#[test]
fn the_detector_catches_every_evasion() {
    let bad = [
        // The original cases.
        ("format!", r#"let q = format!("SELECT * FROM tasks WHERE id = '{id}'");"#),
        ("push_str", r#"sql.push_str(" WHERE action = ");"#),
        ("+ literal", r#"let q = "DELETE FROM tasks".to_string() + " WHERE x";"#),
        ("a borrowed String", r#"let q = format!("{x}"); sqlx::query(&q).execute(&pool)"#),
        (
            "a raw literal in format!",
            "let q = format!(\n    r#\"UPDATE tasks SET status = {s}\"#\n);",
        ),
        // Lowercase SQL.
        ("lowercase", r#"let q = format!("select * from tasks where id = '{id}'");"#),
        ("lowercase DDL", r#"let q = format!("drop table {t}");"#),
        // SQL across lines.
        (
            "across lines",
            "let q = format!(\n    \"UPDATE drydock_state.tasks\n     SET status = '{s}'\n     WHERE task_id = {id}\"\n);",
        ),
        (
            "across lines, continued",
            "let q = format!(\"delete \\\n    from tasks where id = {id}\");",
        ),
        // SQL passed as a format argument, positionally, by name or captured.
        ("a format argument", r#"let q = format!("{}{}", queries::LIST_TASKS, suffix);"#),
        ("a literal format argument", r#"let q = format!("{} {}", "select *", rest);"#),
        ("a named format argument", r#"let q = format!("{base} and {c}", base = BASE, c = c);"#),
        ("a captured constant", r#"let q = format!("{LIST_TASKS} LIMIT {n}");"#),
        (
            "a captured local",
            "let base = queries::LIST_TASKS;\nlet q = format!(\"{base} LIMIT {n}\");",
        ),
        ("a fragment in format!", r#"let q = format!("{} where action = {}", base, a);"#),
        // `+=`.
        ("+= literal", r#"q += " WHERE status = 'queued'";"#),
        ("+= constant", r#"q += queries::LIST_TASKS;"#),
        // `String + &x`.
        ("String + &x", r#"let q = String::from("select * from tasks where id = ") + &id;"#),
        ("constant.to_string() + &x", r#"let q = queries::BASE.to_string() + &id;"#),
        ("owned + &x", r#"let q: String = LIST_TASKS.into(); let q = q + &cond;"#),
        // `write!` / `writeln!`.
        ("write!", r#"write!(q, " where task_id = '{}'", id).unwrap();"#),
        ("write! of a constant", r#"write!(q, "{}", queries::LIST_TASKS).unwrap();"#),
        ("writeln!", "writeln!(&mut q, \"insert into tasks values ({v})\")?;"),
        // `[..].concat()` and `.join()`.
        ("concat()", r#"let q = [queries::LIST_TASKS, " where id = ", &id].concat();"#),
        ("concat() of literals", r#"let q = ["select * from tasks where id = '", id, "'"].concat();"#),
        ("join()", r#"let q = [LIST_TASKS, cond].join(" ");"#),
        ("a local array, concatenated", "let parts = [LIST_TASKS, cond];\nlet q = parts.concat();"),
        // Templates edited at run time.
        ("replace()", r#"let q = queries::LIST_TASKS.replace("tasks", table);"#),
        // `sqlx::query(q.as_str())` and friends.
        ("q.as_str()", r#"sqlx::query(q.as_str()).execute(&pool).await?;"#),
        ("the wrapper, q.as_str()", r#"queries::query(q.as_str()).execute(&pool).await?;"#),
        ("query_as(&*q)", r#"sqlx::query_as::<_, Row>(&*q).fetch_all(&pool).await?;"#),
        ("query_scalar(&q)", "let mut q = String::new();\nlet n: i64 = sqlx::query_scalar(&q).fetch_one(&pool).await?;"),
        ("a leaked String", r#"queries::query(Box::leak(q.into_boxed_str()))"#),
        ("raw_sql(q.as_str())", r#"conn.execute(sqlx::raw_sql(q.as_str())).await?;"#),
        // `query_with` and its family.
        ("query_with", r#"sqlx::query_with(queries::LIST_TASKS, args).fetch_all(&pool)"#),
        ("query_as_with", r#"sqlx::query_as_with::<_, Row, _>(sql, args)"#),
        ("query_scalar_with", r#"sqlx::query_scalar_with(sql, args)"#),
        // `Executor::execute(q.as_str())`, as a method and fully qualified.
        ("execute(q.as_str())", r#"pool.execute(q.as_str()).await?;"#),
        ("Executor::execute(q.as_str())", r#"Executor::execute(&pool, q.as_str()).await?;"#),
        ("sqlx::Executor::fetch_all(..)", r#"sqlx::Executor::fetch_all(&mut *conn, &*q).await?;"#),
        ("fetch_one(&q)", "let q = format!(\"{x}\");\nconn.fetch_one(&q[..]).await?;"),
        // `QueryBuilder::push`.
        ("QueryBuilder::push", r#"let mut b = QueryBuilder::new(queries::LIST_TASKS); b.push(" WHERE x = ");"#),
        ("a pushed fragment", r#"b.push(" AND task_id = ");"#),
        ("sqlx::QueryBuilder", r#"let mut b = sqlx::QueryBuilder::<Postgres>::new("SELECT 1");"#),
        ("a pushed constant", r#"parts.push(queries::LIST_TASKS);"#),
        // Other entry points that take text.
        ("begin_with(String)", r#"pool.begin_with(format!("BEGIN {mode}")).await?;"#),
        ("copy_in_raw(String)", r#"conn.copy_in_raw(q.as_str()).await?;"#),
    ];
    let mut missed = Vec::new();
    for (what, source) in bad {
        if snippet_offences(source).is_empty() {
            missed.push(format!("{what}: {source}"));
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

#[test]
fn the_detector_lets_static_statements_through() {
    let fine = [
        r#"sqlx::query(queries::CLAIM_BATCH).bind(id)"#,
        r#"queries::query(queries::LIST_TASKS).bind(id).fetch_all(&self.pool).await?"#,
        r#"queries::query_as::<_, TaskRow>(queries::LIST_TASKS).fetch_optional(&mut *tx).await?"#,
        "let sql = if latest { queries::A } else { queries::LIST_TASKS };\nqueries::query(sql).bind(full)",
        r#"sql::query("SELECT v FROM raw_bench WHERE id = $1").bind(id).fetch_optional(pool)"#,
        r#"sql::query("SET TIME ZONE 'Pacific/Chatham'").execute(&mut *conn).await?;"#,
        r#"pub const GET: &str = concat!("SELECT ", "x FROM t WHERE id = $1");"#,
        r#"format!("task {id} is {status}, which is final")"#,
        r#"format!("cannot update the design: {e}")"#,
        r#"message.push_str("the update was refused");"#,
        r#"assert!(queries::LIST_TASKS.contains("ORDER BY"));"#,
        r#"let row = queries::query(queries::LIST_TASKS).fetch_one(&pool).await?; let s = format!("{row:?}");"#,
        "let q = format!(\"{x}\");\nlet _ = q.len();",
        "// sql-hygiene: allow (generated name, DDL takes no parameters)\nlet q = format!(\"CREATE DATABASE {name}\");",
        "/* format!(\"select * from tasks where id = {id}\") */ let x = 1;",
        r#"let c = '"'; let s = "plain"; let l: &'static str = "x";"#,
    ];
    for source in fine {
        let found = snippet_offences(source);
        assert!(found.is_empty(), "false alarm: {source}\n{found:?}");
    }
}

#[test]
fn sql_is_recognised_in_any_case_and_across_lines() {
    for sql in [
        "SELECT * FROM tasks",
        "select task_id\n  from drydock_state.tasks",
        "InSeRt InTo t (a) VALUES ($1)",
        "update tasks\n\tset status = $1",
        " WHERE task_id = $1",
        " and status = 'queued'",
        "DROP DATABASE IF EXISTS x",
        "create unique index i on t (a)",
        "BEGIN IMMEDIATE",
        "ROLLBACK",
        "SHOW TimeZone",
        "PRAGMA journal_mode",
        "COPY raw_bench (id, v) FROM STDIN",
        " ORDER BY created LIMIT $2",
    ] {
        assert!(looks_like_sql(sql), "not recognised: {sql:?}");
    }
    for prose in [
        "task {id} is {status}, which is final",
        "cannot update the design: {e}",
        "the order was refused",
        "begin the run",
        "drop the connection and create a new one",
        "where it came from",
    ] {
        assert!(!looks_like_sql(prose), "prose taken for SQL: {prose:?}");
    }
}

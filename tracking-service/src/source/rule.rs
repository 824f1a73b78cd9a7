//! Traefik router rules → the hostnames they serve: a small tokenizer and a
//! recursive-descent parser of Traefik's rule expressions (v2 and v3), never
//! a regular expression.
//!
//! Grammar (whitespace anywhere between tokens):
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | "(" expr ")" | matcher
//! matcher := IDENT "(" [ string ( "," string )* ] ")"
//! string  := `raw` | "Go-quoted, with Go's escapes"
//! ```
//!
//! `Host`, `HostHeader` and `HostSNI` declare their values (v2 takes several
//! per matcher); a value under `!` is never declared. `HostRegexp`,
//! `HostSNIRegexp` and `HostSNI(`*`)` are reported as skipped, and every other
//! matcher (`PathPrefix`, `Header`, `ClientIP`...) is read and ignored. This
//! module only reads text: it never validates names (the caller does, against
//! the zone) and never logs.

use std::fmt;

/// Deepest nesting of `(` and `!` accepted: a rule nested deeper is refused
/// rather than risking the stack on text from outside.
pub const MAX_DEPTH: usize = 64;

/// What a rule declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Hostnames of `Host`, `HostHeader` and `HostSNI` outside any `!`, in
    /// rule order, each once, as written (not yet lowercased or validated).
    pub hosts: Vec<String>,
    /// Matchers that name hosts this source cannot declare (`HostRegexp`,
    /// `HostSNIRegexp`, `HostSNI(`*`)`), for one log line each.
    pub skipped: Vec<Skipped>,
}

/// A host matcher the source cannot turn into a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The matcher, as written (`HostRegexp`, `HostSNI`).
    pub matcher: String,
    /// Its value.
    pub value: String,
}

/// Why a rule could not be read; `at` is the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Byte offset in the rule.
    pub at: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.at)
    }
}

impl std::error::Error for RuleError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("name {s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Not => "'!'".into(),
        }
    }
}

fn err(at: usize, message: impl Into<String>) -> RuleError {
    RuleError {
        at,
        message: message.into(),
    }
}

/// Splits a rule into tokens, each with its byte offset.
fn tokenize(rule: &str) -> Result<Vec<(usize, Tok)>, RuleError> {
    let bytes = rule.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((i, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push((i, Tok::Comma));
                i += 1;
            }
            b'!' => {
                out.push((i, Tok::Not));
                i += 1;
            }
            b'&' | b'|' => {
                if bytes.get(i + 1) != Some(&c) {
                    return Err(err(i, format!("'{}' must be doubled", char::from(c))));
                }
                out.push((i, if c == b'&' { Tok::And } else { Tok::Or }));
                i += 2;
            }
            b'`' => {
                let start = i + 1;
                let Some(len) = rule[start..].find('`') else {
                    return Err(err(i, "unterminated `string`"));
                };
                out.push((i, Tok::Str(rule[start..start + len].to_string())));
                i = start + len + 1;
            }
            b'"' => {
                let (s, next) = go_string(rule, i)?;
                out.push((i, Tok::Str(s)));
                i = next;
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((start, Tok::Ident(rule[start..i].to_string())));
            }
            _ => {
                let ch = rule[i..].chars().next().unwrap_or('?');
                return Err(err(i, format!("unexpected character {ch:?}")));
            }
        }
    }
    Ok(out)
}

/// Reads a Go interpreted string literal starting at the `"` at `at`:
/// returns its value and the offset just past the closing quote.
fn go_string(rule: &str, at: usize) -> Result<(String, usize), RuleError> {
    let mut out = String::new();
    let mut chars = rule[at + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let pos = at + 1 + off;
        match c {
            '"' => return Ok((out, pos + 1)),
            '\n' => return Err(err(pos, "line break inside a \"string\"")),
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    break;
                };
                let simple = match e {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(s) = simple {
                    out.push(s);
                    continue;
                }
                let (digits, radix) = match e {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => return Err(err(pos, format!("unknown escape \\{e}"))),
                };
                let mut text = String::new();
                if radix == 8 {
                    text.push(e);
                }
                for _ in 0..digits {
                    match chars.next() {
                        Some((_, d)) => text.push(d),
                        None => return Err(err(pos, "escape cut short")),
                    }
                }
                let value = u32::from_str_radix(&text, radix)
                    .map_err(|_| err(pos, format!("bad escape \\{e}{text}")))?;
                let ch = char::from_u32(value)
                    .filter(|_| radix == 16 || value <= 255)
                    .ok_or_else(|| err(pos, format!("escape \\{e} is not a character")))?;
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    Err(err(at, "unterminated \"string\""))
}

/// What kind of host a matcher names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MatcherKind {
    /// `Host`, `HostHeader`, `HostSNI`: its values are hostnames.
    Host,
    /// `HostSNI` (`*` is "any", not a name).
    Sni,
    /// `HostRegexp`, `HostSNIRegexp`: patterns, skipped.
    Regexp,
    /// Anything else: no hostname.
    Other,
}

fn kind_of(name: &str) -> MatcherKind {
    match name.to_ascii_lowercase().as_str() {
        "host" | "hostheader" => MatcherKind::Host,
        "hostsni" => MatcherKind::Sni,
        "hostregexp" | "hostsniregexp" => MatcherKind::Regexp,
        _ => MatcherKind::Other,
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    out: Parsed,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), RuleError> {
        let at = self.at();
        match self.next() {
            Some(t) if t == *want => Ok(()),
            Some(t) => Err(err(at, format!("expected {what}, found {}", t.describe()))),
            None => Err(err(
                at,
                format!("expected {what}, found the end of the rule"),
            )),
        }
    }

    fn expr(&mut self, depth: usize, negated: bool) -> Result<(), RuleError> {
        self.and(depth, negated)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            self.and(depth, negated)?;
        }
        Ok(())
    }

    fn and(&mut self, depth: usize, negated: bool) -> Result<(), RuleError> {
        self.unary(depth, negated)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            self.unary(depth, negated)?;
        }
        Ok(())
    }

    fn unary(&mut self, depth: usize, negated: bool) -> Result<(), RuleError> {
        if depth >= MAX_DEPTH {
            return Err(err(
                self.at(),
                format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let at = self.at();
        match self.next() {
            Some(Tok::Not) => self.unary(depth + 1, true),
            Some(Tok::LParen) => {
                self.expr(depth + 1, negated)?;
                self.expect(&Tok::RParen, "')'")
            }
            Some(Tok::Ident(name)) => self.matcher(&name, negated),
            Some(t) => Err(err(
                at,
                format!("expected a matcher, '(' or '!', found {}", t.describe()),
            )),
            None => Err(err(at, "expected a matcher, found the end of the rule")),
        }
    }

    fn matcher(&mut self, name: &str, negated: bool) -> Result<(), RuleError> {
        self.expect(&Tok::LParen, &format!("'(' after {name}"))?;
        let mut values = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
        } else {
            loop {
                let at = self.at();
                match self.next() {
                    Some(Tok::Str(s)) => values.push(s),
                    Some(t) => {
                        return Err(err(
                            at,
                            format!("expected a `string` in {name}(...), found {}", t.describe()),
                        ));
                    }
                    None => return Err(err(at, format!("{name}( is never closed"))),
                }
                let at = self.at();
                match self.next() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RParen) => break,
                    Some(t) => {
                        return Err(err(
                            at,
                            format!("expected ',' or ')' in {name}(...), found {}", t.describe()),
                        ));
                    }
                    None => return Err(err(at, format!("{name}( is never closed"))),
                }
            }
        }
        if negated {
            return Ok(());
        }
        let kind = kind_of(name);
        for v in values {
            match kind {
                MatcherKind::Host => self.host(v),
                MatcherKind::Sni if v.trim() == "*" => self.skip(name, v),
                MatcherKind::Sni => self.host(v),
                MatcherKind::Regexp => self.skip(name, v),
                MatcherKind::Other => {}
            }
        }
        Ok(())
    }

    fn host(&mut self, v: String) {
        let v = v.trim().to_string();
        if !v.is_empty() && !self.out.hosts.contains(&v) {
            self.out.hosts.push(v);
        }
    }

    fn skip(&mut self, matcher: &str, value: String) {
        self.out.skipped.push(Skipped {
            matcher: matcher.to_string(),
            value,
        });
    }
}

/// Reads `rule`: the hostnames it declares, and the host matchers skipped.
pub fn parse(rule: &str) -> Result<Parsed, RuleError> {
    let toks = tokenize(rule)?;
    if toks.is_empty() {
        return Err(err(0, "the rule is empty"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: rule.len(),
        out: Parsed::default(),
    };
    p.expr(0, false)?;
    if let Some(t) = p.peek().cloned() {
        return Err(err(
            p.at(),
            format!("expected '&&', '||' or the end, found {}", t.describe()),
        ));
    }
    Ok(p.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(rule: &str) -> Vec<String> {
        parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}")).hosts
    }

    #[test]
    fn rules_to_hosts() {
        let table: &[(&str, &[&str])] = &[
            ("Host(`a.example.com`)", &["a.example.com"]),
            ("Host(\"a.example.com\")", &["a.example.com"]),
            (
                "Host(`a.example.com`, `b.example.com`)",
                &["a.example.com", "b.example.com"],
            ),
            ("HostHeader(`h.example.com`)", &["h.example.com"]),
            ("HostSNI(`tcp.example.com`)", &["tcp.example.com"]),
            (
                "Host(`a.example.com`) && PathPrefix(`/api`)",
                &["a.example.com"],
            ),
            (
                "Host(`a.example.com`) || Host(`b.example.com`)",
                &["a.example.com", "b.example.com"],
            ),
            (
                "(Host(`a.example.com`) || Host(`b.example.com`)) && Method(`GET`)",
                &["a.example.com", "b.example.com"],
            ),
            (
                "Host(`a.example.com`) && !Host(`b.example.com`)",
                &["a.example.com"],
            ),
            ("!(Host(`a.example.com`) || Host(`b.example.com`))", &[]),
            (
                "!Host(`a.example.com`) || Host(`c.example.com`)",
                &["c.example.com"],
            ),
            ("PathPrefix(`/`)", &[]),
            (
                "Header(`X-Host`, `Host(`) && Host(`x.example.com`)",
                &["x.example.com"],
            ),
            ("host(`lower.example.com`)", &["lower.example.com"]),
            (
                "Host(`dup.example.com`) || Host(`dup.example.com`)",
                &["dup.example.com"],
            ),
            (
                "  Host( `spaced.example.com` )\n&&\tPath(`/x`) ",
                &["spaced.example.com"],
            ),
            ("Host(\"q\\x41.example.com\")", &["qA.example.com"]),
            ("Host(\"esc\\u00e9.example.com\")", &["escé.example.com"]),
            ("Host(\"o\\101.example.com\")", &["oA.example.com"]),
            (
                "Host(`a.example.com`) && (ClientIP(`10.0.0.0/8`) || !Header(`a`,`b`))",
                &["a.example.com"],
            ),
            ("HostRegexp(`^.+\\.example\\.com$`)", &[]),
            ("HostSNI(`*`)", &[]),
            ("Host()", &[]),
        ];
        for (rule, want) in table {
            assert_eq!(hosts(rule), *want, "{rule}");
        }
    }

    #[test]
    fn regexp_and_catch_all_are_reported_as_skipped() {
        let p = parse(
            "HostRegexp(`{sub:[a-z]+}.example.com`) || HostSNI(`*`) || Host(`a.example.com`)",
        )
        .unwrap();
        assert_eq!(p.hosts, ["a.example.com"]);
        assert_eq!(
            p.skipped,
            [
                Skipped {
                    matcher: "HostRegexp".into(),
                    value: "{sub:[a-z]+}.example.com".into()
                },
                Skipped {
                    matcher: "HostSNI".into(),
                    value: "*".into()
                },
            ]
        );
        // Under `!` nothing is declared, nor reported.
        assert_eq!(parse("!HostRegexp(`x`)").unwrap(), Parsed::default());
    }

    #[test]
    fn malformed_rules_are_refused_with_a_position() {
        let table: &[(&str, usize)] = &[
            ("", 0),
            ("   ", 0),
            ("Host(`a.example.com`", 20),
            ("Host(`a.example.com)", 5),
            ("Host(\"a.example.com)", 5),
            ("Host(a.example.com)", 6),
            ("Host(bare)", 5),
            ("Host(`a`) & Host(`b`)", 10),
            ("Host(`a`) | Host(`b`)", 10),
            ("Host(`a`) Host(`b`)", 10),
            ("Host(`a`) &&", 12),
            ("&& Host(`a`)", 0),
            ("(Host(`a`)", 10),
            ("Host(`a`))", 9),
            ("Host `a`", 5),
            ("Host(`a` `b`)", 9),
            ("Host(`a`,)", 9),
            ("Host(\"\\q\")", 6),
            ("Host(\"\\xZZ\")", 6),
            ("Host(`a`) # comment", 10),
            ("!", 1),
        ];
        let wrong: Vec<String> = table
            .iter()
            .filter_map(|(rule, at)| match parse(rule) {
                Ok(p) => Some(format!("{rule:?} parsed: {p:?}")),
                Err(e) if e.at != *at => Some(format!("{rule:?}: {e}")),
                Err(_) => None,
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}Host(`a`){}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let ok = format!(
            "{}Host(`a`){}",
            "(".repeat(MAX_DEPTH - 2),
            ")".repeat(MAX_DEPTH - 2)
        );
        assert_eq!(hosts(&ok), ["a"]);
        let nots = format!("{}Host(`a`)", "!".repeat(MAX_DEPTH + 1));
        assert!(parse(&nots).is_err());
    }

    /// Arbitrary bytes never panic the parser (a cheap stand-in for a fuzz
    /// target: every prefix and every single-byte mutation of real rules).
    #[test]
    fn never_panics_on_mangled_rules() {
        let seeds = [
            "Host(`a.example.com`) && (PathPrefix(`/x`) || !Header(\"k\", \"v\\\"q\"))",
            "HostSNI(`*`) || HostRegexp(`^x$`) || Host(\"\\u00e9\\x41\\101\")",
        ];
        let alphabet = b"`\"\\()!&|, aHx7";
        for seed in seeds {
            for end in 0..=seed.len() {
                if seed.is_char_boundary(end) {
                    let _ = parse(&seed[..end]);
                }
            }
            let bytes = seed.as_bytes();
            for i in 0..bytes.len() {
                for &b in alphabet {
                    let mut m = bytes.to_vec();
                    m[i] = b;
                    if let Ok(s) = std::str::from_utf8(&m) {
                        let _ = parse(s);
                    }
                }
            }
        }
    }
}

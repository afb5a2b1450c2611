//! What wasmon checks around promql-parser: a nesting limit enforced on the
//! token stream before the parser builds an AST, literals the parser would
//! misread, and positions for its errors in Prometheus' form
//! (`2:5: parse error: unexpected end of input`).
//!
//! The parser, its AST's `Drop`, `Display` and `value_type`, and every
//! evaluator walk recurse once per level of nesting, so an unbounded query
//! (`((((...1...))))`, `- - - ... 1`, `1 + 1 + ... + 1`) overflows a
//! thread's stack and aborts the process. The limit is checked on the
//! lexer's tokens — strings, comments and label matchers cannot fool it —
//! before anything recursive runs.

use lrpar::{Lexeme, Lexer, NonStreamingLexer};
use promql_parser::parser::token::{
    TokenType, T_DURATION, T_LEFT_BRACE, T_LEFT_BRACKET, T_LEFT_PAREN, T_NUMBER, T_RIGHT_BRACE,
    T_RIGHT_BRACKET, T_RIGHT_PAREN,
};
use promql_parser::parser::Expr;

use super::error::ParseError;

/// The deepest nesting a query may have, counted on its tokens: each open
/// parenthesis (a call, an aggregation or a group), operator and `[` on the
/// way from the outside to the innermost token counts one level, and
/// operators beside a parenthesized operand count against it too, so the
/// count may exceed the depth of the tree actually built (by at most the
/// depth of one operand) but never falls short of it.
///
/// Real queries nest a few dozen levels at most; 1000 leaves room for
/// generated ones (long `or` chains) while bounding the stack every
/// recursive walk needs: a debug build evaluates a 1000-level query in
/// under 16 MiB (measured on the worst shape, nested function calls), and
/// [`on_deep_stack`] runs deep queries on a thread with [`DEEP_STACK`]
/// bytes of stack rather than on a 2 MiB tokio worker.
pub const MAX_DEPTH: usize = 1000;

/// Queries deeper than this are evaluated on their own thread (the 2 MiB
/// of a tokio worker, minus what its callers use, is enough for this many
/// levels in a debug build with room to spare).
const IN_PLACE_DEPTH: usize = 32;

/// The stack of that thread: 64 KiB per level of [`MAX_DEPTH`], four
/// times what the worst shape needs in a debug build. Address space only;
/// the pages a query does not touch are never committed.
pub const DEEP_STACK: usize = MAX_DEPTH * 64 * 1024;

/// 1-based line and column of byte offset `at` in `q`, as Prometheus
/// reports them (columns count bytes).
pub fn line_col(q: &str, at: usize) -> (usize, usize) {
    let at = at.min(q.len());
    let before = &q.as_bytes()[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, at - line_start + 1)
}

/// `msg` at byte offset `at` of `q`.
pub fn positioned(q: &str, at: usize, msg: &str) -> ParseError {
    let (line, column) = line_col(q, at);
    ParseError {
        line,
        column,
        message: msg.to_string(),
    }
}

/// Checks what promql-parser would choke on or misread, before it runs:
/// nesting deeper than [`MAX_DEPTH`] and duration literals out of range.
/// Text the lexer rejects passes: the parser reports that itself.
pub fn check(q: &str) -> Result<(), ParseError> {
    let Ok(lexer) = promql_parser::parser::lex::lexer(q) else {
        return Ok(());
    };
    // Per open parenthesis (the outermost level first): operators seen
    // directly inside it and the deepest closed group inside it.
    struct Level {
        ops: usize,
        child: usize,
    }
    let mut levels = vec![Level { ops: 0, child: 0 }];
    // Levels on the open path: one per open parenthesis and per operator
    // directly inside one of them; plus the deepest group closed so far.
    let (mut open_path, mut deepest_closed) = (0usize, 0usize);
    let (mut in_braces, mut in_brackets) = (false, false);
    for lexeme in lexer.iter() {
        let Ok(lexeme) = lexeme else {
            return Ok(());
        };
        let tok = lexeme.tok_id();
        let span = lexeme.span();
        // Label matchers: `=~` and friends there are not operators.
        match tok {
            T_LEFT_BRACE => in_braces = true,
            T_RIGHT_BRACE => in_braces = false,
            _ if in_braces => {}
            T_LEFT_PAREN => {
                levels.push(Level { ops: 0, child: 0 });
                open_path += 1;
            }
            T_RIGHT_PAREN if levels.len() > 1 => {
                let Some(l) = levels.pop() else { continue };
                let value = 1 + l.ops + l.child;
                open_path -= 1 + l.ops;
                if let Some(parent) = levels.last_mut() {
                    parent.child = parent.child.max(value);
                }
                deepest_closed = deepest_closed.max(value);
            }
            T_DURATION if !duration_in_range(lexer.span_str(span)) => {
                return Err(positioned(q, span.start(), "duration out of range"));
            }
            // Seconds as a plain number (`[300]`): promql-parser's
            // `Duration::from_secs_f64` panics on one out of range.
            T_NUMBER if in_brackets => {
                let secs = lexer.span_str(span).parse::<f64>().unwrap_or(0.0);
                if !(0.0..1e15).contains(&secs) {
                    return Err(positioned(q, span.start(), "duration out of range"));
                }
            }
            // Prometheus parses numbers with Go's ParseFloat, which refuses
            // a finite spelling that overflows (`1e999999`); promql-parser
            // would take it as Inf. `Inf` itself is a number.
            T_NUMBER => {
                let text = lexer.span_str(span);
                let overflows = text.parse::<f64>().is_ok_and(f64::is_infinite)
                    && !text.to_ascii_lowercase().starts_with("inf");
                if overflows {
                    return Err(positioned(
                        q,
                        span.start(),
                        &format!(
                            "error parsing number: strconv.ParseFloat: parsing {text:?}: value out of range"
                        ),
                    ));
                }
            }
            T_RIGHT_BRACKET => in_brackets = false,
            _ if tok == T_LEFT_BRACKET || TokenType::new(tok).is_operator() => {
                in_brackets |= tok == T_LEFT_BRACKET;
                if let Some(l) = levels.last_mut() {
                    l.ops += 1;
                }
                open_path += 1;
            }
            _ => {}
        }
        if open_path + deepest_closed > MAX_DEPTH {
            return Err(positioned(
                q,
                span.start(),
                &format!(
                    "query is nested too deeply: more than {MAX_DEPTH} levels of parentheses, brackets and operators"
                ),
            ));
        }
    }
    Ok(())
}

/// promql-parser reads each number of a duration as a u32 and takes one
/// that does not fit as zero (`[99999999999999y]` "must be greater than
/// 0", `[5000000000s1m]` silently one minute); Prometheus' own rule for
/// the sum is `model.ParseDuration`'s.
fn duration_in_range(text: &str) -> bool {
    let too_big = text
        .split(|c: char| !c.is_ascii_digit())
        .any(|digits| !digits.is_empty() && digits.parse::<u32>().is_err());
    let sum_too_big = matches!(
        crate::model::duration::parse(text),
        Err(crate::model::DurationError::OutOfRange)
    );
    !(too_big || sum_too_big)
}

/// The depth of `e`'s tree, walked without recursion.
pub fn depth(e: &Expr) -> usize {
    let mut max = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
                stack.push((&a.expr, d + 1));
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => {
                for a in &c.args.args {
                    stack.push((a, d + 1));
                }
            }
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }
    max
}

/// Runs `f` (a walk over `e`) where the stack is sure to hold it: in place
/// for shallow trees, on a thread with [`DEEP_STACK`] bytes of stack for
/// deep ones (up to [`MAX_DEPTH`], which `check` enforces on every query).
pub fn on_deep_stack<R: Send>(
    e: &Expr,
    f: impl FnOnce() -> Result<R, super::EvalError> + Send,
) -> Result<R, super::EvalError> {
    if depth(e) <= IN_PLACE_DEPTH {
        return f();
    }
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("wasmon-deep-query".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(s, f)
            .map_err(|e| {
                super::EvalError::Eval(format!("cannot start a thread for a deep query: {e}"))
            })?;
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// promql-parser's text for a query it could not parse at all.
const SYNTAX_ERROR: &str = "invalid promql query";

/// promql-parser's `parse`, with a panic inside it made an error: 0.11
/// panics on some out-of-range literals (a range of `11e400` goes through
/// `Duration::from_secs_f64`; found by fuzzing). [`check`] rejects those
/// it knows of first; this is the net for the rest. The error is
/// promql-parser's own message (a `String`, its API's type), which
/// [`locate`] positions.
pub(crate) fn parse_unpositioned(q: &str) -> Result<Expr, String> {
    std::panic::catch_unwind(|| promql_parser::parser::parse(q))
        .unwrap_or_else(|_| Err("a number or duration is out of range".into()))
}

/// promql-parser's error `msg` for `q` (which carries no position) in
/// Prometheus' form, with the position of what it is about.
pub fn locate(q: &str, msg: &str) -> ParseError {
    if msg.starts_with("no expression found in input") {
        return positioned(q, 0, "no expression found in input");
    }
    // From the lexer or the grammar alike (`up offset`: "unexpected end of
    // input in offset, expected duration").
    if msg.starts_with("unexpected end of input") {
        return positioned(q, q.len(), msg);
    }
    match promql_parser::parser::lex::lexer(q) {
        Err(lex) if lex == msg => positioned(q, lex_error_at(q, msg), msg),
        Err(_) => positioned(q, 0, msg),
        Ok(lexer) => {
            let tokens: Vec<(u16, usize, usize)> = lexer
                .iter()
                .filter_map(Result::ok)
                .map(|l| (l.tok_id(), l.span().start(), l.span().end()))
                .collect();
            if msg == SYNTAX_ERROR {
                return syntax_error(q, &tokens);
            }
            let at = duration_at(q, &tokens, msg)
                .or_else(|| node_at(q, &tokens, msg))
                .or_else(|| tokens.first().map(|t| t.1))
                .unwrap_or(0);
            positioned(q, at, msg)
        }
    }
}

/// Where the lexer stopped with `msg`: the character that made the
/// shortest failing prefix fail (the lexer reads left to right, so every
/// longer prefix fails the same way and every shorter one does not), the
/// end of the input for errors about the end, the opening quote for an
/// unterminated string.
fn lex_error_at(q: &str, msg: &str) -> usize {
    let fails_so =
        |end: usize| matches!(promql_parser::parser::lex::lexer(&q[..end]), Err(m) if m == msg);
    if let Some(quote) = msg.strip_prefix("unterminated quoted string ") {
        // Shorter prefixes cut inside an earlier string fail the same way,
        // so look for the quote nearest the end that opens a failing prefix.
        let quote = quote.chars().next();
        return q
            .char_indices()
            .rev()
            .filter(|&(_, c)| Some(c) == quote)
            .take(16)
            .find(|&(i, c)| fails_so(i + c.len_utf8()) && !fails_so(i))
            .map_or(q.len(), |(i, _)| i);
    }
    if msg.contains("end of input")
        || msg.contains("at the end")
        || msg.contains("not terminated")
        || msg == "unclosed left parenthesis"
    {
        return q.len();
    }
    let ends: Vec<(usize, usize)> = q
        .char_indices()
        .map(|(i, c)| (i, i + c.len_utf8()))
        .collect();
    let (mut lo, mut hi) = (0, ends.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails_so(ends[mid].1) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let Some(&(at, end)) = ends.get(lo) else {
        return q.len();
    };
    // "bad number or duration syntax: 1y1y" is found at its last
    // character: point at its first, as Prometheus does.
    msg.rsplit_once(": ")
        .and_then(|(_, text)| q[..end].strip_suffix(text))
        .map_or(at, str::len)
}

/// A duration in brackets the parser refuses (`[0s]`, `[5m:0s]`: "duration
/// must be greater than 0"): the first one refused with `msg`.
fn duration_at(q: &str, tokens: &[(u16, usize, usize)], msg: &str) -> Option<usize> {
    let mut in_brackets = false;
    tokens.iter().find_map(|&(tok, start, end)| {
        match tok {
            T_LEFT_BRACKET => in_brackets = true,
            T_RIGHT_BRACKET => in_brackets = false,
            T_DURATION | T_NUMBER if in_brackets => {
                let refused = promql_parser::util::duration::parse_duration(&q[start..end]);
                if matches!(refused, Err(m) if m == msg) {
                    return Some(start);
                }
            }
            _ => {}
        }
        None
    })
}

/// Where the expression an error of the parser's grammar actions
/// (`expected 1 argument(s) in call to 'abs', got 2`) is about starts: the
/// innermost parenthesized group or call, first to end, whose text alone
/// fails with the same message; `None` when no group does (the error is
/// about the whole query).
fn node_at(q: &str, tokens: &[(u16, usize, usize)], msg: &str) -> Option<usize> {
    // Each is tried with a parse of its own text: bound the work.
    const MAX_TRIES: usize = 64;
    let mut opens = Vec::new();
    let mut candidates = Vec::new();
    let mut braces = Vec::new();
    let mut brace = None;
    for (i, &(tok, start, end)) in tokens.iter().enumerate() {
        match tok {
            // Matchers (`{a=~"("}`: "illegal regex"): the selector alone,
            // reported at the first matcher.
            T_LEFT_BRACE => brace = Some(i),
            T_RIGHT_BRACE => {
                if let Some(open) = brace.take() {
                    let first_inside = tokens.get(open + 1).map_or(start, |t| t.1);
                    braces.push((tokens[open].1, end, first_inside));
                }
            }
            T_LEFT_PAREN => opens.push(i),
            T_RIGHT_PAREN => {
                let Some(open) = opens.pop() else { continue };
                let inner = tokens.get(open + 1).map_or(start, |t| t.1);
                candidates.push((inner, start));
                // A call or aggregation: the name before the parenthesis.
                let head = match open.checked_sub(1).map(|p| tokens[p]) {
                    Some((t, s, _)) if t != T_RIGHT_PAREN && !TokenType::new(t).is_operator() => s,
                    _ => tokens[open].1,
                };
                candidates.push((head, end));
            }
            _ => {}
        }
    }
    let fails_so = |start: usize, end: usize| {
        start < end && matches!(parse_unpositioned(&q[start..end]), Err(m) if m == msg)
    };
    let mut tries = 0..MAX_TRIES;
    if let Some(&(_, _, at)) = braces
        .iter()
        .find(|&&(open, end, _)| tries.next().is_some() && fails_so(open, end))
    {
        return Some(at);
    }
    candidates.sort_by_key(|&(start, end)| (end, std::cmp::Reverse(start)));
    candidates
        .into_iter()
        .take_while(|_| tries.next().is_some())
        .find(|&(start, end)| fails_so(start, end))
        .map(|(start, _)| start)
}

/// promql-parser's grammar (a copy of its `src/parser/promql.y`, 0.11.1)
/// with its tables, built once, the first time a query fails to parse.
/// `None` if they cannot be built or the grammar's token numbers are not
/// the lexer's (a promql-parser upgrade without updating the copy).
struct Grammar {
    grm: cfgrammar::yacc::YaccGrammar<u16>,
    table: lrtable::StateTable<u16>,
}

fn grammar() -> Option<&'static Grammar> {
    static G: std::sync::OnceLock<Option<Grammar>> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        use promql_parser::parser::token::{T_ADD, T_IDENTIFIER, T_RIGHT_BRACKET, T_SUM};
        let grm = cfgrammar::yacc::YaccGrammar::<u16>::new_with_storaget(
            cfgrammar::yacc::YaccKind::Grmtools,
            include_str!("promql.y"),
        )
        .ok()?;
        let same_numbers = [
            ("ADD", T_ADD),
            ("IDENTIFIER", T_IDENTIFIER),
            ("RIGHT_BRACKET", T_RIGHT_BRACKET),
            ("SUM", T_SUM),
            ("DURATION", T_DURATION),
        ]
        .iter()
        .all(|&(name, id)| grm.token_idx(name).map(|t| t.as_storaget()) == Some(id));
        if !same_numbers {
            tracing::warn!(
                "promql.y does not match promql-parser's tokens; syntax errors have no position"
            );
            return None;
        }
        let (_, table) = lrtable::from_yacc(&grm, lrtable::Minimiser::Pager).ok()?;
        Some(Grammar { grm, table })
    })
    .as_ref()
}

/// A query the grammar rejects (promql-parser says only "invalid promql
/// query"): the token the LR parser stopped at, as Prometheus words it
/// (`unexpected identifier "bar"`, `unexpected end of input`).
fn syntax_error(q: &str, tokens: &[(u16, usize, usize)]) -> ParseError {
    let Some(g) = grammar() else {
        return positioned(q, 0, SYNTAX_ERROR);
    };
    let Ok(lexer) = promql_parser::parser::lex::lexer(q) else {
        return positioned(q, 0, SYNTAX_ERROR);
    };
    #[allow(deprecated)] // parse_map needs action types we do not have
    let errors = lrpar::RTParserBuilder::new(&g.grm, &g.table)
        .recoverer(lrpar::RecoveryKind::None)
        .parse_noaction(&lexer);
    let Some(lrpar::LexParseError::ParseError(e)) = errors.into_iter().next() else {
        return positioned(q, 0, SYNTAX_ERROR);
    };
    let span = e.lexeme().span();
    // The parser's end-of-input lexeme is faulty (it has no text).
    if e.lexeme().faulty() || span.start() >= q.len() || !tokens.iter().any(|t| t.1 == span.start())
    {
        return positioned(q, q.len(), "unexpected end of input");
    }
    let text = &q[span.start()..span.end()];
    let tok = e.lexeme().tok_id();
    let what = match g.grm.token_name(cfgrammar::TIdx(tok)) {
        Some("IDENTIFIER" | "METRIC_IDENTIFIER") => format!("identifier {text:?}"),
        Some("NUMBER") => format!("number {text:?}"),
        Some("DURATION") => format!("duration {text:?}"),
        Some("STRING") => format!("string {text:?}"),
        _ => format!("{text:?}"),
    };
    positioned(q, span.start(), &format!("unexpected {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{parse_query, Engine, EngineOpts};
    use crate::storage::MemStorage;

    fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    }

    /// Queries at the nesting limit in each shape that recurses (groups,
    /// unary and binary chains, calls, aggregations, subqueries, both
    /// associativities), sized to exactly [`MAX_DEPTH`] levels.
    fn at_the_limit() -> Vec<(&'static str, String)> {
        let m = MAX_DEPTH;
        vec![
            ("parens", nested("(", "1", ")", m)),
            ("unary", format!("{}up", "-".repeat(m))),
            ("sum chain", format!("up{}", " + up".repeat(m))),
            ("pow chain", format!("2{}", " ^ 1".repeat(m))),
            ("comparisons", format!("1{}", " == bool 1".repeat(m))),
            ("calls", nested("abs(", "up", ")", m)),
            ("aggregations", nested("sum(", "up", ")", m)),
            // One step per subquery, so the work stays linear in the depth.
            (
                "subqueries",
                nested("max_over_time(", "up", "[30s:30s])", m / 2),
            ),
            ("mixed", nested("-(", "up", " + 1)", m / 3)),
        ]
    }

    #[test]
    fn queries_at_the_limit_parse() {
        for (shape, q) in at_the_limit() {
            let e = parse_query(&q).unwrap_or_else(|e| panic!("{shape}: {e}"));
            assert!(depth(&e) <= MAX_DEPTH + 1, "{shape}: depth {}", depth(&e));
        }
    }

    /// One level more is refused with the limit and the position of the
    /// token that crossed it; 50,000 levels (the query that killed the
    /// agent) the same, before the parser builds anything.
    #[test]
    fn deeper_queries_are_refused_with_the_limit_and_position() {
        let m = MAX_DEPTH;
        let over = [
            (nested("(", "1", ")", m + 1), "1:1001:"),
            (nested("(", "1", ")", 50_000), "1:1001:"),
            (format!("{}up", "-".repeat(50_000)), "1:1001:"),
            (format!("1{}", "+1".repeat(50_000)), "1:2002:"),
            (nested("abs(", "up", ")", m + 1), "1:4004:"),
            // A comment or a string full of parentheses is not nesting; the
            // position counts lines.
            (
                format!("# {}\n{}", "(".repeat(5000), nested("(", "1", ")", m + 1)),
                "2:1001:",
            ),
        ];
        for (q, at) in over {
            let e = parse_query(&q).unwrap_err().to_string();
            assert!(e.starts_with(at), "{at} {e}");
            assert!(
                e.ends_with("parse error: query is nested too deeply: more than 1000 levels of parentheses, brackets and operators"),
                "{e}"
            );
        }
        let s = format!(
            "label_replace(up, \"a\", \"{}\", \"c\", \"d\")",
            "(".repeat(50_000)
        );
        assert!(parse_query(&s).is_ok());
        assert!(parse_query(&format!("up{{a=\"{}\"}}", "(".repeat(50_000))).is_ok());
    }

    /// The evaluator recurses too: at the limit, instant and range queries
    /// finish on a thread with a tokio worker's 2 MiB stack (in a debug
    /// build too), and the tree is dropped there.
    #[test]
    fn evaluation_at_the_limit_fits_a_worker_stack() {
        let s = MemStorage::new();
        let up = crate::model::Labels::from_pairs([("__name__", "up")]);
        for t in 0..20 {
            s.append(up.clone(), t * 15_000, 1.0);
        }
        let engine = Engine::new(EngineOpts::default());
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for (shape, q) in at_the_limit() {
                    let e = parse_query(&q).unwrap();
                    engine
                        .instant(&s, &e, 300_000)
                        .unwrap_or_else(|e| panic!("{shape}: {e}"));
                    engine
                        .range(&s, &e, 0, 300_000, 60_000)
                        .unwrap_or_else(|e| panic!("{shape}: {e}"));
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// promql-parser's errors carry no position; each names one as
    /// Prometheus 2.42 does for the same query (texts compared side by side;
    /// where promql-parser words the message differently, its words stay).
    #[test]
    fn parse_errors_name_their_position() {
        for (q, want) in [
            ("sum(", "1:5: parse error: unclosed left parenthesis"),
            ("up{", "1:4: parse error: unexpected end of input inside braces"),
            ("up{a=}", "1:6: parse error: unexpected \"}\""),
            ("1 +", "1:4: parse error: unexpected end of input"),
            ("foo bar", "1:5: parse error: unexpected identifier \"bar\""),
            ("sum(up) by", "1:11: parse error: unexpected end of input"),
            ("up offset", "1:10: parse error: unexpected end of input in offset, expected duration"),
            ("up[99999999999999y]", "1:4: parse error: duration out of range"),
            ("up[5000000000s]", "1:4: parse error: duration out of range"),
            ("up[11e400]", "1:4: parse error: duration out of range"),
            ("1e999999", "1:1: parse error: error parsing number: strconv.ParseFloat: parsing \"1e999999\": value out of range"),
            ("-1e999999", "1:2: parse error: error parsing number: strconv.ParseFloat: parsing \"1e999999\": value out of range"),
            ("up[0s]", "1:4: parse error: duration must be greater than 0"),
            ("rate(up[5m:0s])", "1:12: parse error: duration must be greater than 0"),
            ("up{a=\"b}", "1:6: parse error: unterminated quoted string \""),
            ("\"a\" + \"b", "1:7: parse error: unterminated quoted string \""),
            ("up $", "1:4: parse error: unexpected character: '$'"),
            ("up offset -5y5", "1:12: parse error: bad number or duration syntax: 5y5"),
            ("1 +\n  )", "2:3: parse error: unexpected right parenthesis ')'"),
            ("", "1:1: parse error: no expression found in input"),
            ("topk(up)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"),
            ("sum(abs(up, up))", "1:5: parse error: expected 1 argument(s) in call to 'abs', got 2"),
            ("up{a!~\"(\"}", "1:4: parse error: illegal regex for ("),
        ] {
            assert_eq!(parse_query(q).unwrap_err().to_string(), want, "{q:?}");
        }
    }

    /// The position is data, not only text: callers (an editor, the API)
    /// read line and column; the engine's error wraps the same value.
    #[test]
    fn parse_errors_are_typed() {
        let e = parse_query("1 +\n  )").unwrap_err();
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 3, "unexpected right parenthesis ')'")
        );
        assert_eq!(
            crate::promql::parse("1 +\n  )").unwrap_err(),
            crate::promql::EvalError::Parse(e)
        );
    }

    #[test]
    fn positions_count_lines_and_bytes() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    /// The copy of promql-parser's grammar numbers its tokens as the
    /// parser's lexer does (else syntax errors lose their position).
    #[test]
    fn the_grammar_copy_matches_the_parser() {
        assert!(grammar().is_some());
    }
}

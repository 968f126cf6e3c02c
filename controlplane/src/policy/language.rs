//! The oslo.policy rule language: parsing and evaluation of check strings. The
//! [`Enforcer`](super::Enforcer) keeps one parsed [`Check`] per rule name.
//!
//! | syntax | true when |
//! |---|---|
//! | `""`, `@` | always |
//! | `!` | never |
//! | `rule:name` | the named rule is true |
//! | `role:admin` | the caller has the role (case-insensitive; `%(…)s` substituted) |
//! | `project_id:%(owner)s` | the caller's credential `project_id` equals the target's `owner` |
//! | `'shared':%(visibility)s` | the literal equals the target's value |
//! | `is_admin:True` | the credential `is_admin` is `True` |
//! | `a and b`, `a or b`, `not a`, `( … )` | as usual; `not` binds tighter than `and`, `and` than `or` |
//!
//! A `%(key)s` the target lacks makes the check false (oslo's `KeyError`); a target value of
//! `None` substitutes the string `None`, as Python's `%` does.

use std::collections::BTreeMap;

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `@` or empty.
    Always,
    /// `!`.
    Never,
    /// `rule:name`.
    Rule(String),
    /// `role:x`.
    Role(String),
    /// `kind:match` (credential or quoted literal on the left, template on the right).
    Generic {
        /// Left side: a credential name, or a quoted literal.
        kind: String,
        /// Right side, may contain `%(key)s`.
        pattern: String,
    },
    /// `not x`.
    Not(Box<Check>),
    /// `a and b and …`.
    And(Vec<Check>),
    /// `a or b or …`.
    Or(Vec<Check>),
}

/// What a rule is evaluated against: the caller's credentials and the target's attributes.
pub trait Env {
    /// A credential (`project_id`, `user_id`, `is_admin`, …); lists (roles) are not here.
    fn credential(&self, key: &str) -> Option<String>;
    /// Whether the caller has `role` (case-insensitive).
    fn has_role(&self, role: &str) -> bool;
    /// A target attribute; `Some(None)` is a present key whose value is Python `None`.
    fn target(&self, key: &str) -> Option<Option<String>>;
    /// Another rule by name (`rule:x`); unknown rules are false.
    fn rule(&self, name: &str) -> Option<&Check>;
}

/// A syntax error, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Atom(String),
}

/// oslo's tokenizer: split on whitespace, then peel `(` off the front and `)` off the back
/// of each word (so `%(owner)s` stays inside its check).
fn tokenize(s: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    for word in s.split_whitespace() {
        let clean = word.trim_start_matches('(');
        out.extend(std::iter::repeat_n(Token::Open, word.len() - clean.len()));
        if clean.is_empty() {
            continue;
        }
        let body = clean.trim_end_matches(')');
        let closes = clean.len() - body.len();
        if !body.is_empty() {
            let quotes = body.chars().filter(|c| *c == '\'' || *c == '"').count();
            if quotes % 2 != 0 {
                return Err(ParseError(format!("unclosed quote in {s:?}")));
            }
            out.push(match body.to_ascii_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                _ => Token::Atom(body.to_owned()),
            });
        }
        out.extend(std::iter::repeat_n(Token::Close, closes));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Check, ParseError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Check::Or(items)
        })
    }

    fn and(&mut self) -> Result<Check, ParseError> {
        let mut items = vec![self.not()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Check::And(items)
        })
    }

    fn not(&mut self) -> Result<Check, ParseError> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            return Ok(Check::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Check, ParseError> {
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(ParseError("missing ')'".into()));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Atom(word)) => {
                self.pos += 1;
                parse_atom(&word)
            }
            Some(t) => Err(ParseError(format!("unexpected {t:?}"))),
            None => Err(ParseError("unexpected end of rule".into())),
        }
    }
}

fn parse_atom(word: &str) -> Result<Check, ParseError> {
    match word {
        "@" => return Ok(Check::Always),
        "!" => return Ok(Check::Never),
        _ => {}
    }
    let (kind, pattern) = word
        .split_once(':')
        .ok_or_else(|| ParseError(format!("{word:?} is not a check (expected kind:match)")))?;
    if kind.is_empty() {
        return Err(ParseError(format!("{word:?} has an empty kind")));
    }
    Ok(match kind {
        "rule" => Check::Rule(pattern.to_owned()),
        "role" => Check::Role(pattern.to_owned()),
        _ => Check::Generic {
            kind: kind.to_owned(),
            pattern: pattern.to_owned(),
        },
    })
}

/// Parses a rule string.
pub fn parse(rule: &str) -> Result<Check, ParseError> {
    let tokens = tokenize(rule)?;
    if tokens.is_empty() {
        return Ok(Check::Always);
    }
    let mut p = Parser { tokens, pos: 0 };
    let check = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(ParseError(format!(
            "unexpected {:?} in {rule:?}",
            p.tokens[p.pos]
        )));
    }
    Ok(check)
}

/// `%(key)s` substitution; `None` when a key is missing from the target.
fn substitute(pattern: &str, env: &dyn Env) -> Option<String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(")s")?;
        let key = &after[..end];
        match env.target(key)? {
            Some(v) => out.push_str(&v),
            None => out.push_str("None"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

fn unquote(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        Some(&s[1..s.len() - 1])
    } else {
        None
    }
}

/// Evaluates `check` (depth-limited so a rule cycle in a policy file is false, not a hang).
pub fn eval(check: &Check, env: &dyn Env) -> bool {
    eval_depth(check, env, 0)
}

fn eval_depth(check: &Check, env: &dyn Env, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    match check {
        Check::Always => true,
        Check::Never => false,
        Check::Rule(name) => env
            .rule(name)
            .is_some_and(|c| eval_depth(c, env, depth + 1)),
        Check::Role(pattern) => substitute(pattern, env).is_some_and(|r| env.has_role(&r)),
        Check::Generic { kind, pattern } => {
            let Some(want) = substitute(pattern, env) else {
                return false;
            };
            if let Some(literal) = unquote(kind) {
                return literal == want;
            }
            match kind.as_str() {
                "True" | "False" | "None" => kind == &want,
                _ => env.credential(kind).is_some_and(|have| have == want),
            }
        }
        Check::Not(inner) => !eval_depth(inner, env, depth + 1),
        Check::And(items) => items.iter().all(|c| eval_depth(c, env, depth + 1)),
        Check::Or(items) => items.iter().any(|c| eval_depth(c, env, depth + 1)),
    }
}

/// Parses an operator policy file: a YAML mapping of rule name to check string (oslo's
/// `policy.yaml`; JSON, being YAML, works too). Returns every error found.
pub fn parse_policy_file(text: &str) -> Result<BTreeMap<String, String>, Vec<String>> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).map_err(|e| vec![format!("not valid YAML: {e}")])?;
    let Some(doc) = docs.into_iter().next() else {
        return Ok(BTreeMap::new());
    };
    let map = match doc {
        Yaml::Hash(map) => map,
        Yaml::Null => return Ok(BTreeMap::new()),
        _ => {
            return Err(vec![
                "the policy file must be a mapping of rule name to rule".into(),
            ]);
        }
    };
    let mut rules = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in map {
        let Yaml::String(name) = key else {
            errors.push(format!("rule name {key:?} is not a string"));
            continue;
        };
        match value {
            Yaml::String(check) => {
                rules.insert(name, check);
            }
            Yaml::Null => {
                rules.insert(name, String::new());
            }
            other => errors.push(format!(
                "rule {name:?}: the check must be a string, got {other:?}"
            )),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct E {
        creds: HashMap<&'static str, &'static str>,
        roles: Vec<&'static str>,
        target: HashMap<&'static str, Option<&'static str>>,
        rules: HashMap<String, Check>,
    }

    impl Env for E {
        fn credential(&self, key: &str) -> Option<String> {
            self.creds.get(key).map(|s| s.to_string())
        }
        fn has_role(&self, role: &str) -> bool {
            self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
        }
        fn target(&self, key: &str) -> Option<Option<String>> {
            self.target.get(key).map(|v| v.map(str::to_owned))
        }
        fn rule(&self, name: &str) -> Option<&Check> {
            self.rules.get(name)
        }
    }

    fn env() -> E {
        E {
            creds: [
                ("project_id", "p1"),
                ("user_id", "u1"),
                ("is_admin", "False"),
            ]
            .into_iter()
            .collect(),
            roles: vec!["member", "reader"],
            target: [
                ("owner", Some("p1")),
                ("project_id", Some("p1")),
                ("visibility", Some("shared")),
                ("member_id", None),
            ]
            .into_iter()
            .collect(),
            rules: [
                ("yes".to_owned(), Check::Always),
                ("admin".to_owned(), parse("role:admin").unwrap()),
                ("loop".to_owned(), parse("rule:loop").unwrap()),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn evaluation_table() {
        let e = env();
        let table: &[(&str, bool)] = &[
            ("", true),
            ("@", true),
            ("!", false),
            ("role:member", true),
            ("role:MEMBER", true),
            ("role:admin", false),
            ("project_id:%(owner)s", true),
            ("project_id:%(member_id)s", false),
            ("project_id:%(missing)s", false),
            ("user_id:u1", true),
            ("'shared':%(visibility)s", true),
            ("'public':%(visibility)s", false),
            ("\"shared\":%(visibility)s", true),
            ("is_admin:True", false),
            ("is_admin:False", true),
            ("rule:yes", true),
            ("rule:admin", false),
            ("rule:unknown", false),
            ("rule:loop", false),
            ("not role:admin", true),
            ("role:admin or role:member", true),
            ("role:admin and role:member", false),
            ("role:admin or role:member and project_id:%(owner)s", true),
            (
                "(role:admin or role:member) and not project_id:%(owner)s",
                false,
            ),
            (
                "rule:admin or (role:member and project_id:%(project_id)s)",
                true,
            ),
            (
                "role:reader and (project_id:%(project_id)s or 'public':%(visibility)s)",
                true,
            ),
            ("not not @", true),
            ("role:%(owner)s", false),
        ];
        for (rule, want) in table {
            let c = parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            assert_eq!(eval(&c, &e), *want, "{rule} → {c:?}");
        }
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "role",
            "(role:a",
            "role:a)",
            "role:a and",
            "and role:a",
            "'x:y",
            ":x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_files() {
        let yaml = "# operator overrides\n---\n\"get_image\": \"role:admin\"\n'publicize_image': 'role:admin or role:member'  # comment\ndelete_image: \"!\"\n\"default\": \"\"\n";
        let rules = parse_policy_file(yaml).unwrap();
        assert_eq!(rules["get_image"], "role:admin");
        assert_eq!(rules["publicize_image"], "role:admin or role:member");
        assert_eq!(rules["delete_image"], "!");
        assert_eq!(rules["default"], "");
        let json = r#"{"get_image": "@", "add_image": "role:admin"}"#;
        assert_eq!(parse_policy_file(json).unwrap()["get_image"], "@");
        let folded = "get_image: >-\n  role:admin or\n  role:reader\n";
        assert_eq!(
            parse_policy_file(folded).unwrap()["get_image"],
            "role:admin or role:reader"
        );
        let errs = parse_policy_file("a: [1]\nb: {c: d}\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(parse_policy_file("a: b\nnonsense\n").is_err());
        assert!(parse_policy_file("- a\n- b\n").is_err());
    }
}

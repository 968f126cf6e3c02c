//! Property definitions: the JSON-schema fragments a metadef property (or a property of a
//! metadef object) is, checked the way Glance checks them and normalized the way Glance
//! stores them.
//!
//! Glance checks a definition twice: against its JSON schema (`glance/api/v2/
//! metadef_namespaces.py`, `get_schema_definitions()['property']`: the keys, their types,
//! `type` one of [`TYPES`], lengths ≥ 0, …), then by converting it to its WSME model
//! `PropertyType` (`glance/api/v2/model/metadef_property_type.py`), which refuses keys the
//! model lacks, wants `enum` values to be strings and `items` to have a `type`. Where Glance
//! answers 500 for what the model refuses, glint answers 400. The model also normalizes:
//!
//! - `minimum`/`maximum` are integers (a number is truncated: `1.9` → `1`);
//! - `default` is a string: a number or boolean as Python prints it (`100` → `"100"`,
//!   `true` → `"True"`), an array or object becomes `null`;
//! - `confidential` (accepted only where the schema lets unknown keys through) is a boolean.
//!
//! Which keys a definition may have depends on where it is ([`Where`]): a property posted on
//! its own, or the properties of a new object, are checked by the property schema, which
//! refuses every key it does not list; the properties inside a namespace body or an object
//! update are checked only by the namespace/object schema, which lets the model's
//! `confidential` through.

use super::super::Error;
use serde_json::{Map, Value};

/// The values `type` (and `items.type`) may take.
pub const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Keys the property schema knows.
const SCHEMA_KEYS: [&str; 19] = [
    "name",
    "title",
    "description",
    "operators",
    "type",
    "required",
    "minimum",
    "maximum",
    "maxLength",
    "minLength",
    "pattern",
    "enum",
    "readonly",
    "default",
    "items",
    "maxItems",
    "minItems",
    "uniqueItems",
    "additionalItems",
];

/// Keys of Glance's `PropertyType` model (what survives the conversion).
const MODEL_KEYS: [&str; 19] = [
    "name",
    "type",
    "title",
    "description",
    "operators",
    "default",
    "readonly",
    "minimum",
    "maximum",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "confidential",
    "items",
    "uniqueItems",
    "minItems",
    "maxItems",
    "additionalItems",
];

/// Longest property name (Glance's schema and column: 80).
pub const NAME_MAX: usize = 80;

/// Where a definition is checked, which decides the keys it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// `POST`/`PUT …/properties[/{name}]` (then `name` is required too) and the properties of
    /// `POST …/objects`: Glance's property schema, which refuses unknown keys.
    Standalone {
        /// Whether `name` must be present.
        require_name: bool,
    },
    /// The properties of a namespace body or of `PUT …/objects/{name}`: only the model's
    /// keys are refused, so `confidential` is allowed.
    Nested,
}

/// A checked, normalized property definition: a JSON object as Glance stores and shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyDef(Map<String, Value>);

impl PropertyDef {
    /// Checks `value` as a definition found at `at`, and normalizes it.
    pub fn parse(value: &Value, place: Where, at: &At<'_>) -> Result<PropertyDef, Error> {
        let Value::Object(body) = value else {
            return Err(at.fail(
                "type",
                format!("{} is not of type 'object'", py_repr(value)),
            ));
        };
        if let Where::Standalone { .. } = place {
            let unexpected: Vec<&str> = body
                .keys()
                .map(String::as_str)
                .filter(|k| !SCHEMA_KEYS.contains(k))
                .collect();
            if !unexpected.is_empty() {
                return Err(at.fail("additionalProperties", additional(&unexpected)));
            }
        }
        let require_name = matches!(place, Where::Standalone { require_name: true });
        for key in ["type", "title"]
            .into_iter()
            .chain(require_name.then_some("name"))
        {
            if !body.contains_key(key) {
                return Err(at.fail("required", format!("'{key}' is a required property")));
            }
        }
        let mut out = Map::new();
        for (key, v) in body {
            let here = at.key(key);
            let normalized = match key.as_str() {
                "name" => Value::String(here.string(v, Some(NAME_MAX))?),
                "title" | "description" | "pattern" => Value::String(here.string(v, None)?),
                "type" => Value::String(here.property_type(v)?),
                "operators" => here.string_array(v)?,
                "required" => {
                    here.unique_string_array(v, 1)?;
                    return Err(at.unknown(&["required"]));
                }
                "minimum" | "maximum" => here.number_as_integer(v)?,
                "maxLength" | "minLength" | "maxItems" | "minItems" => {
                    Value::from(here.non_negative_integer(v)?)
                }
                "enum" => {
                    here.array(v)?;
                    here.model_strings(v)?
                }
                "readonly" | "uniqueItems" | "additionalItems" => Value::Bool(here.boolean(v)?),
                "default" => model_bytes(v),
                "items" => Value::Object(items(v, &here)?),
                "confidential" => Value::Bool(here.model_bool(v)?),
                _ => continue,
            };
            out.insert(key.clone(), normalized);
        }
        let unknown: Vec<&str> = body
            .keys()
            .map(String::as_str)
            .filter(|k| !MODEL_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(at.unknown(&unknown));
        }
        Ok(PropertyDef(out))
    }

    /// A definition as stored (no check: what was stored was checked).
    pub fn from_stored(map: Map<String, Value>) -> PropertyDef {
        PropertyDef(map)
    }

    /// The definition's keys and values.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The definition as shown for a property named `name` (its `name` key set to it).
    pub fn named(&self, name: &str) -> Map<String, Value> {
        let mut m = self.0.clone();
        m.insert("name".into(), Value::String(name.to_owned()));
        m
    }
}

/// The `items` of an array property: Glance's `ItemType` (`type` required, `enum` strings).
fn items(v: &Value, at: &At<'_>) -> Result<Map<String, Value>, Error> {
    let Value::Object(body) = v else {
        return Err(at.fail("type", format!("{} is not of type 'object'", py_repr(v))));
    };
    let mut out = Map::new();
    for (key, v) in body {
        let here = at.key(key);
        match key.as_str() {
            "type" => {
                out.insert(key.clone(), Value::String(here.property_type(v)?));
            }
            "enum" => {
                here.array(v)?;
                out.insert(key.clone(), here.model_strings(v)?);
            }
            _ => {}
        }
    }
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !["type", "enum"].contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(at.unknown(&unknown));
    }
    if !out.contains_key("type") {
        return Err(at.missing("type"));
    }
    Ok(out)
}

/// WSME's `bytes` conversion of `default`: strings stay, numbers and booleans become what
/// Python's `str()` prints, anything else `null`.
fn model_bytes(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.clone()),
        Value::Bool(b) => Value::String(if *b { "True" } else { "False" }.to_owned()),
        Value::Number(n) => Value::String(py_number(n)),
        Value::Null | Value::Array(_) | Value::Object(_) => Value::Null,
    }
}

/// Where in a body a value is, for error messages: the schema's name, the JSON-schema path
/// of the value's definition, and the model field (WSME's names).
#[derive(Debug, Clone)]
pub struct At<'a> {
    schema: &'a str,
    path: String,
    field: String,
}

impl<'a> At<'a> {
    /// The top level of a body checked by `schema` (`namespace`, `object`, `property`, …).
    pub fn top(schema: &'a str) -> At<'a> {
        At {
            schema,
            path: String::new(),
            field: schema.to_owned(),
        }
    }

    /// The definition path `path` (e.g. `['properties']['properties']`) under schema
    /// `schema`, naming model field `field`.
    pub fn nested(schema: &'a str, path: String, field: String) -> At<'a> {
        At {
            schema,
            path,
            field,
        }
    }

    /// The schema's name.
    pub fn schema_name(&self) -> &'a str {
        self.schema
    }

    /// The JSON-schema path of the definition here (`['properties']['name']`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The model field here (`namespace.properties.p1`).
    pub fn field_name(&self) -> &str {
        &self.field
    }

    /// The member `key` of the object here.
    pub fn key(&self, key: &str) -> At<'a> {
        At {
            schema: self.schema,
            path: format!("{}['properties']['{key}']", self.path),
            field: format!("{}.{key}", self.field),
        }
    }

    /// A JSON-schema refusal (`validator` failed with `reason`).
    pub fn fail(&self, validator: &str, reason: String) -> Error {
        Error::Invalid(format!(
            "Provided object does not match schema '{}': {reason}\n\nFailed validating \
             '{validator}' in schema{}",
            self.schema, self.path
        ))
    }

    /// The model has no such attributes.
    pub fn unknown(&self, keys: &[&str]) -> Error {
        let s = if keys.len() > 1 { "s" } else { "" };
        Error::Invalid(format!(
            "Unknown attribute{s} for argument {}: {}",
            self.field,
            keys.join(", ")
        ))
    }

    /// A mandatory model attribute is missing.
    pub fn missing(&self, key: &str) -> Error {
        Error::Invalid(format!(
            "Invalid input for field/attribute {key}. Value: 'None'. Mandatory field missing."
        ))
    }

    /// A string, at most `max` characters.
    pub fn string(&self, v: &Value, max: Option<usize>) -> Result<String, Error> {
        let Value::String(s) = v else {
            return Err(self.fail("type", format!("{} is not of type 'string'", py_repr(v))));
        };
        if let Some(max) = max
            && s.chars().count() > max
        {
            return Err(self.fail("maxLength", format!("{} is too long", py_repr(v))));
        }
        Ok(s.clone())
    }

    /// A boolean.
    pub fn boolean(&self, v: &Value) -> Result<bool, Error> {
        v.as_bool()
            .ok_or_else(|| self.fail("type", format!("{} is not of type 'boolean'", py_repr(v))))
    }

    /// An array (any items).
    pub fn array<'v>(&self, v: &'v Value) -> Result<&'v Vec<Value>, Error> {
        v.as_array()
            .ok_or_else(|| self.fail("type", format!("{} is not of type 'array'", py_repr(v))))
    }

    /// An array of strings.
    pub fn string_array(&self, v: &Value) -> Result<Value, Error> {
        for item in self.array(v)? {
            if !item.is_string() {
                return Err(self.fail("type", format!("{} is not of type 'string'", py_repr(item))));
            }
        }
        Ok(v.clone())
    }

    /// Glance's `stringArray`: strings, no two equal, at least `min_items`.
    pub fn unique_string_array(&self, v: &Value, min_items: usize) -> Result<Vec<String>, Error> {
        self.string_array(v)?;
        let items: Vec<String> = self
            .array(v)?
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect();
        if items.len() < min_items {
            return Err(self.fail("minItems", format!("{} should be non-empty", py_repr(v))));
        }
        let mut seen = std::collections::HashSet::new();
        if !items.iter().all(|i| seen.insert(i)) {
            return Err(self.fail(
                "uniqueItems",
                format!("{} has non-unique elements", py_repr(v)),
            ));
        }
        Ok(items)
    }

    /// A `type` value: a string in [`TYPES`].
    pub fn property_type(&self, v: &Value) -> Result<String, Error> {
        let s = self.string(v, None)?;
        if !TYPES.contains(&s.as_str()) {
            return Err(self.fail(
                "enum",
                format!(
                    "{} is not one of ['array', 'boolean', 'integer', 'number', 'object', \
                     'string', None]",
                    py_repr(v)
                ),
            ));
        }
        Ok(s)
    }

    /// A JSON number (not a boolean), kept as the model's integer: truncated toward zero.
    pub fn number_as_integer(&self, v: &Value) -> Result<Value, Error> {
        let Value::Number(n) = v else {
            return Err(self.fail("type", format!("{} is not of type 'number'", py_repr(v))));
        };
        if n.is_i64() || n.is_u64() {
            return Ok(v.clone());
        }
        let f = n.as_f64().unwrap_or_default().trunc();
        // i64::MAX as f64 rounds up to 2^63, which no longer fits
        Ok(if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
            Value::from(f as i64)
        } else {
            Value::from(f)
        })
    }

    /// An integer ≥ 0 (a float with no fraction counts, as in current JSON-schema drafts).
    pub fn non_negative_integer(&self, v: &Value) -> Result<i64, Error> {
        let not_integer = || self.fail("type", format!("{} is not of type 'integer'", py_repr(v)));
        let Value::Number(n) = v else {
            return Err(not_integer());
        };
        let i = match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i,
            (None, Some(_), _) => i64::MAX,
            (None, None, Some(f)) if f.fract() == 0.0 => {
                if f < 0.0 {
                    -1
                } else {
                    f.min(i64::MAX as f64) as i64
                }
            }
            _ => return Err(not_integer()),
        };
        if i < 0 {
            return Err(self.fail(
                "minimum",
                format!("{} is less than the minimum of 0", py_repr(v)),
            ));
        }
        Ok(i)
    }

    /// The model's list of text: every item a string.
    pub fn model_strings(&self, v: &Value) -> Result<Value, Error> {
        let items = self.array(v)?;
        if let Some(bad) = items.iter().find(|i| !i.is_string()) {
            return Err(Error::Invalid(format!(
                "Invalid input for field/attribute {}. Value: '{}'. Wrong type. Expected \
                 '<class 'str'>', got '{}'",
                self.field,
                py_repr(v),
                py_type(bad)
            )));
        }
        Ok(v.clone())
    }

    /// The model's boolean: a boolean, an integer (non-zero is true) or one of the strings
    /// WSME understands.
    pub fn model_bool(&self, v: &Value) -> Result<bool, Error> {
        let refused = || {
            Error::Invalid(format!(
                "Invalid input for field/attribute {}. Value: '{}'. Value not an unambiguous \
                 boolean: {}",
                self.field,
                py_repr(v),
                py_repr(v)
            ))
        };
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.as_i64().is_none_or(|i| i != 0)),
            Value::String(s) => match s.as_str() {
                "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
                "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
                _ => Err(refused()),
            },
            _ => Err(refused()),
        }
    }
}

/// JSON schema's "Additional properties are not allowed (… was unexpected)".
pub fn additional(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| py_str(k)).collect();
    let verb = if keys.len() == 1 { "was" } else { "were" };
    format!(
        "Additional properties are not allowed ({} {verb} unexpected)",
        quoted.join(", ")
    )
}

/// Python's `repr` of a JSON value (what Glance's error messages show).
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => py_number(n),
        Value::String(s) => py_str(s),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<class 'NoneType'>",
        Value::Bool(_) => "<class 'bool'>",
        Value::Number(n) if n.is_f64() => "<class 'float'>",
        Value::Number(_) => "<class 'int'>",
        Value::String(_) => "<class 'str'>",
        Value::Array(_) => "<class 'list'>",
        Value::Object(_) => "<class 'dict'>",
    }
}

/// Python's `repr` of a string: single quotes unless it holds one and no double quote.
fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A JSON number as Python prints it (`str()` and `repr()` agree for numbers).
fn py_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    py_float(n.as_f64().unwrap_or_default())
}

/// Python's `repr` of a float: the shortest digits that read back, fixed notation for
/// exponents -4…15 (always with a fraction: `100.0`), else `1.5e+16`, `1e-05`.
pub fn py_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7"
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn standalone(v: Value) -> Result<Map<String, Value>, Error> {
        PropertyDef::parse(
            &v,
            Where::Standalone { require_name: true },
            &At::top("property"),
        )
        .map(|d| d.0)
    }

    fn nested(v: Value) -> Result<Map<String, Value>, Error> {
        PropertyDef::parse(&v, Where::Nested, &At::top("namespace")).map(|d| d.0)
    }

    fn message(r: Result<Map<String, Value>, Error>) -> String {
        match r {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn python_floats() {
        for (f, want) in [
            (1.5, "1.5"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (1e22, "1e+22"),
        ] {
            assert_eq!(py_float(f), want, "{f}");
        }
        assert_eq!(
            py_repr(&json!({"a": [1, "it's", null, true]})),
            "{'a': [1, \"it's\", None, True]}"
        );
    }

    #[test]
    fn normalizes_as_glance_stores() {
        let got = standalone(json!({
            "name": "p", "type": "integer", "title": "t", "default": 100,
            "minimum": 1.9, "maximum": -2.7, "readonly": false, "minLength": 5.0,
        }))
        .unwrap();
        assert_eq!(got["default"], json!("100"));
        assert_eq!(got["minimum"], json!(1));
        assert_eq!(got["maximum"], json!(-2));
        assert_eq!(got["minLength"], json!(5));
        assert_eq!(got["readonly"], json!(false));
        for (default, want) in [
            (json!(true), json!("True")),
            (json!(1.5), json!("1.5")),
            (json!("x"), json!("x")),
            (json!([1]), Value::Null),
            (json!({"a": 1}), Value::Null),
            (Value::Null, Value::Null),
        ] {
            let got = nested(json!({"type": "string", "title": "t", "default": default})).unwrap();
            assert_eq!(got["default"], want);
        }
        let got = nested(json!({
            "type": "array", "title": "t", "confidential": "yes",
            "items": {"type": "string", "enum": ["a", "b"]}, "uniqueItems": true,
        }))
        .unwrap();
        assert_eq!(got["confidential"], json!(true));
        assert_eq!(got["items"], json!({"type": "string", "enum": ["a", "b"]}));
    }

    #[test]
    fn refuses_what_glance_refuses() {
        let base = || json!({"name": "p", "type": "string", "title": "t"});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "is not of type 'object'"),
            (
                json!({"name": "p", "type": "string"}),
                "'title' is a required property",
            ),
            (
                json!({"name": "p", "title": "t"}),
                "'type' is a required property",
            ),
            (
                json!({"type": "string", "title": "t"}),
                "'name' is a required property",
            ),
            (with("type", json!("text")), "'text' is not one of ['array'"),
            (with("type", Value::Null), "None is not of type 'string'"),
            (
                with("name", json!("a".repeat(81))),
                "Failed validating 'maxLength' in schema['properties']['name']",
            ),
            (with("title", json!(5)), "5 is not of type 'string'"),
            (with("minimum", json!("1")), "'1' is not of type 'number'"),
            (with("minimum", json!(true)), "True is not of type 'number'"),
            (
                with("maxLength", json!(-1)),
                "-1 is less than the minimum of 0",
            ),
            (with("minItems", json!(1.5)), "1.5 is not of type 'integer'"),
            (
                with("readonly", json!("yes")),
                "'yes' is not of type 'boolean'",
            ),
            (
                with("operators", json!(["<or>", 1])),
                "1 is not of type 'string'",
            ),
            (with("enum", json!("a")), "'a' is not of type 'array'"),
            (with("enum", json!([1, 2])), "Wrong type"),
            (
                with("items", json!({"enum": ["a"]})),
                "Mandatory field missing",
            ),
            (
                with("items", json!({"type": "string", "x": 1})),
                "Unknown attribute",
            ),
            (with("items", json!({"type": "list"})), "is not one of"),
            (with("pattern", json!(1)), "1 is not of type 'string'"),
            (
                with("format", json!("x")),
                "Additional properties are not allowed ('format' was unexpected)",
            ),
            (
                with("confidential", json!(true)),
                "'confidential' was unexpected",
            ),
            (
                with("required", json!(["a"])),
                "Unknown attribute for argument property: required",
            ),
        ];
        for (body, want) in cases {
            let m = message(standalone(body.clone()));
            assert!(m.contains(want), "{body}: {m}");
            assert!(
                m.starts_with("Provided object does not match schema 'property'")
                    || m.contains("attribute"),
                "{m}"
            );
        }
        // nested: unknown keys are the model's refusal, `confidential` must be a boolean
        let m = message(nested(
            json!({"type": "string", "title": "t", "test-key": 1}),
        ));
        assert!(
            m.contains("Unknown attribute for argument namespace: test-key"),
            "{m}"
        );
        let m = message(nested(
            json!({"type": "string", "title": "t", "confidential": "maybe"}),
        ));
        assert!(m.contains("unambiguous boolean"), "{m}");
        assert!(nested(json!({"type": "string", "title": "t", "name": "x"})).is_ok());
    }
}

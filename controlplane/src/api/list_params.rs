//! Query parameters of `GET /v2/images` (GLANCE-API.md §1.3), parsed into a
//! [`db::ListQuery`](crate::db::ListQuery) plus the `first`/`next` links.
//!
//! | parameter | meaning |
//! |---|---|
//! | `limit` | page size, default 25, capped at 1000; not an integer or negative → 400 |
//! | `marker` | id of the last image seen; unknown → 400 (checked by the handler) |
//! | `sort_key`/`sort_dir` (repeatable) or `sort=k1:asc,k2` | mixing the two → 400 |
//! | `name`, `id`, `status`, `container_format`, `disk_format` | exact, or `in:a,b,"c,d"` |
//! | `visibility` | `public`, `private`, `shared`, `community`, `all` |
//! | `owner`, `checksum`, `os_hash_value`, … | exact match on the column |
//! | `protected` | `true`/`false` |
//! | `os_hidden` | `true` lists only hidden images; default `false` |
//! | `tag` (repeatable) | all tags must be present |
//! | `size_min`, `size_max` (and other integer columns) | bounds in bytes |
//! | `created_at`, `updated_at` | `op:ISO8601` with op in `gt gte eq neq lt lte` |
//! | `changes-since` | 400 (gone in v2) |
//! | anything else | custom property equality |

use super::ApiError;
use crate::db::{
    CmpOp, Column, Filter, MemberStatusFilter, SortDir, SortKey, SqlValue, VisibilityFilter,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use shared::image::ImageId;

/// `limit` when none is given (Glance's `limit_param_default`).
pub const DEFAULT_LIMIT: u32 = 25;
/// Largest page (Glance's `api_limit_max`).
pub const MAX_LIMIT: u32 = 1000;

/// A parsed list request, before the caller's scope and the marker image are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    /// Page size.
    pub limit: u32,
    /// Raw marker id.
    pub marker: Option<String>,
    /// Sort keys and directions.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Direction of the implicit `created_at`/`id` keys.
    pub tie_break_dir: SortDir,
    /// `visibility`.
    pub visibility: VisibilityFilter,
    /// `member_status` (default `accepted`).
    pub member_status: MemberStatusFilter,
    /// Every other condition.
    pub filters: Vec<Filter>,
    pairs: Vec<(String, String)>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Keys consumed by the parser itself (not filters).
const CONTROL_KEYS: &[&str] = &[
    "limit",
    "marker",
    "member_status",
    "tag",
    "sort",
    "sort_key",
    "sort_dir",
    "deleted",
];

impl ListParams {
    /// Parses a raw (percent-encoded) query string.
    pub fn parse(query: &str) -> Result<ListParams, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let last = |key: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };

        let limit = match last("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => {
                let n: i64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| bad("limit param must be an integer"))?;
                if n < 0 {
                    return Err(bad("limit param must be positive"));
                }
                n.min(i64::from(MAX_LIMIT)) as u32
            }
        };
        let marker = last("marker").map(str::to_owned);
        let member_status = match last("member_status") {
            None => MemberStatusFilter::default(),
            Some("all") => MemberStatusFilter::All,
            Some(ms) => MemberStatusFilter::Only(
                ms.parse()
                    .map_err(|_| bad(format!("Invalid status: {ms}")))?,
            ),
        };
        let (sort, tie_break_dir) = parse_sort(&pairs)?;

        let mut filters: Vec<Filter> = pairs
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| Filter::Tag(v.trim().to_owned()))
            .collect();
        let mut visibility = VisibilityFilter::Default;
        let mut os_hidden = false;
        let mut seen: Vec<&str> = Vec::new();
        for (key, _) in pairs.iter().rev() {
            let key = key.as_str();
            if CONTROL_KEYS.contains(&key) || seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let value = last(key).unwrap_or_default();
            match key {
                "changes-since" => {
                    return Err(bad(
                        "The \"changes-since\" filter is no longer available on v2.",
                    ));
                }
                "visibility" => {
                    visibility = match value {
                        "all" => VisibilityFilter::All,
                        v => VisibilityFilter::Only(
                            v.parse()
                                .map_err(|_| bad(format!("Invalid visibility value: {v}")))?,
                        ),
                    }
                }
                "os_hidden" => {
                    os_hidden = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(bad(format!(
                                "Invalid value '{value}' for 'os_hidden' filter. Valid values are 'true' or 'false'."
                            )));
                        }
                    }
                }
                "protected" => {
                    let b = match value {
                        "true" => 1,
                        "false" => 0,
                        _ => {
                            return Err(bad(format!(
                                "Invalid value '{value}' for 'protected' filter. Valid values are 'true' or 'false'."
                            )));
                        }
                    };
                    filters.push(Filter::Cmp(Column::Protected, CmpOp::Eq, SqlValue::Int(b)));
                }
                "name" | "id" | "status" | "container_format" | "disk_format" => {
                    let col = Column::from_name(key).ok_or_else(|| bad("unknown column"))?;
                    let (op, threshold) = split_filter_op(value);
                    match op {
                        "in" => filters.push(Filter::In(
                            col,
                            split_quoted_list(threshold)?
                                .into_iter()
                                .map(SqlValue::Text)
                                .collect(),
                        )),
                        "eq" => filters.push(Filter::Cmp(
                            col,
                            CmpOp::Eq,
                            SqlValue::Text(threshold.to_owned()),
                        )),
                        other => {
                            return Err(bad(format!(
                                "Unable to filter by unknown operator '{other}'."
                            )));
                        }
                    }
                }
                "created_at" | "updated_at" => {
                    let col = Column::from_name(key).ok_or_else(|| bad("unknown column"))?;
                    let (op, threshold) = split_filter_op(value);
                    let op = CmpOp::from_name(op)
                        .ok_or_else(|| bad(format!("Invalid operator: {op}")))?;
                    let t = parse_isotime(threshold).ok_or_else(|| {
                        bad(format!(
                            "Bad \"{key}\" query filter format. Use ISO 8601 DateTime notation."
                        ))
                    })?;
                    filters.push(Filter::Cmp(col, op, SqlValue::Int(t.timestamp())));
                }
                _ => {
                    if let Some(filter) = range_filter(key, value)? {
                        filters.push(filter);
                    } else if let Some(col) = Column::from_name(key) {
                        filters.push(Filter::Cmp(
                            col,
                            CmpOp::Eq,
                            SqlValue::Text(value.to_owned()),
                        ));
                    } else {
                        filters.push(Filter::Property(key.to_owned(), value.to_owned()));
                    }
                }
            }
        }
        filters.push(Filter::Cmp(
            Column::OsHidden,
            CmpOp::Eq,
            SqlValue::Int(i64::from(os_hidden)),
        ));
        Ok(ListParams {
            limit,
            marker,
            sort,
            tie_break_dir,
            visibility,
            member_status,
            filters,
            pairs,
        })
    }

    fn link(&self, marker: Option<&ImageId>) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs.iter().filter(|(k, _)| k != "marker") {
            ser.append_pair(k, v);
        }
        if let Some(m) = marker {
            ser.append_pair("marker", &m.to_string());
        }
        let q = ser.finish();
        if q.is_empty() {
            "/v2/images".to_owned()
        } else {
            format!("/v2/images?{q}")
        }
    }

    /// `first`: the original query without `marker`.
    pub fn first_link(&self) -> String {
        self.link(None)
    }

    /// `next`: the original query with `marker` set to the last image of this page.
    pub fn next_link(&self, last: &ImageId) -> String {
        self.link(Some(last))
    }
}

fn parse_dir(s: &str) -> Result<SortDir, ApiError> {
    match s {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(bad(format!("Invalid sort direction: {other}"))),
    }
}

fn parse_key(s: &str) -> Result<SortKey, ApiError> {
    SortKey::from_name(s).ok_or_else(|| {
        bad(format!(
            "Invalid sort key: {s}. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at."
        ))
    })
}

/// Both sorting syntaxes (Glance's `_get_sorting_params`).
fn parse_sort(pairs: &[(String, String)]) -> Result<(Vec<(SortKey, SortDir)>, SortDir), ApiError> {
    let has = |key: &str| pairs.iter().any(|(k, _)| k == key);
    let mut keys = Vec::new();
    let mut dirs = Vec::new();
    if has("sort") {
        if has("sort_key") || has("sort_dir") {
            return Err(bad("Old and new sorting syntax cannot be combined"));
        }
        let raw = pairs
            .iter()
            .rev()
            .find(|(k, _)| k == "sort")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        for part in raw.trim().split(',') {
            let (k, d) = part.split_once(':').unwrap_or((part, ""));
            keys.push(parse_key(k.trim())?);
            dirs.push(if d.trim().is_empty() {
                SortDir::Desc
            } else {
                parse_dir(d.trim())?
            });
        }
    } else {
        for (k, v) in pairs {
            match k.as_str() {
                "sort_key" => keys.push(parse_key(v.trim())?),
                "sort_dir" => dirs.push(parse_dir(v.trim())?),
                _ => {}
            }
        }
        if dirs.len() > 1 && dirs.len() != keys.len() {
            return Err(bad(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
    }
    let tie_break = if dirs.len() == 1 {
        dirs[0]
    } else {
        SortDir::Desc
    };
    let sort = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, if dirs.len() > 1 { dirs[i] } else { tie_break }))
        .collect();
    Ok((sort, tie_break))
}

/// `size_min=…`/`size_max=…` on an integer column.
fn range_filter(key: &str, value: &str) -> Result<Option<Filter>, ApiError> {
    let (col, op) = if let Some(c) = key.strip_suffix("_min") {
        (c, CmpOp::Gte)
    } else if let Some(c) = key.strip_suffix("_max") {
        (c, CmpOp::Lte)
    } else {
        return Ok(None);
    };
    let Some(col) = Column::from_name(col).filter(|c| c.is_integer()) else {
        return Ok(None);
    };
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| bad("Unable to filter on a range with a non-numeric value."))?;
    Ok(Some(Filter::Cmp(col, op, SqlValue::Int(n))))
}

/// Glance's `split_filter_op`: `op:value`, or `eq` when there is no operator (a bare ISO 8601
/// time, which contains colons, counts as no operator).
pub fn split_filter_op(expr: &str) -> (&str, &str) {
    match expr.split_once(':') {
        Some(_) if parse_isotime(expr).is_some() => ("eq", expr),
        Some((op, rest)) => (op, rest),
        None => ("eq", expr),
    }
}

/// ISO 8601 date-times: with an offset or `Z`, or naive (taken as UTC), or a bare date.
pub fn parse_isotime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Glance's `split_filter_value_for_quotes`: `a,"b,c",d` → `[a, b,c, d]`.
pub fn split_quoted_list(value: &str) -> Result<Vec<String>, ApiError> {
    let chars: Vec<char> = value.chars().collect();
    // validate_quotes
    let mut open = true;
    for i in 0..chars.len() {
        if chars[i] != '"' || (i > 0 && chars[i - 1] == '\\') {
            continue;
        }
        if open {
            if i > 0 && chars[i - 1] != ',' {
                return Err(bad(format!(
                    "Invalid filter value {value}. There is no comma before opening quotation mark."
                )));
            }
        } else if i + 1 != chars.len() && chars[i + 1] != ',' {
            return Err(bad(format!(
                "Invalid filter value {value}. There is no comma after closing quotation mark."
            )));
        }
        open = !open;
    }
    if !open {
        return Err(bad(format!(
            "Invalid filter value {value}. The quote is not closed."
        )));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                let mut j = i + 1;
                let mut item = String::new();
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        item.push(chars[j]);
                        j += 1;
                    }
                    item.push(chars[j]);
                    j += 1;
                }
                out.push(item);
                i = j + 1;
                if chars.get(i) == Some(&',') {
                    i += 1;
                }
            }
            ',' => {
                out.push(String::new());
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != ',' {
                    i += 1;
                }
                out.push(chars[start..i].iter().collect());
                if i < chars.len() {
                    i += 1;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::image::Visibility;

    fn p(q: &str) -> Result<ListParams, ApiError> {
        ListParams::parse(q)
    }

    fn status(r: Result<ListParams, ApiError>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn defaults() {
        let l = p("").unwrap();
        assert_eq!(l.limit, 25);
        assert_eq!(l.marker, None);
        assert_eq!(l.sort, vec![]);
        assert_eq!(l.tie_break_dir, SortDir::Desc);
        assert_eq!(l.visibility, VisibilityFilter::Default);
        assert_eq!(
            l.filters,
            vec![Filter::Cmp(Column::OsHidden, CmpOp::Eq, SqlValue::Int(0))]
        );
        assert_eq!(l.first_link(), "/v2/images");
    }

    #[test]
    fn validation_table() {
        let table = [
            ("limit=10", 200),
            ("limit=5000", 200),
            ("limit=0", 200),
            ("limit=-1", 400),
            ("limit=abc", 400),
            ("limit=1.5", 400),
            ("sort_key=name", 200),
            ("sort_key=bogus", 400),
            ("sort_dir=up", 400),
            (
                "sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc",
                200,
            ),
            ("sort_key=name&sort_key=size&sort_dir=asc", 200),
            ("sort_key=name&sort_dir=asc&sort_dir=desc&sort_dir=asc", 400),
            ("sort=name:asc,size", 200),
            ("sort=name:sideways", 400),
            ("sort=name&sort_key=size", 400),
            ("visibility=all", 200),
            ("visibility=community", 200),
            ("visibility=everyone", 400),
            ("protected=true", 200),
            ("protected=True", 400),
            ("os_hidden=True", 200),
            ("os_hidden=maybe", 400),
            ("member_status=all", 200),
            ("member_status=bogus", 400),
            ("changes-since=2020-01-01", 400),
            ("name=in:a,b", 200),
            ("name=foo:bar", 400),
            ("name=in:\"a,b", 400),
            ("created_at=gt:2026-01-01T00:00:00Z", 200),
            ("created_at=2026-01-01T00:00:00Z", 200),
            ("created_at=gt:yesterday", 400),
            ("created_at=about:2026-01-01T00:00:00Z", 400),
            ("size_min=10&size_max=20", 200),
            ("size_min=big", 400),
        ];
        for (q, want) in table {
            assert_eq!(status(p(q)), want, "{q}");
        }
    }

    #[test]
    fn filters_and_sorting() {
        let l = p("limit=5000&name=cirros&tag=a&tag=b&visibility=public&os_distro=ubuntu&sort_key=name&sort_dir=asc&size_min=1")
            .unwrap();
        assert_eq!(l.limit, 1000);
        assert_eq!(l.visibility, VisibilityFilter::Only(Visibility::Public));
        assert_eq!(l.sort, vec![(SortKey::Name, SortDir::Asc)]);
        assert_eq!(l.tie_break_dir, SortDir::Asc);
        for f in [
            Filter::Tag("a".into()),
            Filter::Tag("b".into()),
            Filter::Cmp(Column::Name, CmpOp::Eq, SqlValue::Text("cirros".into())),
            Filter::Property("os_distro".into(), "ubuntu".into()),
            Filter::Cmp(Column::Size, CmpOp::Gte, SqlValue::Int(1)),
        ] {
            assert!(l.filters.contains(&f), "{f:?} not in {:?}", l.filters);
        }
        let l = p("sort=name:asc,size").unwrap();
        assert_eq!(
            l.sort,
            vec![
                (SortKey::Name, SortDir::Asc),
                (SortKey::Size, SortDir::Desc)
            ]
        );
        assert_eq!(l.tie_break_dir, SortDir::Desc);
        let l = p("sort_key=name&sort_key=size&sort_dir=asc").unwrap();
        assert_eq!(
            l.sort,
            vec![(SortKey::Name, SortDir::Asc), (SortKey::Size, SortDir::Asc)]
        );
        let l = p("created_at=lte:2026-01-02T03:04:05Z").unwrap();
        assert!(l.filters.contains(&Filter::Cmp(
            Column::CreatedAt,
            CmpOp::Lte,
            SqlValue::Int(1767323045)
        )));
    }

    #[test]
    fn links_keep_the_query() {
        let id: ImageId = "0b3a8c7e-1234-4321-abcd-0123456789ab".parse().unwrap();
        let l = p("limit=2&marker=old&name=a+b&tag=x&tag=y").unwrap();
        assert_eq!(l.first_link(), "/v2/images?limit=2&name=a+b&tag=x&tag=y");
        assert_eq!(
            l.next_link(&id),
            "/v2/images?limit=2&name=a+b&tag=x&tag=y&marker=0b3a8c7e-1234-4321-abcd-0123456789ab"
        );
    }

    #[test]
    fn quoted_lists() {
        assert_eq!(split_quoted_list("a,b").unwrap(), ["a", "b"]);
        assert_eq!(split_quoted_list("a,\"b,c\",d").unwrap(), ["a", "b,c", "d"]);
        assert_eq!(split_quoted_list("\"a\"").unwrap(), ["a"]);
        assert_eq!(split_quoted_list("a,,b").unwrap(), ["a", "", "b"]);
        assert!(split_quoted_list("a\"b\"").is_err());
        assert!(split_quoted_list("\"a\"b").is_err());
        assert!(split_quoted_list("\"a").is_err());
    }

    #[test]
    fn filter_ops() {
        assert_eq!(split_filter_op("in:a,b"), ("in", "a,b"));
        assert_eq!(split_filter_op("plain"), ("eq", "plain"));
        assert_eq!(
            split_filter_op("2026-01-01T00:00:00Z"),
            ("eq", "2026-01-01T00:00:00Z")
        );
        assert_eq!(
            split_filter_op("gt:2026-01-01T00:00:00Z"),
            ("gt", "2026-01-01T00:00:00Z")
        );
    }
}

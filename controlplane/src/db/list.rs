//! The list query: filters, visibility scope, sort order and keyset pagination.
//!
//! Pagination is keyset, never `OFFSET`: the page after a marker image is every row that sorts
//! strictly after the marker's sort-key values. `created_at` and `id` are always appended to
//! the sort keys (as Glance does), so the order is total and pages never overlap or skip.
//! NULL sorts as the smallest value on every backend (SQLite and MySQL do this natively;
//! PostgreSQL is told `NULLS FIRST`/`NULLS LAST`). The marker condition starts with a plain
//! range on the first sort key (`k1 >= m1`), so the database seeks into the sort index at the
//! marker instead of scanning from the start: page 400 costs what page 1 costs.
//!
//! Visibility for a non-admin caller is Glance's union (`_select_images_query`): public and
//! community images, the project's own images, and `shared` images the project is a member
//! of with the requested `member_status` (default `accepted`).

use super::row::to_micros;
use super::{Backend, Sql};
use crate::domain::{Image, MemberStatus};
use shared::image::Visibility;

/// A bindable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
}

/// Filterable columns of `images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `id`.
    Id,
    /// `name`.
    Name,
    /// `status`.
    Status,
    /// `container_format`.
    ContainerFormat,
    /// `disk_format`.
    DiskFormat,
    /// `owner`.
    Owner,
    /// `checksum`.
    Checksum,
    /// `os_hash_algo`.
    OsHashAlgo,
    /// `os_hash_value`.
    OsHashValue,
    /// `size`.
    Size,
    /// `virtual_size`.
    VirtualSize,
    /// `min_disk`.
    MinDisk,
    /// `min_ram`.
    MinRam,
    /// `protected` (0/1).
    Protected,
    /// `os_hidden` (0/1).
    OsHidden,
    /// `created_at`, compared at second precision.
    CreatedAt,
    /// `updated_at`, compared at second precision.
    UpdatedAt,
}

impl Column {
    /// Looks a column up by its Glance name.
    pub fn from_name(name: &str) -> Option<Column> {
        Some(match name {
            "id" => Column::Id,
            "name" => Column::Name,
            "status" => Column::Status,
            "container_format" => Column::ContainerFormat,
            "disk_format" => Column::DiskFormat,
            "owner" => Column::Owner,
            "checksum" => Column::Checksum,
            "os_hash_algo" => Column::OsHashAlgo,
            "os_hash_value" => Column::OsHashValue,
            "size" => Column::Size,
            "virtual_size" => Column::VirtualSize,
            "min_disk" => Column::MinDisk,
            "min_ram" => Column::MinRam,
            "protected" => Column::Protected,
            "os_hidden" => Column::OsHidden,
            "created_at" => Column::CreatedAt,
            "updated_at" => Column::UpdatedAt,
            _ => return None,
        })
    }

    /// Whether the column holds integers.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Column::Size
                | Column::VirtualSize
                | Column::MinDisk
                | Column::MinRam
                | Column::Protected
                | Column::OsHidden
        )
    }

    fn sql(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Name => "name",
            Column::Status => "status",
            Column::ContainerFormat => "container_format",
            Column::DiskFormat => "disk_format",
            Column::Owner => "owner",
            Column::Checksum => "checksum",
            Column::OsHashAlgo => "os_hash_algo",
            Column::OsHashValue => "os_hash_value",
            Column::Size => "size",
            Column::VirtualSize => "virtual_size",
            Column::MinDisk => "min_disk",
            Column::MinRam => "min_ram",
            Column::Protected => "protected",
            Column::OsHidden => "os_hidden",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`.
    Eq,
    /// `<>`.
    Neq,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
}

impl CmpOp {
    /// Parses Glance's operator names (`eq`, `neq`, `gt`, `gte`, `lt`, `lte`).
    pub fn from_name(name: &str) -> Option<CmpOp> {
        Some(match name {
            "eq" => CmpOp::Eq,
            "neq" => CmpOp::Neq,
            "gt" => CmpOp::Gt,
            "gte" => CmpOp::Gte,
            "lt" => CmpOp::Lt,
            "lte" => CmpOp::Lte,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => " = ",
            CmpOp::Neq => " <> ",
            CmpOp::Gt => " > ",
            CmpOp::Gte => " >= ",
            CmpOp::Lt => " < ",
            CmpOp::Lte => " <= ",
        }
    }
}

/// One filter condition; all conditions are ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `column op value`.
    Cmp(Column, CmpOp, SqlValue),
    /// `column IN (values…)`.
    In(Column, Vec<SqlValue>),
    /// The image has this tag.
    Tag(String),
    /// The image has this custom property with exactly this value.
    Property(String, String),
}

/// Which images the caller may list at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Administrators: every image.
    All,
    /// Public and community images, those owned by the project, and shared images the
    /// project is a member of (with the query's member status).
    Project(Option<String>),
}

/// The `member_status` list parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatusFilter {
    /// Memberships with this status (default `accepted`).
    Only(MemberStatus),
    /// Any status.
    All,
}

impl Default for MemberStatusFilter {
    fn default() -> Self {
        MemberStatusFilter::Only(MemberStatus::Accepted)
    }
}

/// The `visibility` list parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityFilter {
    /// Not given: community images only when owned by the caller's project.
    Default,
    /// `visibility=all`.
    All,
    /// Exactly this visibility.
    Only(Visibility),
}

/// A sort key (Glance's `_available_sort_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// `name`.
    Name,
    /// `status`.
    Status,
    /// `container_format`.
    ContainerFormat,
    /// `disk_format`.
    DiskFormat,
    /// `size`.
    Size,
    /// `id`.
    Id,
    /// `created_at`.
    CreatedAt,
    /// `updated_at`.
    UpdatedAt,
}

impl SortKey {
    /// Parses a sort key name.
    pub fn from_name(name: &str) -> Option<SortKey> {
        Some(match name {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Status => "status",
            SortKey::ContainerFormat => "container_format",
            SortKey::DiskFormat => "disk_format",
            SortKey::Size => "size",
            SortKey::Id => "id",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
        }
    }

    /// Whether the column may hold NULL.
    fn nullable(self) -> bool {
        matches!(
            self,
            SortKey::Name | SortKey::ContainerFormat | SortKey::DiskFormat | SortKey::Size
        )
    }

    fn value_of(self, image: &Image) -> SqlValue {
        let text = |v: &Option<String>| v.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null);
        match self {
            SortKey::Name => text(&image.name),
            SortKey::Status => SqlValue::Text(image.status.as_str().to_owned()),
            SortKey::ContainerFormat => text(&image.container_format),
            SortKey::DiskFormat => text(&image.disk_format),
            SortKey::Size => image
                .size
                .map(|s| SqlValue::Int(s as i64))
                .unwrap_or(SqlValue::Null),
            SortKey::Id => SqlValue::Text(image.id.to_string()),
            SortKey::CreatedAt => SqlValue::Int(to_micros(image.created_at)),
            SortKey::UpdatedAt => SqlValue::Int(to_micros(image.updated_at)),
        }
    }
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// A complete list request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Images the caller may see.
    pub scope: Scope,
    /// The `visibility` parameter.
    pub visibility: VisibilityFilter,
    /// The `member_status` parameter (shared images seen through a membership).
    pub member_status: MemberStatusFilter,
    /// Other conditions.
    pub filters: Vec<Filter>,
    /// Sort keys with directions, most significant first.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Direction of the appended `created_at`/`id` keys (Glance: the single `sort_dir` given,
    /// else `desc`).
    pub tie_break_dir: SortDir,
    /// Page size.
    pub limit: u32,
    /// Start after this image.
    pub marker: Option<std::sync::Arc<Image>>,
}

const MICROS: i64 = 1_000_000;

impl ListQuery {
    /// The sort order with `created_at` and `id` appended when missing, in
    /// [`ListQuery::tie_break_dir`].
    pub fn full_sort(&self) -> Vec<(SortKey, SortDir)> {
        let mut sort = self.sort.clone();
        for key in [SortKey::CreatedAt, SortKey::Id] {
            if !sort.iter().any(|(k, _)| *k == key) {
                sort.push((key, self.tie_break_dir));
            }
        }
        sort
    }

    /// `SELECT … WHERE … ORDER BY … LIMIT` for this query (fetching `limit + 1` rows so the
    /// caller learns whether another page exists).
    pub(crate) fn build(&self, backend: Backend) -> Sql {
        self.build_selecting(backend, "*")
    }

    /// [`ListQuery::build`] selecting `columns` of `images` instead of every column.
    pub(crate) fn build_selecting(&self, backend: Backend, columns: &str) -> Sql {
        let mut q = Sql::new(backend);
        q.push("SELECT ")
            .push(columns)
            .push(" FROM images WHERE status NOT IN ('deleted', 'killed', 'pending_delete')");
        let project = match &self.scope {
            Scope::All => None,
            Scope::Project(p) => {
                q.push(" AND (visibility IN ('public', 'community')");
                if let Some(p) = p {
                    q.push(" OR owner = ").bind(p);
                }
                q.push(" OR (visibility = 'shared' AND EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = images.id");
                if let Some(p) = p {
                    q.push(" AND m.member = ").bind(p);
                    if let MemberStatusFilter::Only(s) = self.member_status {
                        q.push(" AND m.status = ").bind(s.as_str());
                    }
                }
                q.push(")))");
                p.clone()
            }
        };
        match self.visibility {
            VisibilityFilter::All => {}
            VisibilityFilter::Only(v) => {
                q.push(" AND visibility = ").bind(v.as_str());
            }
            VisibilityFilter::Default => match project {
                Some(p) => {
                    q.push(" AND (visibility <> 'community' OR owner = ")
                        .bind(p)
                        .push(")");
                }
                None => {
                    q.push(" AND visibility <> 'community'");
                }
            },
        }
        for f in &self.filters {
            q.push(" AND ");
            match f {
                Filter::Cmp(
                    col @ (Column::CreatedAt | Column::UpdatedAt),
                    op,
                    SqlValue::Int(secs),
                ) => {
                    push_time_cmp(&mut q, col.sql(), *op, *secs);
                }
                Filter::Cmp(col, op, v) => {
                    q.push(col.sql()).push(op.sql());
                    push_value(&mut q, v);
                }
                Filter::In(col, values) => {
                    q.push(col.sql()).push(" IN (");
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            q.push(", ");
                        }
                        push_value(&mut q, v);
                    }
                    if values.is_empty() {
                        q.push("NULL");
                    }
                    q.push(")");
                }
                Filter::Tag(t) => {
                    q.push("EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.value = ")
                        .bind(t)
                        .push(")");
                }
                Filter::Property(k, v) => {
                    q.push("EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id AND p.name = ")
                        .bind(k)
                        .push(" AND p.value = ")
                        .bind(v)
                        .push(")");
                }
            }
        }
        let sort = self.full_sort();
        if let Some(marker) = &self.marker {
            // A seekable range on the first key, then the exact "sorts after" condition:
            // (k1 after m1) OR (k1 = m1 AND k2 after m2) OR …
            let (key, dir) = sort[0];
            push_not_before(&mut q, key, dir, &key.value_of(marker));
            q.push(" AND (");
            for i in 0..sort.len() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("(");
                for (key, _) in &sort[..i] {
                    push_equal(&mut q, *key, &key.value_of(marker));
                    q.push(" AND ");
                }
                let (key, dir) = sort[i];
                push_after(&mut q, key, dir, &key.value_of(marker));
                q.push(")");
            }
            q.push(")");
        }
        q.push(" ORDER BY ");
        for (i, (key, dir)) in sort.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push(key.sql()).push(match dir {
                SortDir::Asc => " ASC",
                SortDir::Desc => " DESC",
            });
            if backend == Backend::Postgres && key.nullable() {
                q.push(match dir {
                    SortDir::Asc => " NULLS FIRST",
                    SortDir::Desc => " NULLS LAST",
                });
            }
        }
        q.push(" LIMIT ").bind(i64::from(self.limit) + 1);
        q
    }
}

fn push_value(q: &mut Sql, v: &SqlValue) {
    match v {
        SqlValue::Null => {
            q.push("NULL");
        }
        SqlValue::Int(i) => {
            q.bind(*i);
        }
        SqlValue::Text(s) => {
            q.bind(s);
        }
    }
}

/// A timestamp column (µs) compared with a time given in whole seconds, as clients see it:
/// `eq` means "within that second". Written as ranges so an index can serve them.
fn push_time_cmp(q: &mut Sql, col: &str, op: CmpOp, secs: i64) {
    let start = secs.saturating_mul(MICROS);
    let end = start.saturating_add(MICROS);
    match op {
        CmpOp::Eq => {
            q.push(col)
                .push(" >= ")
                .bind(start)
                .push(" AND ")
                .push(col)
                .push(" < ")
                .bind(end);
        }
        CmpOp::Neq => {
            q.push("(")
                .push(col)
                .push(" < ")
                .bind(start)
                .push(" OR ")
                .push(col)
                .push(" >= ")
                .bind(end)
                .push(")");
        }
        CmpOp::Gt => {
            q.push(col).push(" >= ").bind(end);
        }
        CmpOp::Gte => {
            q.push(col).push(" >= ").bind(start);
        }
        CmpOp::Lt => {
            q.push(col).push(" < ").bind(start);
        }
        CmpOp::Lte => {
            q.push(col).push(" < ").bind(end);
        }
    }
}

/// `key` equals the marker's value (NULL-aware).
fn push_equal(q: &mut Sql, key: SortKey, marker: &SqlValue) {
    match marker {
        SqlValue::Null => {
            q.push(key.sql()).push(" IS NULL");
        }
        v => {
            q.push(key.sql()).push(" = ");
            push_value(q, v);
        }
    }
}

/// "`key` does not sort before the marker": the seekable part of the keyset condition.
fn push_not_before(q: &mut Sql, key: SortKey, dir: SortDir, marker: &SqlValue) {
    let col = key.sql();
    match (dir, marker) {
        (SortDir::Asc, SqlValue::Null) => {
            q.push(" AND 1 = 1");
        }
        (SortDir::Asc, v) => {
            q.push(" AND ").push(col).push(" >= ");
            push_value(q, v);
        }
        (SortDir::Desc, SqlValue::Null) => {
            q.push(" AND ").push(col).push(" IS NULL");
        }
        (SortDir::Desc, v) => {
            q.push(" AND (").push(col).push(" <= ");
            push_value(q, v);
            if key.nullable() {
                q.push(" OR ").push(col).push(" IS NULL");
            }
            q.push(")");
        }
    }
}

/// "`key` sorts strictly after `marker`" in direction `dir`, with NULL as the smallest value.
fn push_after(q: &mut Sql, key: SortKey, dir: SortDir, marker: &SqlValue) {
    let col = key.sql();
    match (dir, marker) {
        (SortDir::Asc, SqlValue::Null) => {
            q.push(col).push(" IS NOT NULL");
        }
        (SortDir::Asc, v) => {
            q.push(col).push(" > ");
            push_value(q, v);
        }
        (SortDir::Desc, SqlValue::Null) => {
            q.push("1 = 0");
        }
        (SortDir::Desc, v) => {
            q.push("(").push(col).push(" < ");
            push_value(q, v);
            if key.nullable() {
                q.push(" OR ").push(col).push(" IS NULL");
            }
            q.push(")");
        }
    }
}

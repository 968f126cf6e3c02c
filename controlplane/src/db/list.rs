//! The list query: filters, visibility scope, sort order and keyset pagination.
//!
//! Pagination is keyset, never `OFFSET`: the page after a marker image is every row that sorts
//! strictly after the marker's sort-key values. `created_at` and `id` are always appended to
//! the sort keys (as Glance does), so the order is total and pages never overlap or skip.
//! NULL sorts as the smallest value (SQLite's `ORDER BY` does the same).

use super::row::to_micros;
use crate::domain::Image;
use shared::image::Visibility;
use sqlx::{QueryBuilder, Sqlite};

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
            // timestamps are stored in µs; filters compare whole seconds, as shown to clients
            Column::CreatedAt => "(created_at / 1000000)",
            Column::UpdatedAt => "(updated_at / 1000000)",
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
    /// Public and community images, plus those owned by the project.
    Project(Option<String>),
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
    pub marker: Option<Image>,
}

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

    /// Appends `SELECT … WHERE … ORDER BY … LIMIT` for this query (fetching `limit + 1` rows
    /// so the caller learns whether another page exists).
    pub(crate) fn build(&self) -> QueryBuilder<'_, Sqlite> {
        let mut qb =
            QueryBuilder::new("SELECT * FROM images WHERE status NOT IN ('deleted', 'killed')");
        match &self.scope {
            Scope::All => {}
            Scope::Project(Some(p)) => {
                qb.push(" AND (visibility IN ('public', 'community') OR owner = ");
                qb.push_bind(p.clone());
                qb.push(")");
            }
            Scope::Project(None) => {
                qb.push(" AND visibility IN ('public', 'community')");
            }
        }
        let project = match &self.scope {
            Scope::Project(Some(p)) => Some(p.clone()),
            _ => None,
        };
        match self.visibility {
            VisibilityFilter::All => {}
            VisibilityFilter::Only(v) => {
                qb.push(" AND visibility = ");
                qb.push_bind(v.as_str());
            }
            VisibilityFilter::Default => match project {
                Some(p) => {
                    qb.push(" AND (visibility <> 'community' OR owner = ");
                    qb.push_bind(p);
                    qb.push(")");
                }
                None => {
                    qb.push(" AND visibility <> 'community'");
                }
            },
        }
        for f in &self.filters {
            qb.push(" AND ");
            match f {
                Filter::Cmp(col, op, v) => {
                    qb.push(col.sql()).push(op.sql());
                    push_value(&mut qb, v);
                }
                Filter::In(col, values) => {
                    qb.push(col.sql()).push(" IN (");
                    let mut sep = qb.separated(", ");
                    for v in values {
                        match v {
                            SqlValue::Null => sep.push("NULL"),
                            SqlValue::Int(i) => sep.push_bind(*i),
                            SqlValue::Text(s) => sep.push_bind(s.clone()),
                        };
                    }
                    if values.is_empty() {
                        qb.push("NULL");
                    }
                    qb.push(")");
                }
                Filter::Tag(t) => {
                    qb.push("EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.value = ");
                    qb.push_bind(t.clone());
                    qb.push(")");
                }
                Filter::Property(k, v) => {
                    qb.push("EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id AND p.name = ");
                    qb.push_bind(k.clone());
                    qb.push(" AND p.value = ");
                    qb.push_bind(v.clone());
                    qb.push(")");
                }
            }
        }
        let sort = self.full_sort();
        if let Some(marker) = &self.marker {
            // (k1 after m1) OR (k1 IS m1 AND k2 after m2) OR …
            qb.push(" AND (");
            for i in 0..sort.len() {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push("(");
                for (key, _) in &sort[..i] {
                    qb.push(key.sql()).push(" IS ");
                    push_value(&mut qb, &key.value_of(marker));
                    qb.push(" AND ");
                }
                let (key, dir) = sort[i];
                push_after(&mut qb, key, dir, &key.value_of(marker));
                qb.push(")");
            }
            qb.push(")");
        }
        qb.push(" ORDER BY ");
        for (i, (key, dir)) in sort.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.push(key.sql()).push(match dir {
                SortDir::Asc => " ASC",
                SortDir::Desc => " DESC",
            });
        }
        qb.push(" LIMIT ");
        qb.push_bind(i64::from(self.limit) + 1);
        qb
    }
}

fn push_value(qb: &mut QueryBuilder<'_, Sqlite>, v: &SqlValue) {
    match v {
        SqlValue::Null => {
            qb.push("NULL");
        }
        SqlValue::Int(i) => {
            qb.push_bind(*i);
        }
        SqlValue::Text(s) => {
            qb.push_bind(s.clone());
        }
    }
}

/// "`key` sorts strictly after `marker`" in direction `dir`, with NULL as the smallest value.
fn push_after(qb: &mut QueryBuilder<'_, Sqlite>, key: SortKey, dir: SortDir, marker: &SqlValue) {
    let col = key.sql();
    match (dir, marker) {
        (SortDir::Asc, SqlValue::Null) => {
            qb.push(col).push(" IS NOT NULL");
        }
        (SortDir::Asc, v) => {
            qb.push(col).push(" > ");
            push_value(qb, v);
        }
        (SortDir::Desc, SqlValue::Null) => {
            qb.push("0");
        }
        (SortDir::Desc, v) => {
            qb.push("(").push(col).push(" < ");
            push_value(qb, v);
            qb.push(" OR ").push(col).push(" IS NULL)");
        }
    }
}

//! The ClickHouse schema's history: the ordered SQL files of `migrations/clickhouse/`, applied
//! once each and recorded in `schema_migrations`, so running `tollgate migrate` again is a no-op.

use super::{ClickHouseError, ClickHouseUrl};

/// One file of `migrations/clickhouse/`. Its statements are separated by `;` at the end of a
/// line, and each is safe to run twice (`IF NOT EXISTS`; a backfill checks what it already
/// did), so a migration cut short by a crash can simply run again.
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. A new file is added here too.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_request_logs",
        sql: include_str!("../../../migrations/clickhouse/0001_request_logs.sql"),
    },
    Migration {
        name: "0002_rollups",
        sql: include_str!("../../../migrations/clickhouse/0002_rollups.sql"),
    },
    Migration {
        name: "0003_narrow_rollups",
        sql: include_str!("../../../migrations/clickhouse/0003_narrow_rollups.sql"),
    },
    Migration {
        name: "0004_daily_and_status_rollups",
        sql: include_str!("../../../migrations/clickhouse/0004_daily_and_status_rollups.sql"),
    },
];

/// The statements of a migration file, without comment lines.
pub fn statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim().to_string();
            statements.push(statement);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(current.trim().to_string());
    }
    statements
}

/// Creates the database named in the URL when missing and applies the migrations it lacks, in
/// order. Returns the names applied now (empty when it was up to date).
pub async fn migrate(url: &ClickHouseUrl) -> Result<Vec<String>, ClickHouseError> {
    apply(url, MIGRATIONS).await
}

/// [`migrate`], stopping after the migration named `last` (e.g. to make a database as an older
/// release left it).
pub async fn migrate_through(
    url: &ClickHouseUrl,
    last: &str,
) -> Result<Vec<String>, ClickHouseError> {
    let end = MIGRATIONS
        .iter()
        .position(|m| m.name == last)
        .ok_or_else(|| ClickHouseError::Query(format!("no migration named {last}")))?;
    apply(url, &MIGRATIONS[..=end]).await
}

async fn apply(
    url: &ClickHouseUrl,
    migrations: &[Migration],
) -> Result<Vec<String>, ClickHouseError> {
    let server = url.client_without_database();
    super::execute(
        &server,
        &format!("CREATE DATABASE IF NOT EXISTS {}", url.database),
    )
    .await?;
    let client = url.client();
    super::execute(
        &client,
        "CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime('UTC')) \
         ENGINE = MergeTree() ORDER BY name",
    )
    .await?;
    let done = applied(url).await?;
    let mut now_applied = Vec::new();
    for migration in migrations {
        if done.iter().any(|name| name == migration.name) {
            continue;
        }
        for statement in statements(migration.sql) {
            super::execute(&client, &statement)
                .await
                .map_err(|e| ClickHouseError::Migration {
                    name: migration.name,
                    message: e.to_string(),
                })?;
        }
        super::execute(
            &client,
            &format!(
                "INSERT INTO schema_migrations (name, applied_at) VALUES ({}, now())",
                super::sql::string(migration.name)
            ),
        )
        .await?;
        now_applied.push(migration.name.to_string());
    }
    Ok(now_applied)
}

/// Names of the migrations recorded as applied.
pub async fn applied(url: &ClickHouseUrl) -> Result<Vec<String>, ClickHouseError> {
    let client = url.client();
    super::query(
        &client,
        "SELECT DISTINCT name FROM schema_migrations ORDER BY name",
    )
    .fetch_all::<String>()
    .await
    .map_err(ClickHouseError::from)
}

/// Names of the migrations not applied yet (what `tollgate api` or `ingest` could warn about).
pub async fn pending(url: &ClickHouseUrl) -> Result<Vec<&'static str>, ClickHouseError> {
    let done = applied(url).await?;
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !done.iter().any(|name| name == m.name))
        .map(|m| m.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_statements_without_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n\
                   CREATE TABLE b (s String) ENGINE = Memory;\n";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (x UInt8)\nENGINE = Memory".to_string(),
                "CREATE TABLE b (s String) ENGINE = Memory".to_string(),
            ]
        );
    }

    #[test]
    fn every_migration_has_statements_and_a_unique_ordered_name() {
        let mut names: Vec<_> = MIGRATIONS.iter().map(|m| m.name).collect();
        let given = names.clone();
        names.sort();
        names.dedup();
        assert_eq!(names, given);
        for migration in MIGRATIONS {
            assert!(!statements(migration.sql).is_empty(), "{}", migration.name);
        }
    }
}

//! The inbox rows of an apply transaction, sent with its `BEGIN`.
//!
//! sqlx cannot pipeline, so `BEGIN` and the inbox insert would be two round trips before any
//! handler runs. Almost every delivery is a first one, so the consumer first sends both as one
//! simple query, the rows written as literals and inserted without `ON CONFLICT`: one round
//! trip. An event applied before makes that insert fail with a unique violation (one line in
//! PostgreSQL's log); the consumer then rolls back and takes the slow path (`BEGIN`, then an
//! insert that skips existing rows and returns the new ones). A text that cannot be written
//! as a literal takes the slow path too.
//!
//! The literals use the escape-string syntax (`E'…'`), whose quoting does not depend on
//! `standard_conforming_strings`: only `\` and `'` need escaping, and both are doubled.

use std::fmt::Write as _;

use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Transaction};

/// `BEGIN` and the insert of `rows` (event id, subject) for `consumer`, as one simple query;
/// `None` if a text holds a NUL (which no PostgreSQL text can).
pub(crate) fn begin_statement(consumer: &str, rows: &[(uuid::Uuid, &str)]) -> Option<String> {
    let mut sql = String::with_capacity(96 + rows.len() * (consumer.len() + 64));
    sql.push_str("BEGIN; INSERT INTO inbox (consumer, event_id, subject) VALUES ");
    for (index, (event_id, subject)) in rows.iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_literal(&mut sql, consumer)?;
        // A UUID's text is hex digits and dashes only.
        let _ = write!(sql, ", '{event_id}', ");
        push_literal(&mut sql, subject)?;
        sql.push(')');
    }
    Some(sql)
}

/// Appends `text` as an escape-string literal.
fn push_literal(sql: &mut String, text: &str) -> Option<()> {
    if text.contains('\0') {
        return None;
    }
    sql.push_str("E'");
    for ch in text.chars() {
        if ch == '\\' || ch == '\'' {
            sql.push(ch);
        }
        sql.push(ch);
    }
    sql.push('\'');
    Some(())
}

/// How to begin the slow path's transaction: a failed fast path left its transaction open
/// (aborted), so it is rolled back in the same round trip.
/// (Not `Copy`: matching it out of [`begin`]'s result moves the result, which ends its borrow
/// of the connection.)
#[derive(Debug)]
pub(crate) struct SlowBegin(&'static str);

impl SlowBegin {
    pub(crate) fn statement(&self) -> &'static str {
        self.0
    }
}

/// Begins an apply transaction with the inbox rows of `rows` inserted, in one round trip.
/// `Err` when the fast path cannot be taken (a text that is no literal) or failed (an event
/// applied before, or anything else): begin with [`SlowBegin::statement`] and insert the rows
/// with `ON CONFLICT DO NOTHING`.
pub(crate) async fn begin<'c>(
    conn: &'c mut PgConnection,
    consumer: &str,
    rows: &[(uuid::Uuid, &str)],
) -> Result<Transaction<'c, Postgres>, SlowBegin> {
    let Some(sql) = begin_statement(consumer, rows) else {
        return Err(SlowBegin("BEGIN"));
    };
    conn.begin_with(AssertSqlSafe(sql)).await.map_err(|err| {
        let duplicate = err
            .as_database_error()
            .is_some_and(|db| db.is_unique_violation());
        if !duplicate {
            // The slow path meets the same trouble, if it lasts, and reports it.
            tracing::debug!(error = %err, "the one-round-trip inbox insert failed");
        }
        SlowBegin("ROLLBACK; BEGIN")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_as_escaped_literals() {
        let id = uuid::Uuid::nil();
        let sql = begin_statement("it's", &[(id, r"a\'b"), (id, "plain")]).expect("no NUL");
        assert_eq!(
            sql,
            "BEGIN; INSERT INTO inbox (consumer, event_id, subject) VALUES \
             (E'it''s', '00000000-0000-0000-0000-000000000000', E'a\\\\''b'), \
             (E'it''s', '00000000-0000-0000-0000-000000000000', E'plain')"
        );
    }

    #[test]
    fn a_nul_takes_the_slow_path() {
        let id = uuid::Uuid::nil();
        assert_eq!(begin_statement("c", &[(id, "a\0b")]), None);
        assert_eq!(begin_statement("c\0", &[(id, "ab")]), None);
    }

    /// Against the stack's PostgreSQL, in a fresh database: texts built to break out of a
    /// literal are stored as they are, whatever `standard_conforming_strings` says; an event
    /// applied before sends the caller to the slow path on a connection that can begin again;
    /// a text with a NUL goes there without a round trip.
    #[tokio::test]
    async fn hostile_texts_are_stored_verbatim_and_a_duplicate_takes_the_slow_path() {
        let database = wharf_testkit::FreshDatabase::create()
            .await
            .expect("fresh database");
        wharf_runtime::db::migrate(&database.config, &crate::migrations("svc", "svc"))
            .await
            .expect("inbox migrations");
        let pool = wharf_runtime::db::connect_lazy(&database.config, "svc").expect("pool");
        let mut conn = pool.acquire().await.expect("connection");

        let consumer = r"it's a \'consumer\";
        let hostile = [
            r"x'); DROP TABLE inbox; --",
            r"back\slash\'quote",
            "dollar $$ and $tag$ quotes",
            "ünïcödé ✓",
        ];
        for conforming in ["on", "off"] {
            let set = format!("SET standard_conforming_strings = {conforming}");
            sqlx::raw_sql(AssertSqlSafe(set))
                .execute(&mut *conn)
                .await
                .expect("set standard_conforming_strings");
            let rows: Vec<(uuid::Uuid, &str)> = hostile
                .iter()
                .map(|subject| (uuid::Uuid::now_v7(), *subject))
                .collect();
            let tx = begin(&mut conn, consumer, &rows)
                .await
                .expect("the one-round-trip path");
            tx.commit().await.expect("commit");
            let mut stored: Vec<(String, uuid::Uuid, String)> = sqlx::query_as(
                "SELECT consumer, event_id, subject FROM inbox WHERE event_id = ANY($1)",
            )
            .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await
            .expect("the inbox rows");
            stored.sort_by_key(|(_, id, _)| *id);
            let expected: Vec<(String, uuid::Uuid, String)> = rows
                .iter()
                .map(|(id, subject)| (consumer.to_owned(), *id, (*subject).to_owned()))
                .collect();
            assert_eq!(
                stored, expected,
                "standard_conforming_strings = {conforming}"
            );
        }

        // One row applied before, one new: the whole insert fails, nothing of it stays.
        let old: uuid::Uuid =
            sqlx::query_scalar("SELECT event_id FROM inbox ORDER BY event_id LIMIT 1")
                .fetch_one(&mut *conn)
                .await
                .expect("a stored id");
        let new = uuid::Uuid::now_v7();
        let slow = match begin(&mut conn, consumer, &[(new, "s"), (old, "s")]).await {
            Ok(_) => panic!("an event applied before must fail the one-round-trip insert"),
            Err(slow) => slow,
        };
        assert_eq!(slow.statement(), "ROLLBACK; BEGIN");
        let tx = conn
            .begin_with(slow.statement())
            .await
            .expect("the slow path begins on the same connection");
        tx.rollback().await.expect("rollback");
        let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE event_id = $1")
            .bind(new)
            .fetch_one(&mut *conn)
            .await
            .expect("count");
        assert_eq!(kept, 0, "the failed insert left nothing behind");

        let slow = match begin(&mut conn, consumer, &[(new, "nul\0")]).await {
            Ok(_) => panic!("a NUL cannot be a literal"),
            Err(slow) => slow,
        };
        assert_eq!(slow.statement(), "BEGIN");
        drop(conn);
        pool.close().await;
        database.drop_now().await;
    }
}

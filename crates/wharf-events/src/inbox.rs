//! The inbox rows of an apply transaction, sent with its `BEGIN`.
//!
//! sqlx cannot pipeline, so `BEGIN` and the inbox insert would be two round trips before any
//! handler runs. Almost every delivery is a first one, so the consumer first sends both as one
//! simple query, the rows written as literals and inserted without `ON CONFLICT`: one round
//! trip. An event applied before makes that insert fail with a unique violation (one line in
//! PostgreSQL's log, and the dead tuples of the rows inserted before it); the consumer then
//! rolls back and takes the slow path in the same round trip (`ROLLBACK; BEGIN`, then
//! [`INSERT_ONE`] or [`INSERT_MANY`], which skip existing rows). Texts that cannot be written
//! as literals safely take the slow path from the start. Any other failure is returned as is.
//!
//! The literals use the escape-string syntax (`E'…'`), whose quoting does not depend on
//! `standard_conforming_strings`: only `\` and `'` need escaping, and both are doubled. Only
//! ASCII texts are written so: sqlx sets `client_encoding` to UTF-8, but in a client encoding
//! a session could still switch to (Shift-JIS, Big5, GBK), `\` can be the second byte of a
//! character.

use std::fmt::Write as _;

use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Transaction};

/// One event's inbox row, skipped if it exists (`rows_affected` says which).
pub(crate) const INSERT_ONE: &str =
    "INSERT INTO inbox (consumer, event_id, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
/// The inbox rows of a batch in one statement; returns the event ids that were new.
pub(crate) const INSERT_MANY: &str = "INSERT INTO inbox (consumer, event_id, subject) \
     SELECT $1, event_id, subject FROM unnest($2::uuid[], $3::text[]) AS batch (event_id, subject) \
     ON CONFLICT DO NOTHING RETURNING event_id";

/// `BEGIN` and the insert of `rows` (event id, subject) for `consumer`, as one simple query;
/// `None` when there is no row or a text is not plain ASCII without NUL.
pub(crate) fn begin_statement(consumer: &str, rows: &[(uuid::Uuid, &str)]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
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

/// Appends `text` as an escape-string literal, if it is ASCII without NUL.
fn push_literal(sql: &mut String, text: &str) -> Option<()> {
    if !text.is_ascii() || text.contains('\0') {
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

/// Begins an apply transaction with the inbox rows of `rows` inserted, in one round trip.
///
/// `Ok(Err(statement))` when the fast path cannot be taken (a text that is no safe literal) or
/// an event of `rows` was applied before: begin with `statement` on the same
/// connection (after a unique violation it also rolls the failed transaction back) and insert
/// the rows with [`INSERT_ONE`] or [`INSERT_MANY`]. `Err` for any other failure; the
/// connection may then be inside an aborted transaction, so it must not be reused.
pub(crate) async fn begin<'c>(
    conn: &'c mut PgConnection,
    consumer: &str,
    rows: &[(uuid::Uuid, &str)],
) -> Result<Result<Transaction<'c, Postgres>, &'static str>, sqlx::Error> {
    let Some(sql) = begin_statement(consumer, rows) else {
        return Ok(Err("BEGIN"));
    };
    match conn.begin_with(AssertSqlSafe(sql)).await {
        Ok(tx) => Ok(Ok(tx)),
        Err(err)
            if err
                .as_database_error()
                .is_some_and(|db| db.is_unique_violation()) =>
        {
            Ok(Err("ROLLBACK; BEGIN"))
        }
        Err(err) => Err(err),
    }
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
    fn texts_that_are_no_safe_literal_take_the_slow_path() {
        let id = uuid::Uuid::nil();
        assert_eq!(begin_statement("c", &[(id, "a\0b")]), None);
        assert_eq!(begin_statement("c\0", &[(id, "ab")]), None);
        assert_eq!(begin_statement("c", &[(id, "ünïcödé")]), None);
        assert_eq!(begin_statement("c", &[]), None);
    }

    /// Against the stack's PostgreSQL, in a fresh database: texts built to break out of a
    /// literal are stored as they are, whatever `standard_conforming_strings` says; an event
    /// applied before sends the caller to the slow path, which begins on the same connection
    /// and inserts only the new row; a text that is no safe literal goes there without a
    /// round trip.
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
            r"E'\x27' U&'\0027'",
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
                .expect("no database error")
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

        // One row applied before, one new: the fast insert fails whole; the slow path, on the
        // same connection, inserts the new row only and leaves the old one as it was.
        let (old, old_at): (uuid::Uuid, String) = sqlx::query_as(
            "SELECT event_id, processed_at::text FROM inbox ORDER BY event_id LIMIT 1",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("a stored row");
        let new = uuid::Uuid::now_v7();
        let rows = [(new, "s"), (old, "s")];
        let slow = match begin(&mut conn, consumer, &rows).await {
            Ok(Err(slow)) => slow,
            Ok(Ok(_)) => panic!("an event applied before must fail the one-round-trip insert"),
            Err(err) => panic!("a unique violation is no error here: {err}"),
        };
        assert_eq!(slow, "ROLLBACK; BEGIN");
        let mut tx = conn
            .begin_with(slow)
            .await
            .expect("the slow path begins on the same connection");
        let inserted: Vec<uuid::Uuid> = sqlx::query_scalar(INSERT_MANY)
            .bind(consumer)
            .bind(vec![new, old])
            .bind(vec!["s", "s"])
            .fetch_all(&mut *tx)
            .await
            .expect("the slow insert");
        assert_eq!(inserted, vec![new], "only the new row is inserted");
        tx.commit().await.expect("commit");
        let old_now: String =
            sqlx::query_scalar("SELECT processed_at::text FROM inbox WHERE event_id = $1")
                .bind(old)
                .fetch_one(&mut *conn)
                .await
                .expect("the old row");
        assert_eq!(old_now, old_at, "the old row is untouched");

        let slow = match begin(&mut conn, consumer, &[(new, "nul\0")]).await {
            Ok(Err(slow)) => slow,
            _ => panic!("a NUL cannot be a literal"),
        };
        assert_eq!(slow, "BEGIN");
        drop(conn);
        pool.close().await;
        database.drop_now().await;
    }
}

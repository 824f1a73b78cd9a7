//! The shared keyset query against a real SQLite table: paging through rows
//! whose names and types tie, with filters of the caller's own before it,
//! reads every row once, in (name, type, id) order.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use trafego_common::keyset_page;
use trafego_common::paging::{Keyed, PageKey, next_token, split_page};

diesel::table! {
    rows (id) {
        id -> Integer,
        name -> Text,
        #[sql_name = "type"]
        rtype -> Text,
        record_id -> Text,
        keep -> Bool,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = rows)]
struct Row {
    name: String,
    rtype: String,
    record_id: String,
}

impl Keyed for Row {
    fn page_key(&self) -> PageKey {
        PageKey {
            name: self.name.clone(),
            rtype: self.rtype.clone(),
            record_id: self.record_id.clone(),
        }
    }
}

fn page(
    conn: &mut SqliteConnection,
    after: Option<&PageKey>,
    limit: u32,
) -> QueryResult<(Vec<Row>, bool)> {
    let q = rows::table
        .select(Row::as_select())
        .filter(rows::keep.eq(true))
        .into_boxed();
    let q = keyset_page!(q, (rows::name, rows::rtype, rows::record_id), after, limit);
    Ok(split_page(q.load(conn)?, limit))
}

#[test]
fn paging_reads_every_row_once_in_key_order() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    diesel::sql_query(
        "CREATE TABLE rows (id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, \
         record_id TEXT NOT NULL, keep BOOLEAN NOT NULL)",
    )
    .execute(&mut conn)
    .unwrap();
    let mut want = Vec::new();
    // Names and types repeat so the tie-breaks on type and id are exercised.
    for (i, name) in ["b.example.com", "a.example.com", "c.example.com"]
        .iter()
        .enumerate()
    {
        for rtype in ["TXT", "A"] {
            for id in ["2", "1", "3"] {
                let keep = !(i == 2 && rtype == "A" && id == "1");
                diesel::insert_into(rows::table)
                    .values((
                        rows::name.eq(*name),
                        rows::rtype.eq(rtype),
                        rows::record_id.eq(id),
                        rows::keep.eq(keep),
                    ))
                    .execute(&mut conn)
                    .unwrap();
                if keep {
                    want.push((name.to_string(), rtype.to_string(), id.to_string()));
                }
            }
        }
    }
    want.sort();
    for limit in [1, 2, 4, 17, 100] {
        let mut got = Vec::new();
        let mut after: Option<PageKey> = None;
        loop {
            let (rows, more) = page(&mut conn, after.as_ref(), limit).unwrap();
            assert!(rows.len() <= usize::try_from(limit).unwrap());
            let token = next_token(&rows, more);
            got.extend(rows.into_iter().map(|r| (r.name, r.rtype, r.record_id)));
            if token.is_empty() {
                break;
            }
            after = PageKey::from_token(&token).unwrap();
        }
        assert_eq!(got, want, "limit {limit}");
    }
}

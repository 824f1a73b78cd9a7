//! Keyset paging shared by both services' list RPCs: a page starts strictly
//! after the (name, type, record_id) of the previous page's last record, so
//! paging stays stable while rows are added or removed.
//!
//! Everything a list RPC needs is here, written once: the opaque token
//! ([`PageKey`]), reading it from a request ([`PageKey::from_token`]), the
//! ordered, filtered and limited query ([`keyset_page!`](crate::keyset_page)),
//! cutting the fetched rows to the page ([`split_page`]) and the next token
//! ([`next_token`]). A store only says which columns hold the key.

/// Where a page starts: strictly after this (name, type, record_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    /// Name of the last record of the previous page.
    pub name: String,
    /// Type of the last record of the previous page.
    pub rtype: String,
    /// Id of the last record of the previous page.
    pub record_id: String,
}

/// A page token that no list RPC made: the caller's field error names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadToken;

impl PageKey {
    /// The opaque token for this key.
    pub fn encode(&self) -> String {
        hex::encode(format!(
            "p1\n{}\n{}\n{}",
            self.name, self.rtype, self.record_id
        ))
    }

    /// Decodes a token made by [`PageKey::encode`]; `None` for anything else.
    pub fn decode(token: &str) -> Option<PageKey> {
        let s = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let mut it = s.splitn(4, '\n');
        if it.next()? != "p1" {
            return None;
        }
        Some(PageKey {
            name: it.next()?.to_string(),
            rtype: it.next()?.to_string(),
            record_id: it.next()?.to_string(),
        })
    }

    /// A request's `page_token`: empty is the first page (`None`), anything
    /// [`PageKey::encode`] did not make is refused.
    pub fn from_token(token: &str) -> Result<Option<PageKey>, BadToken> {
        if token.is_empty() {
            return Ok(None);
        }
        PageKey::decode(token).map(Some).ok_or(BadToken)
    }

    /// The key a page after `last` starts from.
    pub fn after<T: Keyed + ?Sized>(last: &T) -> PageKey {
        last.page_key()
    }
}

/// A row a page can end at: it knows its (name, type, record_id).
pub trait Keyed {
    /// The row's place in the (name, type, record_id) order.
    fn page_key(&self) -> PageKey;
}

/// How many rows a page of `limit` fetches: one more, to tell whether more follow.
pub fn fetch_limit(limit: u32) -> i64 {
    i64::from(limit) + 1
}

/// Cuts rows fetched with [`fetch_limit`] to the page of `limit`, and says
/// whether more follow.
pub fn split_page<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

/// The `next_page_token` of a page: the key of its last row when more
/// follow, empty when this page is the last.
pub fn next_token<T: Keyed>(rows: &[T], more: bool) -> String {
    match (more, rows.last()) {
        (true, Some(last)) => PageKey::after(last).encode(),
        _ => String::new(),
    }
}

#[doc(hidden)]
pub use diesel as __diesel;

/// Orders a boxed diesel query by `(name, type, id)`, keeps the rows strictly
/// after `after` (an `Option<&PageKey>`) and fetches [`fetch_limit`] of
/// `limit`: the one keyset query both stores run. Apply it after the list's
/// own filters; cut the rows with [`split_page`].
///
/// ```ignore
/// let q = trafego_common::keyset_page!(
///     t::table.select(Row::as_select()).into_boxed(),
///     (t::name, t::rtype, t::record_id),
///     after,
///     limit
/// );
/// let (rows, more) = split_page(q.load(conn)?, limit);
/// ```
#[macro_export]
macro_rules! keyset_page {
    ($query:expr, ($name:expr, $rtype:expr, $id:expr), $after:expr, $limit:expr $(,)?) => {{
        use $crate::paging::__diesel::prelude::*;
        let mut q = $query
            .order(($name.asc(), $rtype.asc(), $id.asc()))
            .limit($crate::paging::fetch_limit($limit));
        let after: ::std::option::Option<&$crate::paging::PageKey> = $after;
        if let ::std::option::Option::Some(k) = after {
            q = q.filter(
                $name.gt(k.name.clone()).or($name.eq(k.name.clone()).and(
                    $rtype
                        .gt(k.rtype.clone())
                        .or($rtype.eq(k.rtype.clone()).and($id.gt(k.record_id.clone()))),
                )),
            );
        }
        q
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let k = PageKey {
            name: "a.example.com".into(),
            rtype: "A".into(),
            record_id: "abc".into(),
        };
        assert_eq!(PageKey::decode(&k.encode()), Some(k));
        assert_eq!(PageKey::decode("zz"), None);
        assert_eq!(PageKey::decode(&hex::encode("x\ny\nz")), None);
    }

    #[derive(Debug, PartialEq)]
    struct Row(&'static str, &'static str, &'static str);

    impl Keyed for Row {
        fn page_key(&self) -> PageKey {
            PageKey {
                name: self.0.into(),
                rtype: self.1.into(),
                record_id: self.2.into(),
            }
        }
    }

    #[test]
    fn pages_are_cut_and_tokens_made_from_the_last_row() {
        let rows = vec![Row("a", "A", "1"), Row("b", "A", "2"), Row("c", "A", "3")];
        let (page, more) = split_page(rows, 2);
        assert!(more);
        assert_eq!(page, vec![Row("a", "A", "1"), Row("b", "A", "2")]);
        let token = next_token(&page, more);
        assert_eq!(
            PageKey::from_token(&token),
            Ok(Some(Row("b", "A", "2").page_key()))
        );
        let (page, more) = split_page(page, 2);
        assert!(!more);
        assert_eq!(next_token(&page, more), "");
        assert_eq!(next_token::<Row>(&[], true), "");
        assert_eq!(PageKey::from_token(""), Ok(None));
        assert_eq!(PageKey::from_token("not a token"), Err(BadToken));
        assert_eq!(fetch_limit(u32::MAX), i64::from(u32::MAX) + 1);
    }
}

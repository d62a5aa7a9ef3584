//! Statements that take lists of values: their placeholders, and binding them by position
//! on SQLite ([`Backend::positional`]).

use super::Backend;

/// `$first, …, $(first + n - 1)`: the placeholders of `n` values bound in order, for
/// statements that take a list (`IN (…)`, `VALUES (…)`).
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `($1, …, $width), ($width+1, …), …`: the `VALUES` of `count` rows of `width` values each,
/// numbered in order, so SQLite binds them by position ([`Backend::positional`]).
pub fn value_rows(count: usize, width: usize) -> String {
    (0..count).map(|row| format!("({})", placeholders(row * width + 1, width))).collect::<Vec<_>>().join(", ")
}

/// The backend a connection talks to.
pub fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") { Backend::Sqlite } else { Backend::Postgres }
}

impl Backend {
    /// `sql` as this backend binds it fastest. A statement is written with numbered
    /// parameters (`$1`, `$2`, …), which both backends take; on SQLite the driver looks up
    /// the name of every numbered parameter, and SQLite finds a name by a scan of all of
    /// them, so a multi-row statement with thousands of values spends quadratic time before
    /// it runs (most of a billing run, measured). Unnamed parameters (`?`) bind by position
    /// without a lookup: on SQLite, a statement whose parameters appear as `$1`, `$2`, …
    /// each once and in that order (as [`placeholders`] writes them) gets `?` for each. Any
    /// other statement is returned as it is, which is correct, only slower.
    pub fn positional(self, sql: String) -> String {
        match self {
            Self::Postgres => sql,
            Self::Sqlite => unnamed(&sql).unwrap_or(sql),
        }
    }
}

/// `sql` with `$1`, `$2`, … (in order, each once, outside quotes) as `?`; `None` when its
/// parameters are not so, or when it already holds a parameter of another form (`?`, `?3`,
/// `:name`, `@name`), whose position the rewrite would shift.
pub(super) fn unnamed(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut quote, mut next, mut copied, mut i) = (None::<u8>, 1usize, 0usize, 0usize);
    while i < bytes.len() {
        let byte = bytes[i];
        match quote {
            Some(open) if byte == open => quote = None,
            Some(_) => {}
            None if byte == b'\'' || byte == b'"' => quote = Some(byte),
            None if byte == b'?' => return None,
            None if named_parameter(bytes, i) => return None,
            None if byte == b'$' => {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > 0 {
                    let number: usize = sql[i + 1..i + 1 + digits].parse().ok()?;
                    if number != next {
                        return None;
                    }
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    next += 1;
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// Whether `bytes[i]` starts a named parameter (`:name`, `@name`); `::` is PostgreSQL's cast.
fn named_parameter(bytes: &[u8], i: usize) -> bool {
    let starts = matches!(bytes[i], b':' | b'@') && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic);
    starts && !(bytes[i] == b':' && i > 0 && bytes[i - 1] == b':')
}

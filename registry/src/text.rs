//! Bounds on free text a caller chooses and the service stores or searches with: every such
//! field has a stated maximum and a 4xx past it, so no value can be large enough to cost
//! storage or hit a database limit (SQLite refuses LIKE patterns over 50,000 bytes).

/// Display names of publishers and tenants.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Token labels: what a token is for, shown in lists and the audit log.
pub const MAX_LABEL_CHARS: usize = 100;
/// Reasons and notes (yanks, delistings, featuring): a sentence or two.
pub const MAX_REASON_CHARS: usize = 500;
/// Search terms and filters in query strings.
pub const MAX_QUERY_CHARS: usize = 200;

/// `Err` naming the field and the limit when `value` is longer than `max` characters, or
/// empty where `required`.
pub fn check(field: &str, value: &str, max: usize, required: bool) -> Result<(), String> {
    let length = value.chars().count();
    if required && value.trim().is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if length > max {
        return Err(format!("`{field}` must be at most {max} characters, got {length}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn text_is_bounded_and_required_text_present() {
        assert_eq!(check("label", "ci", 100, true), Ok(()));
        assert_eq!(check("label", "", 100, false), Ok(()));
        assert_eq!(check("label", " ", 100, true), Err("`label` must not be empty".into()));
        assert_eq!(check("q", &"é".repeat(201), 200, false), Err("`q` must be at most 200 characters, got 201".into()));
    }
}

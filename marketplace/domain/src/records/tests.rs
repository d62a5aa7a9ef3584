use super::rows::{
    ROW_PARAMETERS, ROWS_PER_STATEMENT, SQLITE_MAX_PARAMETERS, billable_usage, sqlite_script, within_parameters,
};
use super::writer::MAX_BATCH;
use super::*;

fn record(usage: &[(&str, u64)]) -> InvocationRecord {
    InvocationRecord {
        id: "inv_0123456789abcdef0123456789ab".parse().unwrap(),
        tenant: "acme".parse().unwrap(),
        install: "ins_0123456789abcdef".parse().unwrap(),
        plugin: "acme/echo".parse().unwrap(),
        version: "1.0.0".into(),
        event_id: "evt_1".into(),
        event_type: "ping".into(),
        started_at: 0,
        duration_us: 0,
        outcome: "ok".into(),
        error: None,
        fuel_used: 0,
        peak_memory_bytes: 0,
        http_requests: 0,
        kv_writes: 0,
        denials: 0,
        usage: usage.iter().map(|(meter, units)| (meter.to_string(), *units)).collect(),
        logs: Vec::new(),
        stderr: String::new(),
        data: None,
        actions: Vec::new(),
    }
}

#[test]
fn a_script_numbers_rows_then_usage_and_keeps_usage_of_inserted_rows_only() {
    let records = [record(&[]), record(&[("calls", 2), ("bytes", 7)])];
    let billable = billable_usage(&records, |_| true).unwrap();
    assert_eq!(billable, vec![(1, "bytes", 7), (1, "calls", 2)]);
    let script = sqlite_script(records.len(), &billable);
    assert!(script.starts_with("BEGIN IMMEDIATE;\nINSERT INTO invocations ("), "{script}");
    assert!(script.contains("($1, $2,") && script.contains("$42) ON CONFLICT DO NOTHING RETURNING id;"), "{script}");
    assert!(script.contains("FROM (VALUES ($22, $43, $44), ($22, $45, $46)) AS u WHERE EXISTS"), "{script}");
    // Their hours, from the same parameters, for the invocations the script kept.
    assert!(
        script.contains(
            "INSERT INTO usage_hours (install_id, meter, hour_start, units) SELECT i.install_id, u.column2, "
        ) && script
            .contains("FROM (VALUES ($22, $43, $44), ($22, $45, $46)) AS u JOIN invocations i ON i.id = u.column1"),
        "{script}"
    );
    assert!(script.ends_with(";\nCOMMIT;"), "{script}");
    // Without usage, one statement in autocommit, its parameters in order.
    let script = sqlite_script(3, &[]);
    assert!(
        script.starts_with("INSERT INTO invocations (") && script.ends_with("?) ON CONFLICT DO NOTHING RETURNING id"),
        "{script}"
    );
    assert_eq!((script.matches('?').count(), script.matches('$').count(), script.matches(';').count()), (63, 0, 0));
    let script = sqlite_script(ROWS_PER_STATEMENT + 1, &[]);
    assert!(script.starts_with("BEGIN IMMEDIATE;") && script.ends_with("COMMIT;"), "{script}");
    assert_eq!(script.matches("INSERT INTO invocations").count(), 2, "{script}");
    let failed = InvocationRecord { outcome: "trapped".into(), ..record(&[("calls", 1)]) };
    assert_eq!(billable_usage(&[failed], |_| true).unwrap(), Vec::new());
    assert!(billable_usage(&[record(&[("calls", u64::MAX)])], |_| true).is_err());
}

#[test]
fn scripts_stay_within_sqlites_parameters() {
    let small: Vec<InvocationRecord> = (0..MAX_BATCH).map(|_| record(&[("calls", 1)])).collect();
    assert_eq!(within_parameters(&small).iter().map(|part| part.len()).collect::<Vec<_>>(), vec![MAX_BATCH]);
    let meters: Vec<(String, u64)> = (0..4000).map(|n| (format!("m{n}"), 1)).collect();
    let meters: Vec<(&str, u64)> = meters.iter().map(|(m, u)| (m.as_str(), *u)).collect();
    let large: Vec<InvocationRecord> = (0..9).map(|_| record(&meters)).collect();
    let parts = within_parameters(&large);
    assert_eq!(parts.iter().map(|part| part.len()).collect::<Vec<_>>(), vec![4, 4, 1]);
    for part in parts {
        let used: usize = part.iter().map(|r| ROW_PARAMETERS + 2 * r.usage.len()).sum();
        assert!(used <= SQLITE_MAX_PARAMETERS, "{used}");
    }
}

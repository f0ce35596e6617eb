//! The admission corpus (contracts/corpus/*.jsonl): every message gets the code its line expects. The Spark
//! jobs' parsers are held to the same lines (tests/contract/test_admission_corpus.py), so the two sides
//! cannot give different codes for one message.

use std::collections::BTreeSet;

use sparktrends_contract::corpus::{cases, Case};
use sparktrends_contract::{
    admission, admit_bar, admit_company, admit_trade, admit_trade_message, limits, Received,
    Reject, RejectCode,
};

fn check<T>(file: &str, admit: impl Fn(&Case) -> Result<T, Reject>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases(file) {
        let got = admit(&case).err().map(|r| r.code.as_str().to_string());
        if got != case.expect {
            failures.push(format!(
                "{file}: {}: got {got:?}, expected {:?} ({:?})",
                case.name,
                case.expect,
                admit(&case).err().map(|r| r.reason())
            ));
        }
        seen.extend(got);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    seen
}

#[test]
fn every_corpus_message_gets_its_code() {
    let mut seen = check("trades.jsonl", |c| {
        admit_trade(&c.raw, Received::history(c.received_ms))
    });
    seen.extend(check("bars.jsonl", |c| {
        admit_bar(&c.raw, Received::history(c.received_ms))
    }));
    seen.extend(check("companies.jsonl", |c| admit_company(&c.raw)));
    // Every code a consumer of the topics can give is exercised, so a new rule needs a corpus line. ts_too_old
    // is ingest's live window only (a job reading a topic holds history on purpose); ingest codes never reach
    // a topic consumer.
    let untested: Vec<&str> = RejectCode::ALL
        .iter()
        .filter(|c| c.stage() != "ingest" && **c != RejectCode::TsTooOld)
        .map(|c| c.as_str())
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(
        untested.is_empty(),
        "codes without a corpus case: {untested:?}"
    );
}

/// The codes a trades-topic message gets, one per element.
fn element_codes(raw: &[u8], received_ms: i64) -> Vec<Option<String>> {
    admit_trade_message(raw, Received::history(received_ms))
        .into_iter()
        .map(|e| e.admitted.err().map(|r| r.code.as_str().to_string()))
        .collect()
}

#[test]
fn every_trade_batch_gets_a_code_per_trade() {
    for case in cases("trade_batches.jsonl") {
        assert_eq!(
            element_codes(&case.raw, case.received_ms),
            case.expect_each,
            "{}",
            case.name
        );
    }
}

#[test]
fn the_typed_fast_path_agrees_with_admission_through_a_json_map() {
    let mut compared = 0;
    for case in cases("trades.jsonl")
        .into_iter()
        .chain(cases("trade_batches.jsonl"))
    {
        let received = Received::history(case.received_ms);
        for element in admit_trade_message(&case.raw, received) {
            let through_map = admission::admit_trade_through_map(element.raw, received);
            assert_eq!(
                admit_trade(element.raw, received),
                through_map,
                "{}",
                case.name
            );
            compared += 1;
        }
    }
    assert!(compared > 50, "{compared} trades compared");
}

#[test]
fn a_single_trade_message_is_one_element_with_its_own_code() {
    for case in cases("trades.jsonl") {
        let elements = admit_trade_message(&case.raw, Received::history(case.received_ms));
        assert_eq!(elements.len(), 1, "{}", case.name);
        assert_eq!(elements[0].element, 0);
        if !case.raw.starts_with(b"[") {
            assert_eq!(elements[0].raw, case.raw.as_slice());
        }
        let code = elements[0]
            .admitted
            .as_ref()
            .err()
            .map(|r| r.code.as_str().to_string());
        assert_eq!(code, case.expect, "{}", case.name);
    }
}

#[test]
fn a_batch_keeps_each_trades_bytes_and_position_and_is_bounded() {
    let trade = |id: usize| {
        format!(
            r#"{{"source":"x","symbol":"A","ts_ms":1700000000000,"price":1,"size":1,"trade_id":"{id}"}}"#
        )
    };
    let batch = |n: usize| format!("[{}]", (0..n).map(trade).collect::<Vec<_>>().join(","));
    let full = batch(limits::MAX_BATCH_TRADES as usize);
    let elements = admit_trade_message(full.as_bytes(), Received::history(1_700_000_000_000));
    assert_eq!(elements.len(), limits::MAX_BATCH_TRADES as usize);
    assert!(elements.iter().all(|e| e.admitted.is_ok()));
    assert_eq!(elements[7].element, 7);
    assert_eq!(elements[7].raw, trade(7).as_bytes());

    let over = batch(limits::MAX_BATCH_TRADES as usize + 1);
    let codes = element_codes(over.as_bytes(), 1_700_000_000_000);
    assert_eq!(codes, vec![Some("oversized_message".to_string())]);

    // Each trade of a batch is held to a single message's size limit.
    let padded = format!(
        r#"[{}, {{"source":"{}","symbol":"A","ts_ms":1700000000000,"price":1,"size":1}}]"#,
        trade(1),
        "x".repeat(limits::MAX_MESSAGE_BYTES as usize)
    );
    let codes = element_codes(padded.as_bytes(), 1_700_000_000_000);
    assert_eq!(codes, vec![None, Some("oversized_message".to_string())]);
    let huge = format!("[{}]", " ".repeat(limits::MAX_BATCH_BYTES as usize));
    assert_eq!(
        element_codes(huge.as_bytes(), 1_700_000_000_000),
        vec![Some("oversized_message".to_string())]
    );
}

#[test]
fn live_data_older_than_the_window_is_too_old() {
    let raw = br#"{"source":"x","symbol":"A","ts_ms":1700000000000,"price":1,"size":1}"#;
    let err = admit_trade(raw, Received::live(1_700_000_060_001, 60_000)).unwrap_err();
    assert_eq!(err.code, RejectCode::TsTooOld);
    assert!(admit_trade(raw, Received::live(1_700_000_060_000, 60_000)).is_ok());
}

#[test]
fn printable_payload_escapes_nul_and_bounds_length() {
    assert_eq!(admission::printable_payload(b"a\0b"), "a\\u0000b");
    assert_eq!(admission::printable_payload(b"\xffx"), "\u{fffd}x");
    let long = vec![b'a'; 20_000];
    let kept = admission::printable_payload(&long);
    assert!(
        kept.ends_with("(20000 bytes in all)"),
        "{}",
        &kept[kept.len() - 40..]
    );
}

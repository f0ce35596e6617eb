//! The admission corpus (contracts/corpus/*.jsonl): every message gets the code its line expects. The Spark
//! jobs' parsers are held to the same lines (tests/contract/test_admission_corpus.py), so the two sides
//! cannot give different codes for one message.

use std::collections::BTreeSet;

use sparktrends_contract::corpus::{cases, Case};
use sparktrends_contract::{
    admission, admit_bar, admit_company, admit_trade, Received, Reject, RejectCode,
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

//! Ingest's validator against the admission corpus (contracts/corpus): every message a source could build
//! (it passes the field rules, so it is a struct) gets the code the corpus expects, the same the Spark
//! jobs give the raw message.

use serde::de::DeserializeOwned;
use sparktrends_contract::admission::{check_fields, envelope};
use sparktrends_contract::corpus::cases;
use sparktrends_ingest::messages::{Bar, Company, Trade};
use sparktrends_ingest::validation::{TimeCheck, Validator};

/// The corpus lines that are messages a source could have built, as structs, with their expected codes.
fn buildable<T: DeserializeOwned>(file: &str, kind: &str) -> Vec<(String, T, i64, Option<String>)> {
    cases(file)
        .into_iter()
        .filter_map(|case| {
            let object = envelope(&case.raw).ok()?;
            check_fields(kind, &object).ok()?;
            let message = serde_json::from_value(serde_json::Value::Object(object)).ok()?;
            Some((case.name, message, case.received_ms, case.expect))
        })
        .collect()
}

#[test]
fn the_validator_gives_every_buildable_message_its_corpus_code() {
    let validator = Validator::new(None, i64::MAX);
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut compare = |name: &str, got: Option<String>, expect: &Option<String>| {
        compared += 1;
        if got != *expect {
            failures.push(format!(
                "{name}: ingest says {got:?}, the corpus {expect:?}"
            ));
        }
    };
    for (name, trade, at, expect) in buildable::<Trade>("trades.jsonl", "trade") {
        let got = validator.check_trade(&trade, at, TimeCheck::Exempt).err();
        compare(&name, got.map(|r| r.code.to_string()), &expect);
    }
    for (name, bar, at, expect) in buildable::<Bar>("bars.jsonl", "bar") {
        let got = validator.check_bar(&bar, at, TimeCheck::Exempt).err();
        compare(&name, got.map(|r| r.code.to_string()), &expect);
    }
    for (name, company, _, expect) in buildable::<Company>("companies.jsonl", "company") {
        let got = validator.check_company(&company).err();
        compare(&name, got.map(|r| r.code.to_string()), &expect);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(compared > 30, "only {compared} corpus messages compared");
}

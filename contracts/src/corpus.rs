//! The admission corpus (contracts/corpus/*.jsonl): messages, good and bad, each with the reject code it must
//! get (null: admitted). Every consumer of the topics is tested against it: this crate's admission, ingest's
//! validator, and the Spark jobs' parsers (tests/contract in Python), so no two can give one message
//! different codes.

use serde_json::Value;

/// One corpus line.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub raw: Vec<u8>,
    pub received_ms: i64,
    pub expect: Option<String>,
    /// A trade batch's line (trade_batches.jsonl): the code of each element, in order.
    pub expect_each: Vec<Option<String>>,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The cases of `file` (`trades.jsonl`, `trade_batches.jsonl`, `bars.jsonl`, `companies.jsonl`). A line holds `raw` text or
/// `raw_hex` bytes; `pad_bytes` inserts that many spaces before the closing brace (an oversized message
/// that is otherwise valid).
pub fn cases(file: &str) -> Vec<Case> {
    let path = format!("{}/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a corpus line is JSON");
            let mut raw = match v.get("raw_hex") {
                Some(h) => hex(h.as_str().expect("raw_hex is text")),
                None => v["raw"].as_str().expect("raw is text").as_bytes().to_vec(),
            };
            if let Some(pad) = v.get("pad_bytes").and_then(Value::as_u64) {
                let close = raw.pop().expect("a non-empty raw to pad");
                raw.extend(std::iter::repeat_n(b' ', pad as usize));
                raw.push(close);
            }
            Case {
                name: v["case"].as_str().expect("case").to_string(),
                raw,
                received_ms: v["received_ms"].as_i64().expect("received_ms"),
                expect: v["expect"].as_str().map(str::to_string),
                expect_each: v["expect"]
                    .as_array()
                    .map(|codes| {
                        codes
                            .iter()
                            .map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

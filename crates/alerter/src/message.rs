//! What an alert says: the Slack Block Kit payload and the one-line console/fallback text, built from the
//! lead anomaly (row columns plus the metrics in `details`) and the rows folded into it.
//!
//! Every metric is optional: a key the metrics job did not write (or wrote as null) is left out rather than
//! shown as "null", so a partial row still yields a valid message.

use serde_json::{json, Value};

use crate::anomaly::Anomaly;

/// Folded rows listed one per line under the headline; the rest are only counted (Slack caps a section's
/// text at 3000 characters).
const MAX_LISTED_FOLDED: usize = 10;
/// Slack's limit for a header's plain text.
const MAX_HEADER_CHARS: usize = 150;

/// The JSON body posted to the webhook: `{"text": fallback, "blocks": [...]}`.
pub fn slack_payload(lead: &Anomaly, folded: &[Anomaly]) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header(lead), "emoji": true}}),
        json!({"type": "section", "fields": fields(lead)}),
    ];
    if !folded.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": folded_summary(lead, folded)}}));
    }
    blocks
        .push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context(lead)}]}));
    json!({"text": escape(&fallback_text(lead, folded.len())), "blocks": blocks})
}

/// One readable line: the Slack notification text, and what the console prints when no webhook is set.
pub fn fallback_text(lead: &Anomaly, folded: usize) -> String {
    let mut parts = vec![format!(
        "[{}] {} {} at {}",
        lead.severity,
        lead.symbol,
        lead.kind,
        lead.ts.format("%Y-%m-%d %H:%M UTC")
    )];
    if let Some(close) = lead.metric("close") {
        parts.push(format!("close {}", price(close)));
    }
    if let Some(ret) = return_text(lead) {
        parts.push(format!("return {ret}"));
    }
    for (key, label) in [
        ("return_z", "return_z"),
        ("robust_z", "robust_z"),
        ("volume_z", "volume_z"),
    ] {
        if let Some(z) = lead.metric(key) {
            parts.push(format!("{label} {z:+.2}"));
        }
    }
    parts.push(format!("score {:.2}", lead.score));
    let mut line = parts.join(" | ");
    line.push_str(&format!(" | anomaly #{}", lead.id));
    if folded > 0 {
        line.push_str(&format!(" (+{folded} more for {})", lead.symbol));
    }
    line
}

fn header(lead: &Anomaly) -> String {
    let icon = match crate::severity::rank(&lead.severity) {
        4.. => ":rotating_light:",
        2..=3 => ":warning:",
        _ => ":information_source:",
    };
    let text = format!(
        "{icon} {} {} ({})",
        lead.symbol,
        lead.kind.replace(['_', ','], " "),
        lead.severity
    );
    truncate_chars(&text, MAX_HEADER_CHARS)
}

/// Section fields (Slack allows at most 10); optional metrics only when present.
fn fields(lead: &Anomaly) -> Vec<Value> {
    let mut fields = vec![
        ("Symbol", escape(&lead.symbol)),
        ("Bar (UTC)", lead.ts.format("%Y-%m-%d %H:%M").to_string()),
        ("Kind", escape(&lead.kind)),
        ("Severity", escape(&lead.severity)),
    ];
    if let Some(close) = lead.metric("close") {
        fields.push(("Close", price(close)));
    }
    if let Some(ret) = return_text(lead) {
        fields.push(("Return", ret));
    }
    for (key, label) in [
        ("return_z", "Return z"),
        ("robust_z", "Robust z"),
        ("volume_z", "Volume z"),
    ] {
        if let Some(z) = lead.metric(key) {
            fields.push((label, format!("{z:+.2}")));
        }
    }
    fields.push(("Score", format!("{:.2}", lead.score)));
    fields
        .into_iter()
        .map(|(label, value)| json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")}))
        .collect()
}

fn context(lead: &Anomaly) -> String {
    let mut parts = vec![format!("anomaly #{}", lead.id)];
    if let Some(vol) = lead.metric("vol_cc") {
        parts.push(format!("vol_cc {:.3}%/bar", vol * 100.0));
    }
    if let Some(score) = lead.metric("anomaly_score") {
        parts.push(format!("anomaly_score {score:.2}"));
    }
    parts.push("SparkTrends".to_string());
    parts.join(" · ")
}

fn folded_summary(lead: &Anomaly, folded: &[Anomaly]) -> String {
    let mut text = format!(
        "*+{} more for {} in this burst*",
        folded.len(),
        escape(&lead.symbol)
    );
    for a in folded.iter().take(MAX_LISTED_FOLDED) {
        text.push_str(&format!(
            "\n• {} {} · {} · score {:.2}",
            a.ts.format("%H:%M"),
            escape(&a.kind),
            escape(&a.severity),
            a.score
        ));
    }
    if folded.len() > MAX_LISTED_FOLDED {
        text.push_str(&format!("\n…and {} more", folded.len() - MAX_LISTED_FOLDED));
    }
    text
}

/// Simple return as a percentage; the log return when the simple one is missing.
/// The bar's return; with the return over its last two bars when the metrics job wrote it, because a price
/// jump is reported by the bar that confirms it held: the move itself is the bar before.
fn return_text(a: &Anomaly) -> Option<String> {
    let bar = match (a.metric("ret"), a.metric("log_ret")) {
        (Some(ret), _) => format!("{:+.2}%", ret * 100.0),
        (None, Some(log_ret)) => format!("{:+.2}% (log)", log_ret * 100.0),
        (None, None) => return None,
    };
    Some(match a.metric("ret_2_bars") {
        Some(two) => format!("{bar} (2 bars: {:+.2}%)", two * 100.0),
        None => bar,
    })
}

/// Six significant digits (crypto quotes go far below 1), at least two decimals, no trailing zeros past them.
fn price(value: f64) -> String {
    let magnitude = if value == 0.0 {
        0
    } else {
        value.abs().log10().floor() as i32
    };
    let decimals = (5 - magnitude).clamp(2, 10) as usize;
    let mut text = format!("{value:.decimals$}");
    if let Some(dot) = text.find('.') {
        while text.len() > dot + 3 && text.ends_with('0') {
            text.pop();
        }
    }
    text
}

/// Slack mrkdwn needs `&`, `<` and `>` escaped; anything else in a symbol or kind is shown as is.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::fixtures::anomaly;

    fn full() -> Anomaly {
        let mut a = anomaly(42, "BTCUSDT", "critical", 7.25);
        a.details = json!({
            "close": 64123.5, "ret": -0.0321, "log_ret": -0.0326, "return_z": -6.1, "robust_z": -8.0,
            "volume_z": 2.05, "vol_cc": 0.0012, "anomaly_score": 7.25
        });
        a
    }

    fn all_text(payload: &Value) -> String {
        payload.to_string()
    }

    #[test]
    fn payload_carries_text_and_blocks_with_every_metric() {
        let payload = slack_payload(&full(), &[]);
        let text = payload["text"].as_str().unwrap();
        assert!(
            text.starts_with("[critical] BTCUSDT price_jump at 2026-03-02 15:13 UTC"),
            "{text}"
        );
        let blocks = payload["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[1]["type"], "section");
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.len() <= 10, "Slack allows at most 10 fields");
        for expected in [
            "*Symbol*\nBTCUSDT",
            "*Bar (UTC)*\n2026-03-02 15:13",
            "*Kind*\nprice_jump",
            "*Severity*\ncritical",
            "*Close*\n64123.50",
            "*Return*\n-3.21%",
            "*Return z*\n-6.10",
            "*Robust z*\n-8.00",
            "*Volume z*\n+2.05",
            "*Score*\n7.25",
        ] {
            assert!(
                fields.contains(&expected),
                "missing {expected:?} in {fields:?}"
            );
        }
        let context = blocks.last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            context.contains("vol_cc 0.120%/bar") && context.contains("anomaly #42"),
            "{context}"
        );
    }

    #[test]
    fn a_confirmed_jump_shows_the_move_over_two_bars() {
        let mut a = anomaly(7, "AAPL", "warning", 1.4);
        a.details = json!({"ret": 0.0002, "ret_2_bars": -0.0151});
        assert!(fallback_text(&a, 0).contains("return +0.02% (2 bars: -1.51%)"));
    }

    #[test]
    fn missing_metrics_are_left_out_not_shown_as_null() {
        let mut a = anomaly(7, "AAPL", "warning", 1.4);
        a.details = json!({"log_ret": 0.01, "volume_z": null});
        let payload = slack_payload(&a, &[]);
        let body = all_text(&payload);
        assert!(!body.contains("null") && !body.contains("NaN"), "{body}");
        assert!(!body.contains("*Close*") && !body.contains("*Volume z*"));
        assert!(body.contains("+1.00% (log)"));
        assert_eq!(
            fallback_text(&a, 0),
            "[warning] AAPL price_jump at 2026-03-02 14:38 UTC | return +1.00% (log) | score 1.40 | anomaly #7"
        );
    }

    #[test]
    fn folded_rows_are_summarised_and_bounded() {
        let folded: Vec<_> = (100..125)
            .map(|id| anomaly(id, "BTCUSDT", "warning", 1.1))
            .collect();
        let payload = slack_payload(&full(), &folded);
        let summary = payload["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(
            summary.starts_with("*+25 more for BTCUSDT in this burst*"),
            "{summary}"
        );
        assert_eq!(summary.matches('•').count(), MAX_LISTED_FOLDED);
        assert!(summary.ends_with("…and 15 more"));
        assert!(payload["text"]
            .as_str()
            .unwrap()
            .ends_with("(+25 more for BTCUSDT)"));
    }

    #[test]
    fn mrkdwn_control_characters_are_escaped_but_plain_text_is_not() {
        let a = anomaly(1, "A&B<C>", "warning", 1.0);
        let payload = slack_payload(&a, &[]);
        assert_eq!(
            payload["blocks"][1]["fields"][0]["text"],
            "*Symbol*\nA&amp;B&lt;C&gt;"
        );
        assert!(payload["text"]
            .as_str()
            .unwrap()
            .contains("A&amp;B&lt;C&gt; price_jump"));
        // The header is plain_text: Slack shows it literally, so escaping would print "&amp;".
        assert!(payload["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("A&B<C>"));
    }

    #[test]
    fn prices_keep_six_significant_digits() {
        assert_eq!(price(64123.5), "64123.50");
        assert_eq!(price(187.25), "187.25");
        assert_eq!(price(1.234567), "1.23457");
        assert_eq!(price(0.00001234), "0.00001234");
        assert_eq!(price(0.0), "0.00");
    }

    #[test]
    fn header_fits_slack_limit() {
        let mut a = full();
        a.symbol = "X".repeat(400);
        let payload = slack_payload(&a, &[]);
        assert!(
            payload["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= MAX_HEADER_CHARS
        );
    }
}

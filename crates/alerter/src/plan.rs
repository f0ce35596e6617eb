//! Grouping and per-symbol cooldown, as a pure decision over the rows one transaction claimed.
//!
//! A transaction claims every due pending row of one symbol (see `outbox`). Those rows become:
//! - **one message** (`Plan::Send`): the most severe row leads it (then highest score, then earliest bar); the
//!   others are *folded* into it: listed in the same message and marked `delivered` with its `message_id`;
//! - or **nothing** (`Plan::Suppress`), when the symbol was alerted less than `cooldown` ago and none of the
//!   rows is more severe than that alert: they are marked `suppressed` with the `message_id` of the alert
//!   that covered them.
//!
//! A row more severe than the last alert breaks the cooldown, so an escalation from warning to critical is
//! never swallowed.

use std::cmp::Ordering;
use std::time::Duration;

use crate::anomaly::Anomaly;
use crate::severity;

/// The last message sent for a symbol (from `alert_messages`).
#[derive(Debug, Clone, PartialEq)]
pub struct LastMessage {
    pub id: i64,
    pub severity: String,
    /// How long ago it was sent, by the database clock.
    pub age: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Send { lead: i64, folded: Vec<i64> },
    Suppress { message_id: i64, ids: Vec<i64> },
}

/// None only for an empty group.
pub fn plan(group: &[Anomaly], last: Option<&LastMessage>, cooldown: Duration) -> Option<Plan> {
    let lead = group.iter().max_by(|a, b| headline_order(a, b))?;
    if let Some(last) = last {
        let cooling = last.age < cooldown;
        let escalates = severity::rank(&lead.severity) > severity::rank(&last.severity);
        if cooling && !escalates {
            return Some(Plan::Suppress {
                message_id: last.id,
                ids: group.iter().map(|a| a.id).collect(),
            });
        }
    }
    let folded = group
        .iter()
        .filter(|a| a.id != lead.id)
        .map(|a| a.id)
        .collect();
    Some(Plan::Send {
        lead: lead.id,
        folded,
    })
}

/// `Greater` = more worthy of heading the message.
fn headline_order(a: &Anomaly, b: &Anomaly) -> Ordering {
    severity::rank(&a.severity)
        .cmp(&severity::rank(&b.severity))
        .then_with(|| a.score.abs().total_cmp(&b.score.abs()))
        .then_with(|| b.ts.cmp(&a.ts))
        .then_with(|| b.id.cmp(&a.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::fixtures::anomaly;

    const COOLDOWN: Duration = Duration::from_secs(300);

    fn last(severity: &str, age_s: u64) -> LastMessage {
        LastMessage {
            id: 77,
            severity: severity.into(),
            age: Duration::from_secs(age_s),
        }
    }

    #[test]
    fn a_burst_becomes_one_message_led_by_the_most_severe_row() {
        let mut burst: Vec<_> = (1..=50)
            .map(|id| anomaly(id, "BTCUSDT", "warning", 2.0))
            .collect();
        burst[30] = anomaly(31, "BTCUSDT", "critical", 1.2);
        let Some(Plan::Send { lead, folded }) = plan(&burst, None, COOLDOWN) else {
            panic!("expected a send")
        };
        assert_eq!(lead, 31);
        assert_eq!(folded.len(), 49);
        assert!(!folded.contains(&31));
    }

    #[test]
    fn ties_go_to_the_higher_score_then_the_earlier_bar() {
        let group = vec![
            anomaly(1, "X", "warning", 2.0),
            anomaly(2, "X", "warning", -3.0),
            anomaly(3, "X", "warning", 3.0),
        ];
        assert_eq!(
            plan(&group, None, COOLDOWN),
            Some(Plan::Send {
                lead: 2,
                folded: vec![1, 3]
            })
        );
    }

    #[test]
    fn within_the_cooldown_same_or_lower_severity_is_suppressed() {
        let group = vec![
            anomaly(5, "X", "warning", 9.0),
            anomaly(6, "X", "warning", 1.0),
        ];
        assert_eq!(
            plan(&group, Some(&last("warning", 10)), COOLDOWN),
            Some(Plan::Suppress {
                message_id: 77,
                ids: vec![5, 6]
            })
        );
        assert!(matches!(
            plan(&group, Some(&last("critical", 10)), COOLDOWN),
            Some(Plan::Suppress { .. })
        ));
    }

    #[test]
    fn higher_severity_breaks_the_cooldown() {
        let group = vec![
            anomaly(5, "X", "warning", 9.0),
            anomaly(6, "X", "critical", 1.0),
        ];
        assert_eq!(
            plan(&group, Some(&last("warning", 10)), COOLDOWN),
            Some(Plan::Send {
                lead: 6,
                folded: vec![5]
            })
        );
    }

    #[test]
    fn after_the_cooldown_anything_is_sent_again() {
        let group = vec![anomaly(5, "X", "warning", 1.0)];
        assert!(matches!(
            plan(&group, Some(&last("critical", 300)), COOLDOWN),
            Some(Plan::Send { lead: 5, .. })
        ));
        assert!(matches!(
            plan(&group, Some(&last("critical", 0)), Duration::ZERO),
            Some(Plan::Send { .. })
        ));
    }

    #[test]
    fn empty_group_has_no_plan() {
        assert_eq!(plan(&[], None, COOLDOWN), None);
    }
}

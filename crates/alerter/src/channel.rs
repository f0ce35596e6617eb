//! Where a message goes: the Slack webhook, or (no `SLACK_WEBHOOK`) one line on stdout.

use std::io::Write;

use crate::anomaly::Anomaly;
use crate::message;
use crate::slack::{Outcome, Webhook};

pub enum Channel {
    Slack(Webhook),
    Console,
}

/// Recorded on the lead row of a message that went to the console, so nobody mistakes it for a Slack alert.
pub const CONSOLE_NOTE: &str = "console: SLACK_WEBHOOK is not set, alert printed to stdout";

impl Channel {
    /// The `alert_messages.channel` value.
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack",
            Channel::Console => "console",
        }
    }

    /// The note stored on the lead row when the message is delivered.
    pub fn note(&self) -> Option<&'static str> {
        match self {
            Channel::Slack(_) => None,
            Channel::Console => Some(CONSOLE_NOTE),
        }
    }

    pub async fn deliver(&self, lead: &Anomaly, folded: &[Anomaly]) -> Outcome {
        match self {
            Channel::Slack(webhook) => webhook.post(&message::slack_payload(lead, folded)).await,
            Channel::Console => {
                let line = format!("ALERT {}", message::fallback_text(lead, folded.len()));
                let mut stdout = std::io::stdout().lock();
                match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                    Ok(()) => Outcome::Delivered,
                    // A closed stdout is not going to reopen by itself.
                    Err(error) => Outcome::Permanent {
                        reason: format!("console: cannot write to stdout: {error}"),
                    },
                }
            }
        }
    }
}

//! One shutdown flag for every task: set by SIGINT/SIGTERM (or a source that finished), awaited by the rest.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct ShutdownTrigger {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (
        ShutdownTrigger {
            sender: std::sync::Arc::new(sender),
        },
        Shutdown { receiver },
    )
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once shutdown is triggered (at once if it already was).
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // An error means every trigger is gone, which only happens at exit: treat it as shutdown too.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }

    /// Sleep that ends early on shutdown; returns false when it was cut short.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.wait() => false,
        }
    }
}

/// Trigger shutdown on SIGINT or SIGTERM.
pub async fn on_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!("{name} received: stopping sources, flushing the producer");
    trigger.trigger();
    Ok(())
}

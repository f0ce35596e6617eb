//! PostgreSQL connections from the POSTGRES_* settings. The password is handed to the driver and nowhere else.

use std::time::Duration;

use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use sparktrends_service::secret::Secret;

#[derive(Debug, Clone)]
pub struct PgSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<Secret>,
}

impl PgSettings {
    /// Where we connect, for logs: never the password.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// A client and the connection future that drives it; the caller spawns (or polls) the latter.
    pub async fn connect(
        &self,
        role: &str,
    ) -> Result<(Client, Connection<Socket, NoTlsStream>), tokio_postgres::Error> {
        let mut config = Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(format!("sparktrends-alerter/{role}"))
            .connect_timeout(Duration::from_secs(5))
            .keepalives_idle(Duration::from_secs(30));
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config.connect(NoTls).await
    }

    /// A client whose connection runs on its own task; errors end that task and surface on the next query.
    pub async fn connect_client(&self, role: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.connect(role).await?;
        let role = role.to_string();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!("postgres connection ({role}) closed: {error}");
            }
        });
        Ok(client)
    }
}

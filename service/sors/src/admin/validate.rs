//! Trying entered credentials for real before anything is saved: a temporary ICWS client that
//! must reach `Connected`, a temporary Salesforce client that must log in. Each failure is
//! told in the words an administrator acts on; no message holds a password (the clients' errors
//! never do, and the words here name only servers and user names).

use std::time::Duration;

use sors_icws::{Icws, IcwsConfig, IcwsError, IcwsEvent};
use sors_salesforce::{LoginConfig, Names, Salesforce, SfError};

/// Why a CIC connection did not come up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CicProblem {
    WrongCredentials,
    Unreachable,
    NotIcws,
    Certificate,
    StandbyOnly,
    NoAnswer { secs: u64 },
    Settings(String),
    Other(String),
}

impl CicProblem {
    fn of(e: &IcwsError) -> CicProblem {
        if e.is_authentication_failure() {
            CicProblem::WrongCredentials
        } else if e.is_certificate_problem() {
            CicProblem::Certificate
        } else if e.is_unreachable() {
            CicProblem::Unreachable
        } else if e.is_not_icws() {
            CicProblem::NotIcws
        } else if e.is_standby() {
            CicProblem::StandbyOnly
        } else {
            CicProblem::Other(e.to_string())
        }
    }

    /// The page's sentence; `servers` as entered.
    pub fn words(&self, servers: &str) -> String {
        match self {
            CicProblem::WrongCredentials => "CIC refused the user name or password. Check both (the password is case-sensitive) and try again.".into(),
            CicProblem::Unreachable => format!("The CIC server {servers} cannot be reached: the connection was refused, the name is unknown, or no answer came in time. Check the server name and port, and that this host may connect to it."),
            CicProblem::NotIcws => format!("Something answered at {servers}, but it is not the CIC web services (ICWS). Check the server name and port: ICWS listens on 8019 (HTTPS) or 8018 (HTTP)."),
            CicProblem::Certificate => format!("The certificate of {servers} is not trusted by this host, or is not made out to that name. Use the name on the certificate, or make this host trust the CIC certificate."),
            CicProblem::StandbyOnly => format!("Only a standby CIC server answered ({servers}) and no other server took the connection. Enter the active server, or add the backup server."),
            CicProblem::NoAnswer { secs } => format!("No CIC session came up within {secs} s ({servers}). Check the server name and port."),
            CicProblem::Settings(m) => format!("These CIC settings cannot be used: {m}"),
            CicProblem::Other(m) => format!("Could not connect to CIC: {m}"),
        }
    }
}

/// Connects with `cfg` and waits for a session (or the first failed round) up to `wait`.
/// Returns the server that took the connection. The temporary session is closed either way.
pub async fn try_cic(cfg: IcwsConfig, wait: Duration) -> Result<String, CicProblem> {
    let (icws, mut events) = Icws::start(cfg).map_err(|e| CicProblem::Settings(e.to_string()))?;
    let outcome = tokio::time::timeout(wait, async {
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(IcwsEvent::Connected { server, .. }) => return Ok(server),
                    Some(_) => {}
                    None => return Err(CicProblem::Other("the CIC client stopped".into())),
                },
                _ = poll.tick() => {
                    let status = icws.status();
                    if !status.connected
                        && let Some(text) = status.last_error
                    {
                        // The first round failed: its most telling error is the answer (the
                        // client follows a standby's 503 to the alternate within the round).
                        let e = IcwsError::from_status_text(&text);
                        return Err(if status.auth_failing {
                            CicProblem::WrongCredentials
                        } else {
                            CicProblem::of(&e)
                        });
                    }
                }
            }
        }
    })
    .await
    .unwrap_or(Err(CicProblem::NoAnswer {
        secs: wait.as_secs(),
    }));
    icws.shutdown().await;
    outcome
}

/// Why a Salesforce login did not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesforceProblem {
    WrongPassword,
    WrongClient,
    ApiDisabled,
    RateExceeded,
    NeedsMyDomain,
    Unreachable,
    Certificate,
    NoAnswer { secs: u64 },
    Other(String),
}

impl SalesforceProblem {
    fn of(e: &SfError) -> SalesforceProblem {
        if e.is_invalid_login() {
            SalesforceProblem::WrongPassword
        } else if e.is_invalid_client() {
            SalesforceProblem::WrongClient
        } else if e.is_api_disabled() {
            SalesforceProblem::ApiDisabled
        } else if e.is_login_rate_exceeded() {
            SalesforceProblem::RateExceeded
        } else if e.needs_my_domain() {
            SalesforceProblem::NeedsMyDomain
        } else if e.is_certificate_problem() {
            SalesforceProblem::Certificate
        } else if e.is_unreachable() {
            SalesforceProblem::Unreachable
        } else {
            SalesforceProblem::Other(e.to_string())
        }
    }

    /// The page's sentence; `host` is the login address.
    pub fn words(&self, host: &str) -> String {
        match self {
            SalesforceProblem::WrongPassword => "Salesforce refused the user name, password or security token (INVALID_LOGIN). The security token changes whenever the password does: reset it in Salesforce (Settings, Reset My Security Token) if in doubt.".into(),
            SalesforceProblem::WrongClient => "Salesforce refused the client id or client secret of the connected app.".into(),
            SalesforceProblem::ApiDisabled => "This user may not use the Salesforce API (API_DISABLED_FOR_ORG or API_CURRENTLY_DISABLED): give the user the \"API Enabled\" permission, or use an edition with API access.".into(),
            SalesforceProblem::RateExceeded => "Salesforce refuses more logins for this user for now (LOGIN_RATE_EXCEEDED). Wait a while (up to an hour) and try again.".into(),
            SalesforceProblem::NeedsMyDomain => "The client-credentials login needs your My Domain address (https://yourcompany.my.salesforce.com), not login.salesforce.com or test.salesforce.com.".into(),
            SalesforceProblem::Unreachable => format!("{host} cannot be reached: the connection was refused, the name is unknown, or no answer came in time. Check the address, the proxy settings, and that this host may connect to it."),
            SalesforceProblem::Certificate => format!("The certificate of {host} is not trusted by this host."),
            SalesforceProblem::NoAnswer { secs } => format!("{host} did not answer the login within {secs} s."),
            SalesforceProblem::Other(m) => format!("The Salesforce login failed: {m}"),
        }
    }
}

/// Logs in with `login` (and reads the org's limits, which fails when the user may not use the
/// API) within `wait`. Returns the org id.
pub async fn try_salesforce(
    login: LoginConfig,
    names: Names,
    wait: Duration,
) -> Result<String, SalesforceProblem> {
    let sf = Salesforce::new(login, names).map_err(|e| SalesforceProblem::Other(e.to_string()))?;
    tokio::time::timeout(wait, async {
        let session = sf.login().await.map_err(|e| SalesforceProblem::of(&e))?;
        match sf.limits().await {
            Err(e) if e.is_api_disabled() => Err(SalesforceProblem::ApiDisabled),
            _ => Ok(session.org_id),
        }
    })
    .await
    .unwrap_or(Err(SalesforceProblem::NoAnswer {
        secs: wait.as_secs(),
    }))
}

//! The admin pages' HTML (maud templates: every value is escaped by the engine). No script and
//! no inline style: one stylesheet, `/admin.css`.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, html};

use crate::check::CheckReport;
use crate::status::StatusView;

/// The stylesheet, built into the binary.
pub const CSS: &str = include_str!("admin.css");

/// Errors of a form: one for the whole form, and per field (keyed by the field's name).
#[derive(Debug, Default, Clone)]
pub struct Errors {
    pub form: Option<String>,
    pub fields: BTreeMap<&'static str, String>,
    /// A confirmation shown above the form (a save that worked, a logout).
    pub notice: Option<String>,
}

impl Errors {
    pub fn field(&mut self, name: &'static str, message: impl Into<String>) {
        self.fields.entry(name).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.form.is_none() && self.fields.is_empty()
    }
}

/// The page frame: title, the tenant, and for a signed-in administrator the navigation and
/// the log-out form (`csrf` is the session's token).
pub fn layout(title: &str, tenant: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sors " (tenant) }
                link rel="stylesheet" href="/admin.css";
            }
            body {
                header {
                    span.brand { "Salesforce Object Routing Server" }
                    span.tenant { "tenant " strong { (tenant) } }
                    @if let Some(csrf) = csrf {
                        nav {
                            a href="/status" { "Status" }
                            a href="/loginIc" { "CIC connection" }
                            a href="/loginSf" { "Salesforce connection" }
                            form.logout method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn form_error(errors: &Errors) -> Markup {
    html! {
        (notice(errors.notice.as_deref()))
        @if let Some(e) = &errors.form {
            p.error id="form-error" role="alert" { (e) }
        }
    }
}

/// A confirmation: `<p class="notice" id="notice">`.
pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text {
            p.notice id="notice" role="status" { (t) }
        }
    }
}

fn field_error(errors: &Errors, name: &str) -> Markup {
    html! {
        @if let Some(e) = errors.fields.get(name) {
            p.field-error id={ "error-" (name) } { (e) }
        }
    }
}

/// A text-like input with its label, hint and error.
fn input(
    errors: &Errors,
    label: &str,
    name: &'static str,
    kind: &str,
    value: &str,
    hint: Option<&str>,
    autocomplete: &str,
) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input type=(kind) id=(name) name=(name) value=(value) autocomplete=(autocomplete);
            @if let Some(h) = hint { p.hint { (h) } }
            (field_error(errors, name))
        }
    }
}

/// A password input: never filled; `placeholder="saved"` when a value is saved.
fn secret_input(
    errors: &Errors,
    label: &str,
    name: &'static str,
    saved: bool,
    hint: Option<&str>,
    autocomplete: &str,
) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            @if saved {
                input type="password" id=(name) name=(name) value="" placeholder="saved" autocomplete=(autocomplete);
                p.hint { "Saved. Leave it empty to keep the saved one." }
            } @else {
                input type="password" id=(name) name=(name) value="" autocomplete=(autocomplete);
            }
            @if let Some(h) = hint { p.hint { (h) } }
            (field_error(errors, name))
        }
    }
}

fn checkbox(label: &str, name: &'static str, checked: bool, hint: &str) -> Markup {
    html! {
        div.field.check {
            input type="checkbox" id=(name) name=(name) value="on" checked[checked];
            label for=(name) { (label) }
            p.hint { (hint) }
        }
    }
}

pub fn setup(tenant: &str, csrf: &str, errors: &Errors) -> Markup {
    layout(
        "First-run setup",
        tenant,
        None,
        html! {
            h1 { "First-run setup" }
            p { "Choose the password that protects these pages. You need the setup token that the service printed on its console and wrote to its log when it started (a line with \"setup token\")." }
            (form_error(errors))
            form method="post" action="/setup" {
                input type="hidden" name="csrf" value=(csrf);
                (input(errors, "Setup token", "token", "password", "", Some("Printed once at start; it is not stored anywhere."), "off"))
                (secret_input(errors, "Admin password", "password", false, Some("At least 12 characters."), "new-password"))
                (secret_input(errors, "Admin password again", "password2", false, None, "new-password"))
                button type="submit" { "Set the password" }
            }
        },
    )
}

pub fn login(tenant: &str, csrf: &str, errors: &Errors) -> Markup {
    layout(
        "Log in",
        tenant,
        None,
        html! {
            h1 { "Log in" }
            p { "Enter the admin password of this routing service to change its connections or see its status." }
            (form_error(errors))
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                (secret_input(errors, "Admin password", "password", false, None, "current-password"))
                button type="submit" { "Log in" }
            }
        },
    )
}

/// What the `/loginIc` form shows (never a password).
#[derive(Debug, Default, Clone)]
pub struct CicForm {
    pub user: String,
    pub password_saved: bool,
    pub server: String,
    pub backup_server: String,
    pub status_port: String,
    pub auto_disconnect: bool,
    pub reroute_after_switchover: bool,
}

pub fn login_ic(tenant: &str, csrf: &str, form: &CicForm, errors: &Errors) -> Markup {
    layout(
        "CIC connection",
        tenant,
        Some(csrf),
        html! {
            h1 { "Enter your Interaction Center credentials" }
            p { "The routing service logs in to CIC (ICWS) with this user to place email interactions in workgroup queues. Saving first tries the connection; nothing is saved unless it works. Routing then restarts with the new settings, without restarting the service." }
            (form_error(errors))
            form method="post" action="/loginIc" {
                input type="hidden" name="csrf" value=(csrf);
                (input(errors, "User name", "user", "text", &form.user, None, "username"))
                (secret_input(errors, "Password", "password", form.password_saved, None, "current-password"))
                (input(errors, "Server name", "server", "text", &form.server, Some("The primary CIC server: host, host:port or https://host:8019."), "off"))
                (input(errors, "Backup server name", "backup_server", "text", &form.backup_server, Some("Optional: the other server of a switchover pair."), "off"))
                (input(errors, "HeartBeat port", "status_port", "number", &form.status_port, Some("The port of this service's status page and heartbeat, used by the status dashboard. A change takes effect at the next start of the service."), "off"))
                (checkbox("Enable auto disconnect on reply", "auto_disconnect", form.auto_disconnect, "Disconnect a case's email interaction when an agent replies to the customer."))
                (checkbox("Re-route after a switchover", "reroute_after_switchover", form.reroute_after_switchover, "Route again the email interactions a CIC switchover lost."))
                button type="submit" { "Log in & next" }
            }
        },
    )
}

/// What the `/loginSf` form shows (never a password, token or secret).
#[derive(Debug, Default, Clone)]
pub struct SalesforceForm {
    /// `soap`, `client-credentials` (or `oauth-password` when the config says so).
    pub auth: String,
    pub username: String,
    pub password_saved: bool,
    pub token_saved: bool,
    /// `production`, `sandbox` or `my_domain`.
    pub login_host: String,
    pub my_domain_url: String,
    pub client_id: String,
    pub secret_saved: bool,
}

pub fn login_sf(tenant: &str, csrf: &str, form: &SalesforceForm, errors: &Errors) -> Markup {
    let hosts = [
        ("production", "Production (https://login.salesforce.com)"),
        ("sandbox", "Sandbox (https://test.salesforce.com)"),
        ("my_domain", "My Domain (enter it below)"),
    ];
    let mut methods = vec![
        ("soap", "User name, password and security token"),
        (
            "client-credentials",
            "OAuth client credentials (connected app)",
        ),
    ];
    if form.auth == "oauth-password" {
        methods.push((
            "oauth-password",
            "OAuth user name and password (connected app)",
        ));
    }
    layout(
        "Salesforce connection",
        tenant,
        Some(csrf),
        html! {
            h1 { "Enter your Salesforce credentials" }
            p { "The routing service logs in to Salesforce with this user to read and update the routing table. Saving first logs in; nothing is saved unless it works. Routing then restarts with the new credentials, without restarting the service." }
            (form_error(errors))
            form method="post" action="/loginSf" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "How to log in" }
                    @for (value, label) in &methods {
                        div.choice {
                            input type="radio" id={ "auth-" (value) } name="auth" value=(value) checked[form.auth == *value];
                            label for={ "auth-" (value) } { (label) }
                        }
                    }
                    (field_error(errors, "auth"))
                }
                div.field {
                    label for="login_host" { "Login address" }
                    select id="login_host" name="login_host" {
                        @for (value, label) in &hosts {
                            option value=(value) selected[form.login_host == *value] { (label) }
                        }
                    }
                    (field_error(errors, "login_host"))
                }
                (input(errors, "My Domain address", "my_domain_url", "url", &form.my_domain_url, Some("Like https://yourcompany.my.salesforce.com. Needed for the client-credentials login."), "off"))
                (input(errors, "User name", "username", "text", &form.username, None, "username"))
                (secret_input(errors, "Password", "password", form.password_saved, None, "current-password"))
                (secret_input(errors, "Security token", "security_token", form.token_saved, Some("Salesforce e-mails it to the user; it changes with the password. Leave it empty if the org trusts this host's address."), "off"))
                (input(errors, "Client id (consumer key)", "client_id", "text", &form.client_id, Some("For the OAuth logins only."), "off"))
                (secret_input(errors, "Client secret (consumer secret)", "client_secret", form.secret_saved, Some("For the OAuth logins only."), "off"))
                button type="submit" { "Verify & save" }
            }
        },
    )
}

/// What the `/status` page shows of the mapping check.
pub enum MappingTable<'a> {
    /// Credentials are missing: no check ran.
    NotConfigured,
    Report {
        report: &'a CheckReport,
        /// Seconds since the check ran.
        age_secs: u64,
    },
}

pub fn status(
    tenant: &str,
    csrf: &str,
    view: &StatusView,
    table: MappingTable<'_>,
    saved: Option<&str>,
) -> Markup {
    let readiness = view.status.as_str();
    let words = match view.status {
        crate::status::Readiness::Up => "Up: routing email cases to CIC.",
        crate::status::Readiness::Degraded => "Degraded: routing, but something needs attention.",
        crate::status::Readiness::Down => "Down: no case is routed now.",
    };
    layout(
        "Status",
        tenant,
        Some(csrf),
        html! {
            h1 { "Status" }
            (notice(saved))
            p id="readiness" class=(readiness) { (words) " " (view.message) }
            @if view.reasons.is_empty() {
                ul id="reasons" {}
            } @else {
                h2 { "Why" }
                ul id="reasons" {
                    @for r in &view.reasons {
                        li data-kind=(r.kind.as_str()) { (r.message) }
                    }
                }
            }
            dl.facts {
                dt { "CIC" }
                dd { @if view.cic.connected { "connected to " (view.cic.server.as_deref().unwrap_or("?")) @if view.cic.backup { " (backup)" } } @else { "not connected" } }
                dt { "Salesforce" }
                dd { @if view.salesforce.logged_in { "logged in (" (view.salesforce.instance_url.as_deref().unwrap_or("?")) "), PushTopic " (view.salesforce.streaming.as_str()) } @else { "not logged in" } }
                dt { "Routed" }
                dd { (view.routing.routed) " row(s), " (view.routing.failed) " failed" }
            }
            h2 { "Queue mappings" }
            p { "Each Salesforce queue that is monitored, the CIC workgroup its cases go to, and what would stop them." }
            @match table {
                MappingTable::NotConfigured => {
                    p.hint { "Enter the CIC and Salesforce connections first; then the mappings are checked here." }
                    table id="mappings" {
                        thead { tr { th { "Salesforce queue" } th { "CIC workgroup" } th { "Skills" } th { "Problem" } } }
                        tbody {}
                    }
                }
                MappingTable::Report { report, age_secs } => {
                    @if !report.problems.is_empty() {
                        ul.problems id="check-problems" {
                            @for p in &report.problems { li { (p) } }
                        }
                    }
                    table id="mappings" {
                        thead { tr { th { "Salesforce queue" } th { "CIC workgroup" } th { "Skills" } th { "Problem" } } }
                        tbody {
                            @for m in &report.mappings {
                                tr class=(if m.problem().is_some() { "bad" } else { "ok" }) {
                                    td.queue { (m.queue) }
                                    td.workgroup { (m.workgroup) }
                                    td.skills { (m.skills_problem.as_deref().unwrap_or_default()) }
                                    td.problem { (m.problem().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                    p.hint { "Checked " (age_secs) " s ago. " a href="/status?recheck=1" { "Check again" } }
                }
            }
        },
    )
}

/// A page with a heading and a sentence (403, 404, 429, 500).
pub fn message(tenant: &str, title: &str, text: &str, link: Option<(&str, &str)>) -> Markup {
    layout(
        title,
        tenant,
        None,
        html! {
            h1 { (title) }
            p.error id="form-error" { (text) }
            @if let Some((href, label)) = link {
                p { a href=(href) { (label) } }
            }
        },
    )
}

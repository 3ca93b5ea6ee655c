//! `sors check` against a tenant directory that points at the fakes.
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

mod common;

use common::BedOptions;
use serde_json::json;
use sors_testbed::Bed;

fn tenant_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sors-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_good_tenant_and_names_every_problem_on_a_bad_one() {
    let bed = Bed::start_fakes(BedOptions::default()).await.unwrap();
    let dir = tenant_dir("good");
    sors_testbed::demo::write_tenant(
        &dir,
        &bed.sf.base_url(),
        [bed.cic.primary_url(), bed.cic.backup_url()],
        "127.0.0.1:0",
    )
    .unwrap();
    let problems = sors::check::check(&dir).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    // A mapping to a workgroup without ACD email routing, and one to a workgroup CIC lacks.
    let actor = bed.sf.act_as("router@sors.demo").unwrap();
    for (queue, wg) in [("Billing", "Operators"), ("Support FR", "Nowhere")] {
        let id = bed
            .sf
            .query(&format!(
                "SELECT Id FROM Interaction_Routing_Queue__c WHERE Salesforce_Queue_Name__c = '{queue}'"
            ))
            .unwrap()[0]["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        actor
            .update(
                "Interaction_Routing_Queue__c",
                &id,
                json!({"CIC_Workgroup_Name__c": wg}),
            )
            .unwrap();
    }
    let problems = sors::check::check(&dir).await.unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("'Operators' is not an ACD email workgroup"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no workgroup named 'Nowhere'"))
    );

    // Wrong Salesforce password: said plainly, without the password.
    sors_tenant::cli::set_salesforce(
        &dir,
        "router@sors.demo",
        sors_tenant::credentials::Secret::new("wrong-secret-pw"),
        sors_tenant::credentials::Secret::new("TOKEN"),
        None,
        None,
    )
    .unwrap();
    let problems = sors::check::check(&dir).await.unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Salesforce login failed")),
        "{problems:?}"
    );
    assert!(problems.iter().all(|p| !p.contains("wrong-secret-pw")));

    // Wrong CIC password: the primary refuses it and the standby answers 503; the check names
    // the refused password, not the standby (issue 8).
    sors_tenant::cli::set_cic(
        &dir,
        "sors",
        sors_tenant::credentials::Secret::new("wrong-cic-pw"),
    )
    .unwrap();
    let problems = sors::check::check(&dir).await.unwrap();
    let cic: Vec<&String> = problems.iter().filter(|p| p.contains("CIC")).collect();
    assert!(
        cic.iter().any(|p| p.contains("authentication failed")),
        "{problems:?}"
    );
    assert!(
        cic.iter().all(|p| !p.contains("not accepting connections")),
        "{problems:?}"
    );
    assert!(problems.iter().all(|p| !p.contains("wrong-cic-pw")));
    let _ = std::fs::remove_dir_all(&dir);
    bed.shutdown().await;
}

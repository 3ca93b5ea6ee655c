//! Every scenario file of the suite, each against its own fakes and router, a few at a time.
//! `SORS_SCENARIOS=a,b` runs only the named scenarios (file stems).
#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

#[test]
fn every_scenario_passes() {
    let scenarios = match sors_scenarios::load_all(&sors_scenarios::default_dir(), &[]) {
        Ok(s) => s,
        Err(errs) => {
            let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
            panic!("malformed scenario files:\n{}", msgs.join("\n"));
        }
    };
    assert!(
        scenarios.len() >= 25,
        "the suite should hold at least 25 scenarios, found {}",
        scenarios.len()
    );
    let only: Option<Vec<String>> = std::env::var("SORS_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let scenarios: Vec<_> = scenarios
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.contains(&s.name)))
        .collect();
    let reports = sors_scenarios::run_all(scenarios, &sors_scenarios::RunOptions::default());
    for r in &reports {
        println!("{}", r.render());
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.name.as_str())
        .collect();
    println!("{}", sors_scenarios::summary_line(&reports));
    // One line the mutant check greps for.
    println!("SCENARIOS FAILED: {}", failed.join(" "));
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

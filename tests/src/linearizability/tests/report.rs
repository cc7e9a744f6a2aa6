//! Goal: a violation is shown with its neighbours and reason, malformed
//! histories are errors, and a bounded search says it is undecided.

use super::*;

#[test]
fn display_names_the_operation_and_its_neighbours() {
    // Goal: the report shows the stuck operation, marked, among nearby
    // operations of its key, and why it could not be placed.
    let mut history: Vec<Operation> = (0..10)
        .map(|n| {
            let previous_value = (n > 0).then(|| format!("v{}", n - 1));
            ok(
                1,
                (n * 100, n * 100 + 10),
                put("k", &format!("v{n}")),
                Output::Previous(previous_value),
            )
        })
        .collect();
    history.push(ok(2, (550, 560), get("k"), read(Some("v2"))));
    let shown = verdict(&history).to_string();
    assert!(
        shown.starts_with("not linearizable: key \"k\": operation #10"),
        "{shown}"
    );
    assert!(
        shown.contains(">> #10 client 2 [550 ns, 560 ns] get(\"k\") -> \"v2\""),
        "{shown}"
    );
    assert!(shown.contains("held \"v5\""), "{shown}");
    let (_, listed) = shown
        .split_once("by invocation time:")
        .expect("a list of nearby operations");
    assert_eq!(
        listed.lines().skip(1).count(),
        2 * NEARBY_OPERATIONS + 1,
        "{shown}"
    );
}

#[test]
fn malformed_histories_are_rejected() {
    // Goal: recording mistakes are errors, not verdicts.
    let mismatched = [ok(1, (0, 10), get("k"), previous(None))];
    assert!(matches!(
        check(&mismatched),
        Err(HistoryError::MismatchedOutput { index: 0, .. })
    ));
    let mut incomplete = ok(1, (0, 10), get("k"), read(None));
    incomplete.completed_ns = None;
    assert_eq!(
        check(&[incomplete]),
        Err(HistoryError::MissingCompletion { index: 0 })
    );
    let backwards = [ok(1, (10, 5), get("k"), read(None))];
    assert!(matches!(
        check(&backwards),
        Err(HistoryError::CompletedBeforeInvoked { index: 0, .. })
    ));
}

#[test]
fn search_bound_gives_undecided() {
    // Goal: a search that runs out of steps says so instead of guessing.
    let history: Vec<Operation> = (0..20)
        .map(|n| ok(n, (0, 100), put("k", &format!("v{n}")), previous(None)))
        .collect();
    let limits = Limits {
        search_steps_max: 50,
        ..Limits::DEFAULT
    };
    let report = check_with_limits(&history, limits).expect("a well-formed history");
    assert!(
        matches!(&report.overall, CheckResult::Undecided { key, .. } if key == "k"),
        "{report}"
    );
}

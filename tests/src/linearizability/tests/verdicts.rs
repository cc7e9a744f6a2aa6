//! Goal: the verdicts on small hand-written histories: what a linearizable
//! kv store may answer passes, stale reads, lost writes, reads going back
//! in time and impossible swaps fail on the operation at fault.

use super::*;

#[test]
fn sequential_valid_history_passes() {
    // Goal: one client's operations, each seeing the one before, pass.
    let history = [
        ok(1, (0, 10), get("k"), read(None)),
        ok(1, (20, 30), put("k", "a"), previous(None)),
        ok(1, (40, 50), put("k", "b"), previous(Some("a"))),
        ok(1, (60, 70), get("k"), read(Some("b"))),
        ok(
            1,
            (80, 90),
            cas("k", Some("b"), "c"),
            swapped(true, Some("c")),
        ),
        ok(
            1,
            (100, 110),
            cas("k", Some("b"), "d"),
            swapped(false, Some("c")),
        ),
        ok(1, (120, 130), delete("k"), previous(Some("c"))),
        ok(1, (140, 150), delete("k"), previous(None)),
        ok(1, (160, 170), cas("k", None, "e"), swapped(true, Some("e"))),
        ok(1, (180, 190), get("k"), read(Some("e"))),
    ];
    assert_eq!(verdict(&history), CheckResult::Linearizable);
}

#[test]
fn overlapping_put_and_get_may_be_ordered_either_way() {
    // Goal: a read concurrent with a put may see the old or new value.
    for seen in [Some("old"), Some("new")] {
        let history = [
            ok(1, (0, 10), put("k", "old"), previous(None)),
            ok(1, (20, 60), put("k", "new"), previous(Some("old"))),
            ok(2, (30, 50), get("k"), read(seen)),
        ];
        assert_eq!(verdict(&history), CheckResult::Linearizable, "{seen:?}");
    }
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // Goal: a read invoked at the instant a put returns may precede it.
    let history = [
        ok(1, (0, 10), put("k", "a"), previous(None)),
        ok(2, (10, 20), get("k"), read(None)),
    ];
    assert_eq!(verdict(&history), CheckResult::Linearizable);
}

#[test]
fn stale_read_is_a_violation() {
    // Goal: a read that starts after a put completed must see it.
    let history = [
        ok(1, (0, 10), put("k", "old"), previous(None)),
        ok(1, (20, 30), put("k", "new"), previous(Some("old"))),
        ok(2, (40, 50), get("k"), read(Some("old"))),
    ];
    let violation = violation(&history);
    assert_eq!(violation.key, "k");
    assert_eq!(violation.first_unlinearizable.index, 2);
    assert_eq!(violation.partial_linearization_len, 2);
    assert!(
        violation.explanation.contains("held \"new\"")
            && violation.explanation.contains("it read \"old\""),
        "{}",
        violation.explanation
    );
}

#[test]
fn lost_acknowledged_write_is_a_violation() {
    // Goal: an acknowledged put must be visible to every later read.
    for seen in [None, Some("older")] {
        let mut history = vec![
            ok(1, (20, 30), put("k", "acknowledged"), previous(seen)),
            ok(2, (40, 50), get("k"), read(seen)),
        ];
        if seen.is_some() {
            history.insert(0, ok(1, (0, 10), put("k", "older"), previous(None)));
        }
        let violation = violation(&history);
        assert_eq!(violation.first_unlinearizable.index, history.len() - 1);
    }
}

#[test]
fn read_going_back_in_time_is_a_violation() {
    // Goal: once a read saw the new value, a later read may not see the
    // old one, even while the put is still in flight.
    let history = [
        ok(1, (0, 10), put("k", "old"), previous(None)),
        ok(1, (20, 100), put("k", "new"), previous(Some("old"))),
        ok(2, (30, 40), get("k"), read(Some("new"))),
        ok(3, (50, 60), get("k"), read(Some("old"))),
    ];
    let violation = violation(&history);
    assert_eq!(violation.first_unlinearizable.index, 3);
    // The same reads the other way round are fine.
    let mut forward = history.clone();
    forward[2].outcome = Outcome::Ok(read(Some("old")));
    forward[3].outcome = Outcome::Ok(read(Some("new")));
    assert_eq!(verdict(&forward), CheckResult::Linearizable);
}

#[test]
fn unknown_put_may_be_seen_or_not() {
    // Goal: a put of unknown outcome may take effect at any time after
    // its invocation, or never; later reads may agree with either.
    for seen in [Some("a"), Some("maybe")] {
        let history = [
            ok(1, (0, 10), put("k", "a"), previous(None)),
            unknown(1, 20, put("k", "maybe")),
            ok(2, (1_000, 1_010), get("k"), read(seen)),
            ok(2, (2_000, 2_010), get("k"), read(seen)),
        ];
        assert_eq!(verdict(&history), CheckResult::Linearizable, "{seen:?}");
    }
    // Not before it was invoked, though.
    let early = [
        ok(2, (0, 10), get("k"), read(Some("maybe"))),
        unknown(1, 20, put("k", "maybe")),
    ];
    assert!(matches!(verdict(&early), CheckResult::Violation(_)));
}

#[test]
fn unknown_put_seen_then_unseen_is_a_violation() {
    // Goal: once a read saw an unknown put's value, it took effect, and
    // a later read may not miss it.
    let history = [
        ok(1, (0, 10), put("k", "a"), previous(None)),
        unknown(1, 20, put("k", "maybe")),
        ok(2, (1_000, 1_010), get("k"), read(Some("maybe"))),
        ok(2, (2_000, 2_010), get("k"), read(Some("a"))),
    ];
    assert_eq!(violation(&history).first_unlinearizable.index, 3);
}

#[test]
fn unknown_writes_seen_only_through_a_cas_can_take_effect() {
    // Goal: a cas expecting an unknown write's value may rely on it,
    // also when that cas is of unknown outcome itself.
    let history = [
        unknown(1, 0, put("k", "maybe")),
        ok(
            2,
            (100, 110),
            cas("k", Some("maybe"), "next"),
            swapped(true, Some("next")),
        ),
    ];
    assert_eq!(verdict(&history), CheckResult::Linearizable);
    let chained = [
        unknown(1, 0, put("k", "a")),
        unknown(1, 10, cas("k", Some("a"), "b")),
        ok(2, (100, 110), get("k"), read(Some("b"))),
    ];
    assert_eq!(verdict(&chained), CheckResult::Linearizable);
}

#[test]
fn unknown_writes_nobody_sees_cost_no_search() {
    // Goal: hundreds of unknown puts whose values nobody reads are left
    // out up front and do not slow the search.
    let mut history = Vec::new();
    for n in 0..300 {
        let at_ns = n * 100;
        let earlier = (n > 0).then(|| format!("v{}", n - 1));
        history.push(unknown(1, at_ns, put("k", &format!("lost{n}"))));
        history.push(ok(
            2,
            (at_ns, at_ns + 50),
            put("k", &format!("v{n}")),
            Output::Previous(earlier),
        ));
        history.push(ok(
            3,
            (at_ns + 60, at_ns + 70),
            get("k"),
            read(Some(&format!("v{n}"))),
        ));
    }
    let limits = Limits {
        search_steps_max: 2 * history.len() as u64,
        ..Limits::DEFAULT
    };
    let report = check_with_limits(&history, limits).expect("a well-formed history");
    assert_eq!(report.overall, CheckResult::Linearizable, "{report}");
}

#[test]
fn failed_operations_never_take_effect() {
    // Goal: a failed put is invisible; a read that sees it is a violation.
    let unseen = [
        ok(1, (0, 10), put("k", "a"), previous(None)),
        failed(1, (20, 30), put("k", "rejected")),
        failed(1, (40, 50), delete("k")),
        ok(2, (60, 70), get("k"), read(Some("a"))),
    ];
    assert_eq!(verdict(&unseen), CheckResult::Linearizable);
    let mut seen = unseen.clone();
    seen[3].outcome = Outcome::Ok(read(Some("rejected")));
    assert_eq!(violation(&seen).first_unlinearizable.index, 3);
}

#[test]
fn cas_results_are_checked() {
    // Goal: a cas swaps exactly when the value matches, and reports the
    // value after it; any other report is a violation.
    let base = [
        ok(1, (0, 10), put("k", "a"), previous(None)),
        ok(
            1,
            (20, 30),
            cas("k", Some("a"), "b"),
            swapped(true, Some("b")),
        ),
    ];
    assert_eq!(verdict(&base), CheckResult::Linearizable);
    let impossible = [
        (cas("k", Some("x"), "c"), swapped(true, Some("c"))),
        (cas("k", None, "c"), swapped(true, Some("c"))),
        (cas("k", Some("b"), "c"), swapped(false, Some("b"))),
        (cas("k", Some("x"), "c"), swapped(false, Some("a"))),
        (cas("k", Some("b"), "c"), swapped(true, Some("b"))),
    ];
    for (call, output) in impossible {
        let mut history = base.to_vec();
        history.push(ok(2, (40, 50), call.clone(), output.clone()));
        let violation = violation(&history);
        assert_eq!(
            violation.first_unlinearizable.index, 2,
            "{call} -> {output}"
        );
    }
    // A failed cas leaves the value alone for later readers.
    let mut unchanged = base.to_vec();
    unchanged.push(ok(
        2,
        (40, 50),
        cas("k", Some("x"), "c"),
        swapped(false, Some("b")),
    ));
    unchanged.push(ok(2, (60, 70), get("k"), read(Some("b"))));
    assert_eq!(verdict(&unchanged), CheckResult::Linearizable);
}

#[test]
fn concurrent_cas_race_has_one_winner() {
    // Goal: two concurrent cas from the same value cannot both win.
    let race = |second_ok: bool| {
        let current = if second_ok { "c" } else { "b" };
        [
            ok(1, (0, 10), put("k", "a"), previous(None)),
            ok(
                1,
                (20, 50),
                cas("k", Some("a"), "b"),
                swapped(true, Some("b")),
            ),
            ok(
                2,
                (20, 50),
                cas("k", Some("a"), "c"),
                swapped(second_ok, Some(current)),
            ),
        ]
    };
    assert_eq!(verdict(&race(false)), CheckResult::Linearizable);
    assert!(matches!(verdict(&race(true)), CheckResult::Violation(_)));
}

#[test]
fn keys_are_checked_independently() {
    // Goal: a violation on one key is reported under that key, and the
    // other keys stay linearizable.
    let history = [
        ok(1, (0, 10), put("a", "1"), previous(None)),
        ok(1, (20, 30), put("b", "1"), previous(None)),
        ok(2, (40, 50), get("a"), read(Some("1"))),
        ok(2, (60, 70), get("b"), read(None)),
    ];
    let report = check(&history).expect("a well-formed history");
    assert_eq!(report.keys["a"], CheckResult::Linearizable);
    let CheckResult::Violation(violation) = &report.overall else {
        panic!("expected a violation, got {report}");
    };
    assert_eq!(violation.key, "b");
    assert_eq!(report.keys["b"], report.overall);
}

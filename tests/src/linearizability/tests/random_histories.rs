//! Goal: on simulated histories the checker agrees with trying every
//! order, and a large one is decided fast, also with one read corrupted.

use super::simulation::{Simulation, SplitMix64, kv_step, simulated_history};
use super::*;

/// Whether some order of `history` (of one key) explains every result,
/// by trying every order: the slow definition the checker must agree with.
fn brute_force_linearizable(history: &[Operation]) -> bool {
    let operations: Vec<&Operation> = history
        .iter()
        .filter(|operation| match operation.outcome {
            Outcome::Failed => false,
            Outcome::Unknown => !operation.call.is_query(),
            Outcome::Ok(_) => true,
        })
        .collect();
    let mut placed = vec![false; operations.len()];
    extends(&operations, &mut placed, &None)
}

/// Whether the unplaced operations can follow the placed ones, starting
/// from `register`. Operations of unknown outcome may stay unplaced.
fn extends(operations: &[&Operation], placed: &mut [bool], register: &Option<String>) -> bool {
    let must_place = |placed: &[bool], n: usize| {
        !placed[n] && !matches!(operations[n].outcome, Outcome::Unknown)
    };
    if (0..operations.len()).all(|n| !must_place(placed, n)) {
        return true;
    }
    for candidate in 0..operations.len() {
        let invoked_ns = operations[candidate].invoked_ns;
        let blocked = (0..operations.len()).any(|other| {
            must_place(placed, other) && operations[other].completed_ns < Some(invoked_ns)
        });
        if placed[candidate] || blocked {
            continue;
        }
        let mut after = register.clone();
        let output = kv_step(&mut after, &operations[candidate].call);
        if matches!(&operations[candidate].outcome, Outcome::Ok(seen) if *seen != output) {
            continue;
        }
        placed[candidate] = true;
        if extends(operations, placed, &after) {
            return true;
        }
        placed[candidate] = false;
    }
    false
}

/// Replace the output of one answered operation with a random output of
/// the same kind, from the values the history mentions.
fn perturb(random: &mut SplitMix64, history: &mut [Operation]) {
    let mut values: Vec<Option<String>> = vec![None];
    values.extend(
        history
            .iter()
            .filter_map(|operation| match &operation.call {
                Call::Put { value, .. } | Call::Cas { value, .. } => Some(Some(value.clone())),
                _ => None,
            }),
    );
    let answered: Vec<usize> = (0..history.len())
        .filter(|&n| matches!(history[n].outcome, Outcome::Ok(_)))
        .collect();
    if answered.is_empty() {
        return;
    }
    let target = answered[random.below(answered.len() as u64) as usize];
    let value = values[random.below(values.len() as u64) as usize].clone();
    let output = match history[target].call {
        Call::Put { .. } | Call::Delete { .. } => Output::Previous(value),
        Call::Cas { .. } => Output::Swapped {
            ok: random.below(2) == 0,
            current: value,
        },
        Call::Get { .. } => Output::Value(value),
    };
    history[target].outcome = Outcome::Ok(output);
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    // Goal: on many small one-key histories, some altered to break
    // them, the checker's verdict is that of trying every order.
    let mut verdicts = [0; 2];
    for seed in 0..1_000 {
        let simulation = Simulation {
            seed,
            operations: 9,
            keys: 1,
            clients: 3,
            failed_percent: 10,
            unknown_percent: 20,
        };
        let mut history = simulated_history(&simulation);
        let mut random = SplitMix64(seed);
        if random.below(2) == 0 {
            perturb(&mut random, &mut history);
        }
        let expected = brute_force_linearizable(&history);
        let report = check(&history).expect("a well-formed history");
        assert_eq!(
            report.overall == CheckResult::Linearizable,
            expected,
            "seed {seed}: {report}\n{history:#?}"
        );
        verdicts[usize::from(expected)] += 1;
    }
    assert!(verdicts.iter().all(|&count| count > 200), "{verdicts:?}");
}

/// Whether `operation` definitely wrote its key.
fn definite_write(operation: &Operation) -> bool {
    match (&operation.call, &operation.outcome) {
        (Call::Put { .. } | Call::Delete { .. }, Outcome::Ok(_)) => true,
        (Call::Cas { .. }, Outcome::Ok(Output::Swapped { ok, .. })) => *ok,
        _ => false,
    }
}

/// Make a read in the second half of `history` return a value that was
/// overwritten (by a write that completed before the read began) after
/// the put that wrote it completed. Returns the read's index.
fn corrupt_one_read(history: &mut [Operation]) -> usize {
    for index in history.len() / 2..history.len() {
        let reading = &history[index];
        let (Call::Get { key }, Outcome::Ok(_)) = (&reading.call, &reading.outcome) else {
            continue;
        };
        let on_key = |operation: &&Operation| operation.call.key() == key;
        let Some(overwrite) = history
            .iter()
            .filter(on_key)
            .filter(|operation| {
                definite_write(operation) && operation.completed_ns < Some(reading.invoked_ns)
            })
            .max_by_key(|operation| operation.completed_ns)
        else {
            continue;
        };
        let stale = history
            .iter()
            .filter(on_key)
            .filter(|operation| operation.completed_ns < Some(overwrite.invoked_ns))
            .filter_map(|operation| match (&operation.call, &operation.outcome) {
                (Call::Put { value, .. }, Outcome::Ok(_)) => Some(value.clone()),
                _ => None,
            })
            .next_back();
        if let Some(stale) = stale {
            history[index].outcome = Outcome::Ok(read(Some(&stale)));
            return index;
        }
    }
    panic!("no read to corrupt");
}

#[test]
fn many_concurrent_operations_on_many_keys_finish_fast() {
    // Goal: 2000 operations of 5 concurrent clients over 10 keys from a
    // simulated linearizable store pass within a small search budget,
    // and the same history with one stale read fails on that read.
    let simulation = Simulation {
        seed: 7,
        operations: 2_000,
        keys: 10,
        clients: 5,
        failed_percent: 3,
        unknown_percent: 3,
    };
    let limits = Limits {
        search_steps_max: 20_000,
        ..Limits::DEFAULT
    };
    let mut history = simulated_history(&simulation);
    let report = check_with_limits(&history, limits).expect("a well-formed history");
    assert_eq!(report.overall, CheckResult::Linearizable, "{report}");
    eprintln!("linearizable: {report}");

    let corrupted = corrupt_one_read(&mut history);
    let report = check_with_limits(&history, limits).expect("a well-formed history");
    eprintln!("corrupted #{corrupted}: {report}");
    let CheckResult::Violation(violation) = &report.overall else {
        panic!("expected a violation, got {report}");
    };
    assert_eq!(violation.key, history[corrupted].call.key());
    assert_eq!(violation.first_unlinearizable.index, corrupted, "{report}");
}

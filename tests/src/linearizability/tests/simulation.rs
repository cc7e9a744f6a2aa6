//! A simulated linearizable kv store and clients, making histories the
//! checker must accept, from a seed.

use std::collections::BTreeMap;

use super::*;

/// SplitMix64: a small deterministic generator for simulated histories.
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Shape of a simulated history.
pub(super) struct Simulation {
    pub(super) seed: u64,
    pub(super) operations: u64,
    pub(super) keys: u64,
    pub(super) clients: u64,
    /// Share of operations that fail, in percent.
    pub(super) failed_percent: u64,
    /// Share of operations of unknown outcome, in percent; two thirds
    /// of them take effect.
    pub(super) unknown_percent: u64,
}

/// An operation planned by the simulation, when it takes effect on the
/// simulated store (`None`: never), and whether its client learns the
/// result.
struct Planned {
    operation: Operation,
    takes_effect_ns: Option<u64>,
    answered: bool,
}

/// A history of clients running one operation at a time against a
/// linearizable store: each operation takes effect at a point inside its
/// interval, or, of unknown outcome, maybe later or never.
pub(super) fn simulated_history(simulation: &Simulation) -> Vec<Operation> {
    let mut random = SplitMix64(simulation.seed);
    let mut clocks_ns = vec![0; simulation.clients as usize];
    let mut written: Vec<Vec<String>> = vec![Vec::new(); simulation.keys as usize];
    let mut planned = Vec::new();
    for number in 0..simulation.operations {
        let client = number % simulation.clients;
        let key = random.below(simulation.keys) as usize;
        let call = random_call(&mut random, &format!("k{key}"), number, &mut written[key]);
        let invoked_ns = clocks_ns[client as usize] + 1 + random.below(50);
        let takes_effect_ns = invoked_ns + random.below(200);
        let completed_ns = takes_effect_ns + random.below(200);
        clocks_ns[client as usize] = completed_ns;
        let fate = random.below(100);
        let failed = fate < simulation.failed_percent;
        let unknown = !failed && fate < simulation.failed_percent + simulation.unknown_percent;
        let takes_effect_ns = if failed {
            None
        } else if unknown {
            let later_ns = invoked_ns + random.below(2_000);
            (random.below(3) > 0).then_some(later_ns)
        } else {
            Some(takes_effect_ns)
        };
        let outcome = if failed {
            Outcome::Failed
        } else {
            // Answered operations get their output when applied.
            Outcome::Unknown
        };
        planned.push(Planned {
            operation: Operation {
                client,
                invoked_ns,
                completed_ns: Some(completed_ns),
                call,
                outcome,
            },
            takes_effect_ns,
            answered: !failed && !unknown,
        });
    }
    apply_in_order(&mut planned);
    planned.into_iter().map(|plan| plan.operation).collect()
}

fn random_call(random: &mut SplitMix64, key: &str, number: u64, written: &mut Vec<String>) -> Call {
    let value = format!("v{number}");
    match random.below(100) {
        0..35 => get(key),
        35..65 => {
            written.push(value.clone());
            put(key, &value)
        }
        65..75 => delete(key),
        choice => {
            let expected = match (choice % 3, written.last()) {
                (0, _) | (_, None) => None,
                (1, Some(last)) => Some(last.clone()),
                (_, Some(_)) => {
                    let pick = random.below(written.len() as u64) as usize;
                    Some(written[pick].clone())
                }
            };
            written.push(value.clone());
            cas(key, expected.as_deref(), &value)
        }
    }
}

/// `call` applied to the value of its key, as the kv plugin does it.
pub(super) fn kv_step(register: &mut Option<String>, call: &Call) -> Output {
    match call {
        Call::Put { value, .. } => Output::Previous(register.replace(value.clone())),
        Call::Delete { .. } => Output::Previous(register.take()),
        Call::Cas {
            expected, value, ..
        } => {
            let ok = register == expected;
            if ok {
                *register = Some(value.clone());
            }
            Output::Swapped {
                ok,
                current: register.clone(),
            }
        }
        Call::Get { .. } => Output::Value(register.clone()),
    }
}

/// Apply the planned operations to the store in the order they take
/// effect, recording the outputs of those answered.
fn apply_in_order(planned: &mut [Planned]) {
    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&n| planned[n].takes_effect_ns.is_some())
        .collect();
    order.sort_by_key(|&n| (planned[n].takes_effect_ns, n));
    let mut store: BTreeMap<String, Option<String>> = BTreeMap::new();
    for n in order {
        let plan = &mut planned[n];
        let key = plan.operation.call.key().to_string();
        let output = kv_step(store.entry(key).or_default(), &plan.operation.call);
        if plan.answered {
            plan.operation.outcome = Outcome::Ok(output);
        }
    }
}

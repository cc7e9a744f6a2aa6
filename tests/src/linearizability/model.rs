//! One key's operations as the search sees them: a register of interned
//! values, what each operation does to it and reported, and until when a
//! write of unknown outcome may still explain anything.

use std::collections::HashMap;

use super::history::{Call, Operation, Outcome, Output};

/// A value of one key, interned: the search compares small integers.
type ValueId = usize;

/// The register's content: a value, or absent.
pub(super) type Register = Option<ValueId>;

/// What an operation does to the register.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Put(ValueId),
    Delete,
    Cas { expected: Register, value: ValueId },
    Get,
}

/// What an operation reported, interned like the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Observation {
    Previous(Register),
    Swapped { ok: bool, current: Register },
    Value(Register),
}

/// Until when an operation may be placed.
#[derive(Clone, Copy, Debug)]
pub(super) enum End {
    /// It returned at this time: it is placed by then.
    Returns(u64),
    /// Its outcome is unknown, and placing it after this time could explain
    /// nothing more (see [`bound_unknown_writes`]): dropped there.
    RelevantUntil(u64),
    /// Its outcome is unknown; it may be placed at any time.
    Never,
}

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct RegisterOperation {
    /// Position in the whole history.
    pub(super) index: usize,
    effect: Effect,
    /// `None`: the result is unconstrained (outcome unknown).
    observed: Option<Observation>,
    pub(super) invoked_ns: u64,
    pub(super) end: End,
}

impl RegisterOperation {
    /// The register after this operation applied to `register`, or `None`
    /// if the operation could not have reported what it did.
    pub(super) fn step(&self, register: Register) -> Option<Register> {
        let (after, observation) = match self.effect {
            Effect::Put(value) => (Some(value), Observation::Previous(register)),
            Effect::Delete => (None, Observation::Previous(register)),
            Effect::Cas { expected, value } => {
                let ok = register == expected;
                let after = if ok { Some(value) } else { register };
                let current = after;
                (after, Observation::Swapped { ok, current })
            }
            Effect::Get => (register, Observation::Value(register)),
        };
        match self.observed {
            Some(observed) if observed != observation => None,
            _ => Some(after),
        }
    }

    pub(super) fn returns(&self) -> bool {
        matches!(self.end, End::Returns(_))
    }

    /// The value it writes, if it writes (a cas only if it swaps).
    fn written(&self) -> Option<Register> {
        match self.effect {
            Effect::Put(value) | Effect::Cas { value, .. } => Some(Some(value)),
            Effect::Delete => Some(None),
            Effect::Get => None,
        }
    }

    /// The values its result reports or its call expects.
    fn mentioned(&self) -> impl Iterator<Item = Register> {
        let reported = self.observed.map(|observed| match observed {
            Observation::Previous(register)
            | Observation::Value(register)
            | Observation::Swapped {
                current: register, ..
            } => register,
        });
        let expected = match self.effect {
            Effect::Cas { expected, .. } => Some(expected),
            _ => None,
        };
        reported.into_iter().chain(expected)
    }
}

/// Which operations mention a value: when the last one that returned did,
/// and whether one of unknown outcome does.
#[derive(Clone, Copy, Debug, Default)]
struct Mentions {
    last_returned_ns: Option<u64>,
    by_unknown: bool,
}

/// Bound when each write of unknown outcome may be placed. Say one writes
/// `w` and is placed after every operation that mentions `w` (reports it or
/// expects it in a cas), none of them of unknown outcome. Up to the next
/// write, an operation placed either mentions `w`, and there is none left,
/// or is a cas of unknown outcome that does not swap, which can be left out
/// too. The next write cannot mention `w` either, so it is a put or delete of
/// unknown outcome, whose effect does not depend on `w`. Taking the write
/// out leaves an order just as valid. So a write of `w` is dropped once the
/// last operation mentioning `w` returned, left out if that was before its
/// invocation or none does, and kept to the end if an operation of unknown
/// outcome (a cas) expects `w`.
fn bound_unknown_writes(operations: &mut Vec<RegisterOperation>) {
    let mut mentions: HashMap<Register, Mentions> = HashMap::new();
    for operation in operations.iter() {
        for register in operation.mentioned() {
            let mention = mentions.entry(register).or_default();
            match operation.end {
                End::Returns(returned_ns) => {
                    mention.last_returned_ns = mention.last_returned_ns.max(Some(returned_ns));
                }
                End::RelevantUntil(_) | End::Never => mention.by_unknown = true,
            }
        }
    }
    operations.retain_mut(|operation| {
        let (End::Never, Some(written)) = (operation.end, operation.written()) else {
            return true;
        };
        let mention = mentions.get(&written).copied().unwrap_or_default();
        if mention.by_unknown {
            return true;
        }
        match mention.last_returned_ns {
            Some(last_ns) if last_ns >= operation.invoked_ns => {
                operation.end = End::RelevantUntil(last_ns);
                true
            }
            _ => false,
        }
    });
}

/// The register operations of one key and its interned values.
pub(super) struct KeyModel<'h> {
    /// By invocation time, so the placed ones are mostly a prefix.
    pub(super) operations: Vec<RegisterOperation>,
    /// `ValueId` → value.
    pub(super) values: Vec<&'h str>,
}

impl<'h> KeyModel<'h> {
    /// Failed operations, and reads of unknown outcome, are left out: they
    /// neither change the register nor constrain it.
    pub(super) fn new(history: &'h [Operation], indices: &[usize]) -> Self {
        let mut interner = Interner::default();
        let mut operations: Vec<RegisterOperation> = indices
            .iter()
            .filter_map(|&index| {
                let operation = history.get(index)?;
                let (observed, end) = match (&operation.outcome, operation.completed_ns) {
                    (Outcome::Failed, _) => return None,
                    (Outcome::Unknown, _) if operation.call.is_query() => return None,
                    (Outcome::Unknown, _) | (Outcome::Ok(_), None) => (None, End::Never),
                    (Outcome::Ok(output), Some(completed_ns)) => (
                        Some(interner.observation(output)),
                        End::Returns(completed_ns),
                    ),
                };
                Some(RegisterOperation {
                    index,
                    effect: interner.effect(&operation.call),
                    observed,
                    invoked_ns: operation.invoked_ns,
                    end,
                })
            })
            .collect();
        bound_unknown_writes(&mut operations);
        operations.sort_by_key(|operation| (operation.invoked_ns, operation.index));
        Self {
            operations,
            values: interner.values,
        }
    }
}

/// Gives each distinct value of a key a small integer.
#[derive(Default)]
struct Interner<'h> {
    ids: HashMap<&'h str, ValueId>,
    values: Vec<&'h str>,
}

impl<'h> Interner<'h> {
    fn id(&mut self, value: &'h str) -> ValueId {
        *self.ids.entry(value).or_insert_with(|| {
            self.values.push(value);
            self.values.len() - 1
        })
    }

    fn register(&mut self, value: &'h Option<String>) -> Register {
        value.as_deref().map(|value| self.id(value))
    }

    fn effect(&mut self, call: &'h Call) -> Effect {
        match call {
            Call::Put { value, .. } => Effect::Put(self.id(value)),
            Call::Delete { .. } => Effect::Delete,
            Call::Cas {
                expected, value, ..
            } => Effect::Cas {
                expected: self.register(expected),
                value: self.id(value),
            },
            Call::Get { .. } => Effect::Get,
        }
    }

    fn observation(&mut self, output: &'h Output) -> Observation {
        match output {
            Output::Previous(previous) => Observation::Previous(self.register(previous)),
            Output::Swapped { ok, current } => Observation::Swapped {
                ok: *ok,
                current: self.register(current),
            },
            Output::Value(value) => Observation::Value(self.register(value)),
        }
    }
}

//! Counter groups defined once. A group is a struct of `u64` counters declared with
//! [`counters!`](crate::counters): the one declaration gives the struct, its merge
//! (`absorb`) and a table of [`Counter`] descriptors (`ALL`) that the text table, the
//! figures, the metrics exposition and the JSON iterate, so adding a counter is one
//! line in the declaration (see docs/extending.md).

/// How the shards of a parallel analysis combine one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Parts of a whole: the shards' counts add up.
    Sum,
    /// Every shard counts the same thing (e.g. every shard reorders every frame): the
    /// largest count is the count.
    Max,
}

impl Merge {
    pub fn apply(self, a: u64, b: u64) -> u64 {
        match self {
            Merge::Sum => a + b,
            Merge::Max => a.max(b),
        }
    }
}

/// Everything the views need to know about one counter of group `S`.
pub struct Counter<S> {
    /// Field name, and key in the JSON report.
    pub key: &'static str,
    /// What the text table and the figures call it.
    pub label: &'static str,
    /// Label value in the group's metric family, if the counter is exported.
    pub metric: Option<&'static str>,
    /// Something that went wrong (counted in the group's `total()`), not normal traffic.
    pub anomaly: bool,
    pub merge: Merge,
    pub get: fn(&S) -> u64,
    pub get_mut: fn(&mut S) -> &mut u64,
}

impl<S> Counter<S> {
    pub fn value(&self, s: &S) -> u64 {
        (self.get)(s)
    }
}

impl<S> std::fmt::Debug for Counter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter").field("key", &self.key).finish()
    }
}

/// Declares a counter group: a struct of `pub u64` fields, one line each:
///
/// ```text
/// /// doc comment
/// field: "table label", metric: Some("kind_label") | None, anomaly: bool, merge: Sum | Max;
/// ```
///
/// and generates `ALL` (the descriptors in declaration order, which is the table's
/// order), `absorb` (the merge), `total` (the anomalies) and `iter`. An optional
/// `nested { field: Type, ... }` block after the struct adds fields of other types,
/// merged by their own `absorb`.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $label:literal, metric: $metric:expr, anomaly: $anomaly:expr, merge: $merge:ident;
            )*
        }
        $(
            nested {
                $(
                    $(#[$nmeta:meta])*
                    $nfield:ident : $nty:ty
                ),* $(,)?
            }
        )?
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[$fmeta])*
                pub $field: u64,
            )*
            $($(
                $(#[$nmeta])*
                pub $nfield: $nty,
            )*)?
        }

        impl $name {
            pub const ALL: &'static [$crate::counters::Counter<$name>] = &[
                $(
                    $crate::counters::Counter {
                        key: stringify!($field),
                        label: $label,
                        metric: $metric,
                        anomaly: $anomaly,
                        merge: $crate::counters::Merge::$merge,
                        get: |s| s.$field,
                        get_mut: |s| &mut s.$field,
                    },
                )*
            ];

            /// Adds another shard's counts, each by its merge rule.
            pub fn absorb(&mut self, o: &$name) {
                for c in Self::ALL {
                    let v = c.merge.apply(c.value(self), c.value(o));
                    *(c.get_mut)(self) = v;
                }
                $($(
                    self.$nfield.absorb(&o.$nfield);
                )*)?
            }

            /// Everything that went wrong (the counters declared `anomaly: true`).
            pub fn total(&self) -> u64 {
                Self::ALL
                    .iter()
                    .filter(|c| c.anomaly)
                    .map(|c| c.value(self))
                    .sum()
            }

            /// Each counter with its value, in declaration order.
            pub fn iter(
                &self,
            ) -> impl Iterator<Item = (&'static $crate::counters::Counter<$name>, u64)> + '_ {
                Self::ALL.iter().map(move |c| (c, c.value(self)))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Merge;

    crate::counters! {
        /// A group as a new one is written: each counter is one line.
        #[derive(Debug, Default)]
        struct Example {
            /// A thing that went wrong.
            broken: "broken things", metric: Some("broken"), anomaly: true, merge: Sum;
            /// Normal traffic, shown but not an anomaly.
            seen: "things seen", metric: None, anomaly: false, merge: Sum;
            /// Counted identically by every shard.
            held: "most held", metric: None, anomaly: false, merge: Max;
        }
        nested {
            /// Another group, merged by its own rules.
            inner: Inner,
        }
    }

    crate::counters! {
        #[derive(Debug, Default)]
        struct Inner {
            n: "n", metric: None, anomaly: true, merge: Sum;
        }
    }

    #[test]
    fn one_line_declares_name_label_metric_and_merge() {
        let keys: Vec<_> = Example::ALL.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["broken", "seen", "held"]);
        assert_eq!(Example::ALL[0].label, "broken things");
        assert_eq!(Example::ALL[0].metric, Some("broken"));
        assert_eq!(Example::ALL[2].merge, Merge::Max);
        let mut a = Example {
            broken: 2,
            seen: 5,
            held: 7,
            inner: Inner { n: 1 },
        };
        a.absorb(&Example {
            broken: 1,
            seen: 1,
            held: 3,
            inner: Inner { n: 4 },
        });
        assert_eq!((a.broken, a.seen, a.held, a.inner.n), (3, 6, 7, 5));
        assert_eq!((a.inner.total(), a.inner.iter().count()), (5, 1));
        assert_eq!(a.total(), 3);
        let values: Vec<u64> = a.iter().map(|(_, v)| v).collect();
        assert_eq!(values, [3, 6, 7]);
    }
}

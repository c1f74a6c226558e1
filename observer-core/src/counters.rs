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
    /// Where the counter is in the metrics exposition, if it is exported.
    pub metric: Option<Metric>,
    /// Something that went wrong (counted in the group's `total()`), not normal traffic.
    pub anomaly: bool,
    pub merge: Merge,
    /// Place in the analysis report's "Decoding" list, if listed there; the list gathers
    /// several groups, in this order, and sums counters that share a label into one line.
    pub decoding: Option<u16>,
    /// Listed among the decoding anomalies of the figures' page (`index.html`).
    pub figures: bool,
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

/// A counter family of the metrics exposition (`/metrics`) whose samples are declared
/// counters: each counter names its family in its declaration ([`by`], [`alone`],
/// [`of_group`]), so a family is written once, here or next to its group, and filled by
/// every counter that names it.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The name a scraper sees, with its `_total`.
    pub name: &'static str,
    pub help: &'static str,
    /// The label that tells its samples apart, if it has more than one.
    pub label: Option<&'static str>,
    /// Its place in the exposition: families come out in this order, those written by
    /// hand in `LiveMetrics::exposition` too, so an exported family keeps its place.
    pub order: u16,
}

/// Which sample of its family a counter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The one with this value of the family's label.
    Labelled(&'static str),
    /// The family's only sample, without labels.
    Alone,
    /// The one whose label value is what the group counts (a source's name), given when
    /// the group is exported.
    OfGroup,
}

/// A counter's place in the exposition: its family and its sample there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub family: &'static Family,
    pub sample: Sample,
}

/// `metric: by(&FAMILY, "value")`: the sample of `family` labelled `value`.
pub const fn by(family: &'static Family, value: &'static str) -> Option<Metric> {
    Some(Metric {
        family,
        sample: Sample::Labelled(value),
    })
}

/// `metric: alone(&FAMILY)`: the only sample of `family`.
pub const fn alone(family: &'static Family) -> Option<Metric> {
    Some(Metric {
        family,
        sample: Sample::Alone,
    })
}

/// `metric: of_group(&FAMILY)`: the sample of `family` labelled with what the group
/// counts.
pub const fn of_group(family: &'static Family) -> Option<Metric> {
    Some(Metric {
        family,
        sample: Sample::OfGroup,
    })
}

/// The families of the core's counter groups, in exposition order. The hand-written
/// families of `LiveMetrics::exposition` and the live source's take the places between.
pub mod families {
    use super::Family;

    pub const JXTA_MESSAGES: Family = Family {
        name: "observer_jxta_messages_total",
        help: "JXTA messages decoded, by transport.",
        label: Some("transport"),
        order: 60,
    };
    pub const JXTA_HTTP: Family = Family {
        name: "observer_jxta_http_total",
        help: "JXTA's HTTP transport: requests, responses, bodies of type application/x-jxta-msg (and of those chunked), messages decoded from them (also counted under transport tcp).",
        label: Some("kind"),
        order: 70,
    };
    pub const ANOMALIES: Family = Family {
        name: "observer_anomalies_total",
        help: "PING/PONG anomalies (never transactions), by kind.",
        label: Some("kind"),
        order: 90,
    };
    pub const STATE_EXPIRED: Family = Family {
        name: "observer_state_expired_total",
        help: "Matcher state let go: idle pairs freed, finished correlators forgotten past their horizon or pushed out by the cap, by kind.",
        label: Some("kind"),
        order: 95,
    };
    pub const PACKETS: Family = Family {
        name: "observer_packets_total",
        help: "Frames handed to the pipeline.",
        label: None,
        order: 100,
    };
    pub const REORDER_FRAMES: Family = Family {
        name: "observer_reorder_frames_total",
        help: "Frames put back in time order (reordered), later than the window (late, used as they came), or released before their window by the hold bound (forced).",
        label: Some("kind"),
        order: 110,
    };
    /// Filled by the packet counters, then the flow counters.
    pub const PACKETS_DROPPED: Family = Family {
        name: "observer_packets_dropped_total",
        help: "Packets the receiving host would drop, dropped here too, by reason.",
        label: Some("reason"),
        order: 120,
    };
    pub const JIM_OVERSIZED_DOCUMENTS: Family = Family {
        name: "observer_jim_oversized_documents_total",
        help: "JIM documents larger than --max-document, not decoded.",
        label: None,
        order: 130,
    };
    pub const TCP_CONFLICTING_OVERLAP: Family = Family {
        name: "observer_tcp_conflicting_overlap_total",
        help: "TCP segments overlapping earlier bytes with different contents (first copy kept).",
        label: None,
        order: 140,
    };
    pub const CHECKSUM_OFFLOADED_DIRECTIONS: Family = Family {
        name: "observer_checksum_offloaded_directions_total",
        help: "TCP flow directions whose checksums are offloaded (filled in after capture), not verified.",
        label: None,
        order: 150,
    };
}

/// How a field that is not a `u64` counter merges: a nested counter group by its own
/// rules, a map of counts key by key.
pub trait Absorb {
    fn absorb(&mut self, other: &Self);
}

impl<K: Ord + Clone> Absorb for std::collections::BTreeMap<K, u64> {
    fn absorb(&mut self, other: &Self) {
        for (k, v) in other {
            *self.entry(k.clone()).or_default() += v;
        }
    }
}

impl<K, H> Absorb for std::collections::HashMap<K, u64, H>
where
    K: std::hash::Hash + Eq + Clone,
    H: std::hash::BuildHasher,
{
    fn absorb(&mut self, other: &Self) {
        for (k, v) in other {
            *self.entry(k.clone()).or_default() += v;
        }
    }
}

/// Declares a counter group: a struct of `pub u64` fields, one line each:
///
/// ```text
/// /// doc comment
/// field: "table label", metric: by(&FAMILY, "label value") | alone(&FAMILY) | of_group(&FAMILY) | None, anomaly: bool, merge: Sum | Max;
/// field: "table label", metric: None, anomaly: true, merge: Sum, decoding: 7, figures: true;
/// ```
///
/// and generates `ALL` (the descriptors in declaration order, which is the table's
/// order), `absorb` (the merge), `total` (the anomalies) and `iter`. `decoding: N`
/// lists the counter in the analysis report's "Decoding" list, at place `N`;
/// `figures: true` among the decoding anomalies of the figures' page. An
/// optional `nested { field: Type, ... }` block after the struct adds fields of other
/// types, merged by their [`Absorb`]; an optional `labels { field: Type, ... }` block
/// adds fields that say what the counts are of (a source's name): not counted, kept
/// as they are by the merge.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $label:literal, metric: $metric:expr, anomaly: $anomaly:expr, merge: $merge:ident $(, decoding: $decoding:literal)? $(, figures: $figures:literal)?;
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
        $(
            labels {
                $(
                    $(#[$lmeta:meta])*
                    $lfield:ident : $lty:ty
                ),* $(,)?
            }
        )?
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(
                $(#[$lmeta])*
                pub $lfield: $lty,
            )*)?
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
                        decoding: $crate::counters::place(&[$($decoding)?]),
                        figures: $crate::counters::flag(&[$($figures)?]),
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
                    $crate::counters::Absorb::absorb(&mut self.$nfield, &o.$nfield);
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

        impl $crate::counters::Absorb for $name {
            fn absorb(&mut self, other: &Self) {
                $name::absorb(self, other)
            }
        }
    };
}

/// Sets every counter of `group` to a value of its own, counting on from `next`. Tests
/// of the places that iterate the declarations use it, so that a counter shown under
/// another's name, or in another's place, shows.
pub fn set_distinct<S>(group: &mut S, all: &[Counter<S>], next: &mut u64) {
    for c in all {
        *next += 1;
        *(c.get_mut)(group) = *next;
    }
}

/// A counter as [`decoding_lines`] takes it: its label, its place and its value.
pub fn listed<S>((c, n): (&Counter<S>, u64)) -> (&'static str, Option<u16>, u64) {
    (c.label, c.decoding, n)
}

/// The place a declaration gives (`decoding: N`), or none.
#[doc(hidden)]
pub const fn place(given: &[u16]) -> Option<u16> {
    match given {
        [p] => Some(*p),
        _ => None,
    }
}

/// The flag a declaration gives (`figures: true`), false when it gives none.
#[doc(hidden)]
pub const fn flag(given: &[bool]) -> bool {
    matches!(given, [true])
}

/// The lines of the analysis report's "Decoding" list from the counters of `groups`
/// (each a group's [`iter`](crate::counters) mapped to label, place and value): the
/// counters with a place, in place order, those sharing a label summed into one line,
/// the lines at zero left out.
pub fn decoding_lines(
    groups: impl IntoIterator<Item = (&'static str, Option<u16>, u64)>,
) -> Vec<(&'static str, u64)> {
    let mut listed: Vec<(u16, &'static str, u64)> = Vec::new();
    for (label, place, n) in groups {
        let Some(place) = place else { continue };
        match listed.iter_mut().find(|l| l.1 == label) {
            Some(l) => l.2 += n,
            None => listed.push((place, label, n)),
        }
    }
    listed.sort_by_key(|l| l.0);
    listed
        .into_iter()
        .filter(|l| l.2 > 0)
        .map(|l| (l.1, l.2))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{by, decoding_lines, listed, Family, Merge, Metric, Sample};

    const BROKEN: Family = Family {
        name: "example_broken_total",
        help: "Broken things.",
        label: Some("kind"),
        order: 0,
    };

    crate::counters! {
        /// A group as a new one is written: each counter is one line.
        #[derive(Debug, Default)]
        struct Example {
            /// A thing that went wrong.
            broken: "broken things", metric: by(&BROKEN, "broken"), anomaly: true, merge: Sum, decoding: 2, figures: true;
            /// Normal traffic, shown but not an anomaly.
            seen: "things seen", metric: None, anomaly: false, merge: Sum;
            /// Counted identically by every shard.
            held: "most held", metric: None, anomaly: false, merge: Max, decoding: 1;
        }
        nested {
            /// Another group, merged by its own rules.
            inner: Inner,
            /// Counts by name, merged name by name.
            by_name: std::collections::BTreeMap<String, u64>,
        }
        labels {
            /// What the counts are of: kept by the merge.
            source: &'static str,
        }
    }

    crate::counters! {
        #[derive(Debug, Default)]
        struct Inner {
            n: "n", metric: None, anomaly: true, merge: Sum;
            /// Listed under the same label as `cap_b`: one line, their sum.
            cap_a: "cap hits", metric: None, anomaly: false, merge: Sum, decoding: 3;
            cap_b: "cap hits", metric: None, anomaly: false, merge: Sum, decoding: 3;
            quiet: "never seen", metric: None, anomaly: false, merge: Sum, decoding: 0;
        }
    }

    #[test]
    fn one_line_declares_name_label_metric_and_merge() {
        let keys: Vec<_> = Example::ALL.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["broken", "seen", "held"]);
        assert_eq!(Example::ALL[0].label, "broken things");
        assert_eq!(
            Example::ALL[0].metric,
            Some(Metric {
                family: &BROKEN,
                sample: Sample::Labelled("broken")
            })
        );
        assert_eq!(Example::ALL[1].metric, None);
        assert_eq!(
            (Example::ALL[0].figures, Example::ALL[2].figures),
            (true, false)
        );
        assert_eq!(Example::ALL[2].merge, Merge::Max);
        assert_eq!(Example::ALL[1].decoding, None);
        let inner = |n, cap_a| Inner {
            n,
            cap_a,
            cap_b: 10,
            quiet: 0,
        };
        let mut a = Example {
            source: "mine",
            broken: 2,
            seen: 5,
            held: 7,
            inner: inner(1, 1),
            by_name: [("x".to_string(), 1)].into(),
        };
        a.absorb(&Example {
            source: "theirs",
            broken: 1,
            seen: 1,
            held: 3,
            inner: inner(4, 2),
            by_name: [("x".to_string(), 2), ("y".to_string(), 5)].into(),
        });
        assert_eq!((a.broken, a.seen, a.held, a.inner.n), (3, 6, 7, 5));
        assert_eq!(a.source, "mine");
        assert_eq!(
            a.by_name,
            [("x".to_string(), 3), ("y".to_string(), 5)].into()
        );
        assert_eq!((a.inner.total(), a.inner.iter().count()), (5, 4));
        assert_eq!(a.total(), 3);
        let values: Vec<u64> = a.iter().map(|(_, v)| v).collect();
        assert_eq!(values, [3, 6, 7]);
        // Place order across groups, shared labels summed, zeros left out.
        let lines = decoding_lines(a.iter().map(listed).chain(a.inner.iter().map(listed)));
        assert_eq!(
            lines,
            [("most held", 7), ("broken things", 3), ("cap hits", 23)]
        );
    }
}

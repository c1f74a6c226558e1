//! The JIM layer's limits and counters: documents found in message elements.

/// Limits of the JIM layer.
#[derive(Clone, Debug)]
pub struct JimConfig {
    /// Largest JIM document decoded (`--max-document`); larger ones are counted in
    /// [`JimStats::oversized_documents`], by element and root.
    pub max_document: usize,
}

impl Default for JimConfig {
    fn default() -> Self {
        JimConfig {
            max_document: super::DEFAULT_MAX_DOCUMENT_BYTES,
        }
    }
}

/// Distinct (element, root) names kept for [`JimStats::oversized`]; beyond, only the
/// total counts (the names come from the wire).
const MAX_OVERSIZED_NAMES: usize = 64;

use crate::counters::{alone, families::JIM_OVERSIZED_DOCUMENTS};

crate::counters! {
    /// Counters of the JIM layer: documents found in message elements.
    #[derive(Debug, Default, Clone, serde::Serialize)]
    pub struct JimStats {
        documents: "JIM documents", metric: None, anomaly: false, merge: Sum;
        pings: "PING documents", metric: None, anomaly: false, merge: Sum;
        pongs: "PONG documents", metric: None, anomaly: false, merge: Sum;
        messages: "MESSAGE documents", metric: None, anomaly: false, merge: Sum;
        /// Elements that looked like XML but were not well-formed (or hostile).
        malformed: "malformed JIM documents", metric: None, anomaly: true, merge: Sum;
        /// Well-formed XML elements whose root is not a JIM document.
        other_xml: "other XML elements", metric: None, anomaly: false, merge: Sum;
        /// JIM documents larger than `--max-document`: not decoded, not malformed.
        oversized_documents: "JIM documents larger than --max-document", metric: alone(&JIM_OVERSIZED_DOCUMENTS), anomaly: true, merge: Sum;
    }
    nested {
        /// Of those, count and largest size by `element ROOT` (e.g. `pingpong:payload PING`).
        oversized: OversizedNames,
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Oversized {
    pub count: u64,
    pub max_bytes: u64,
}

/// Oversized documents by name, at most [`MAX_OVERSIZED_NAMES`] names.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct OversizedNames(std::collections::BTreeMap<String, Oversized>);

impl std::ops::Deref for OversizedNames {
    type Target = std::collections::BTreeMap<String, Oversized>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a OversizedNames {
    type Item = (&'a String, &'a Oversized);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Oversized>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl crate::counters::Absorb for OversizedNames {
    fn absorb(&mut self, o: &OversizedNames) {
        for (k, v) in &o.0 {
            self.note(k, v.count, v.max_bytes);
        }
    }
}

impl OversizedNames {
    fn note(&mut self, key: &str, count: u64, bytes: u64) {
        if !self.0.contains_key(key) && self.0.len() >= MAX_OVERSIZED_NAMES {
            return;
        }
        let e = self.0.entry(key.to_owned()).or_default();
        e.count += count;
        e.max_bytes = e.max_bytes.max(bytes);
    }
}

impl JimStats {
    pub(crate) fn note_oversized(&mut self, key: &str, count: u64, bytes: u64) {
        self.oversized.note(key, count, bytes);
    }
}

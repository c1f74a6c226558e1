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

/// Counters of the JIM layer: documents found in message elements.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct JimStats {
    pub documents: u64,
    pub pings: u64,
    pub pongs: u64,
    pub messages: u64,
    /// Elements that looked like XML but were not well-formed (or hostile).
    pub malformed: u64,
    /// Well-formed XML elements whose root is not a JIM document.
    pub other_xml: u64,
    /// JIM documents larger than `--max-document`: not decoded, not malformed.
    pub oversized_documents: u64,
    /// Of those, count and largest size by `element ROOT` (e.g. `pingpong:payload PING`).
    pub oversized: std::collections::BTreeMap<String, Oversized>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Oversized {
    pub count: u64,
    pub max_bytes: u64,
}

impl JimStats {
    pub fn absorb(&mut self, o: &JimStats) {
        self.documents += o.documents;
        self.pings += o.pings;
        self.pongs += o.pongs;
        self.messages += o.messages;
        self.malformed += o.malformed;
        self.other_xml += o.other_xml;
        self.oversized_documents += o.oversized_documents;
        for (k, v) in &o.oversized {
            self.note_oversized(k, v.count, v.max_bytes);
        }
    }

    pub(crate) fn note_oversized(&mut self, key: &str, count: u64, bytes: u64) {
        if !self.oversized.contains_key(key) && self.oversized.len() >= MAX_OVERSIZED_NAMES {
            return;
        }
        let e = self.oversized.entry(key.to_owned()).or_default();
        e.count += count;
        e.max_bytes = e.max_bytes.max(bytes);
    }
}

//! The listing record of one decoded JXTA message (`observer messages`, the tshark
//! cross-check).

use super::documents::Origin;
use crate::jim;
use crate::jxta::{self, FramedMessage, Message};
use crate::transaction::Transport;
use crate::UnixNanos;

/// One decoded JXTA message, as `observer messages` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRecord {
    pub start_unix_ns: UnixNanos,
    pub stop_unix_ns: UnixNanos,
    pub transport: &'static str,
    /// Flow number (TCP) in order of appearance; `None` for UDP.
    pub flow: Option<u64>,
    pub src: String,
    pub dst: String,
    pub framed_bytes: u64,
    pub message_bytes: u64,
    pub src_peer: Option<String>,
    pub dst_peer: Option<String>,
    pub service: Option<String>,
    pub pipe_id: Option<String>,
    pub elements: Vec<ElementRecord>,
    /// The `jxmg` body could not be decoded; `elements` is empty.
    pub malformed: Option<String>,
    /// What the message is: `PING`, `PONG`, `MESSAGE` (its JIM document), `bad JIM`
    /// (a JIM root that does not decode) or `other`.
    pub kind: &'static str,
    /// The JIM document the message carries, when it has one.
    pub jim: Option<JimRecord>,
}

/// The fields of a JIM document that say who talks to whom about what.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JimRecord {
    pub name: Option<String>,
    pub peer_id: Option<String>,
    pub status: Option<String>,
    pub correlator: Option<String>,
    /// Bytes of the `<correlator>` element on the wire (0 without one).
    pub correlator_bytes: u32,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The `kind` of a message without a JIM document.
pub const KIND_OTHER: &str = "other";
/// The `kind` of a message whose JIM document does not decode.
pub const KIND_BAD_JIM: &str = "bad JIM";

/// The first JIM document among the application elements (the stack's own elements
/// are in the `jxta` namespace and never are one).
fn jim_of(msg: &Message<'_>) -> (&'static str, Option<JimRecord>) {
    for element in msg.elements.iter().filter(|e| e.namespace != "jxta") {
        match jim::parse(element.content) {
            Ok(Some(doc)) => {
                let record = JimRecord {
                    name: doc.name,
                    peer_id: doc.peer_id,
                    status: doc
                        .status
                        .map(|s| s.as_str().to_string())
                        .or(doc.status_text),
                    correlator: doc.correlator,
                    correlator_bytes: doc.correlator_bytes,
                    from: doc.from,
                    to: doc.to,
                };
                return (doc.kind.root_name(), Some(record));
            }
            Ok(None) => {}
            Err(_) => return (KIND_BAD_JIM, None),
        }
    }
    (KIND_OTHER, None)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ElementRecord {
    pub namespace: String,
    pub name: String,
    pub mime: Option<String>,
    pub length: u64,
}

pub(crate) fn record(
    framed: &FramedMessage<'_>,
    origin: &Origin<'_>,
    msg: Option<&Message<'_>>,
    err: Option<&jxta::JxtaError>,
) -> MessageRecord {
    let addressing = msg.map(jxta::addressing);
    let (kind, jim) = msg.map_or((KIND_OTHER, None), jim_of);
    MessageRecord {
        start_unix_ns: framed.start,
        stop_unix_ns: framed.stop,
        transport: match origin.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Http => "http",
        },
        flow: origin.flow,
        src: origin.src.to_string(),
        dst: origin.dst.to_string(),
        framed_bytes: framed.framed_len,
        message_bytes: framed.body.len() as u64,
        // Without a router element (multicast), the sender names itself.
        src_peer: addressing.as_ref().and_then(|a| {
            a.src_peer
                .as_ref()
                .or(a.header_src_peer.as_ref())
                .map(|p| p.to_string())
        }),
        dst_peer: addressing
            .as_ref()
            .and_then(|a| a.dst_peer.as_ref().map(|p| p.to_string())),
        service: addressing.as_ref().and_then(|a| a.service.clone()),
        pipe_id: addressing.as_ref().and_then(|a| a.pipe_id.clone()),
        elements: msg
            .map(|m| {
                m.elements
                    .iter()
                    .map(|e| ElementRecord {
                        namespace: e.namespace.to_string(),
                        name: e.name.to_string(),
                        mime: e.mime.as_ref().map(|m| m.to_string()),
                        length: e.content.len() as u64,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        malformed: err.map(|e| e.to_string()),
        kind,
        jim,
    }
}

//! Endpoint addressing (spec §3): who sent a message, to whom, and for which service
//! or pipe. The peers' identities live in XML and text elements the JXTA stack appends
//! after the application's elements.

use std::borrow::Cow;

use quick_xml::events::Event;

use super::{Message, PeerId};

pub const NS_JXTA: &str = "jxta";
pub const ERM_NAME: &str = "EndpointRouterMsg";
/// JXTA 1.x name of the router element (spec §3.1); same document shape.
pub const ERM_NAME_1X: &str = "JxtaEndpointRouter";
pub const HEADER_SRC_PEER: &str = "EndpointHeaderSrcPeer";
pub const WIRE_HEADER: &str = "JxtaWireHeader";
pub const DEST_ADDRESS: &str = "EndpointDestinationAddress";
pub const SRC_ADDRESS: &str = "EndpointSourceAddress";
pub const PIPE_SERVICE: &str = "PipeService";

/// Where a message comes from and goes, as far as its elements say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressing {
    /// ERM `<Src>`: the originating peer of a routed message.
    pub src_peer: Option<PeerId>,
    /// ERM `<Dest>` peer part.
    pub dst_peer: Option<PeerId>,
    /// ERM `<Last>` (1.x `<LastHop>`): the peer that forwarded it last.
    pub last_hop: Option<PeerId>,
    /// Service name: from ERM `<Dest>`, else from `EndpointDestinationAddress`.
    pub service: Option<String>,
    /// Service parameter (for `PipeService`, the pipe ID).
    pub service_param: Option<String>,
    /// The pipe: ERM `<Dest>` param for `PipeService` (unicast pipes), else
    /// `JxtaWireHeader/<PipeId>` (propagate pipes).
    pub pipe_id: Option<String>,
    /// `jxta:EndpointHeaderSrcPeer` (multicast/propagation).
    pub header_src_peer: Option<PeerId>,
}

/// Extracts the addressing from a decoded message. Malformed XML or addresses leave
/// the corresponding fields `None`: addressing is best effort, never an error.
pub fn addressing(msg: &Message<'_>) -> Addressing {
    let mut a = Addressing::default();
    let mut dest_address: Option<&str> = None;
    for el in &msg.elements {
        if el.namespace != NS_JXTA {
            continue;
        }
        match el.name.as_ref() {
            ERM_NAME | ERM_NAME_1X if a.src_peer.is_none() && a.dst_peer.is_none() => {
                let Some(xml) = el.text() else { continue };
                let [src, dest, last, last_hop] =
                    root_child_texts(xml, ["Src", "Dest", "Last", "LastHop"]);
                a.src_peer = src.as_deref().and_then(peer_of_address);
                a.last_hop = last.or(last_hop).as_deref().and_then(peer_of_address);
                if let Some(d) = dest.as_deref() {
                    if let Some(ep) = parse_endpoint_address(d) {
                        a.dst_peer = PeerId::parse(ep.address);
                        a.service = ep.service.map(str::to_string);
                        a.service_param = ep.param.map(str::to_string);
                        if ep.service == Some(PIPE_SERVICE) {
                            a.pipe_id = ep.param.map(str::to_string);
                        }
                    }
                }
            }
            HEADER_SRC_PEER => {
                a.header_src_peer = el.text().and_then(PeerId::parse);
            }
            WIRE_HEADER => {
                if let Some(xml) = el.text() {
                    let [pipe] = root_child_texts(xml, ["PipeId"]);
                    if a.pipe_id.is_none() {
                        a.pipe_id = pipe.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
                    }
                }
            }
            DEST_ADDRESS => dest_address = el.text(),
            _ => {}
        }
    }
    // The transport destination names only the router service for routed messages;
    // it is the service only when there is no ERM to say better.
    if a.service.is_none() {
        if let Some(ep) = dest_address.and_then(|d| parse_endpoint_address(d.trim())) {
            a.service = ep.service.map(str::to_string);
            a.service_param = ep.param.map(str::to_string);
        }
    }
    a
}

/// The peer in a `jxta://uuid-…[/service…]` address.
fn peer_of_address(s: &str) -> Option<PeerId> {
    let s = s.trim();
    match parse_endpoint_address(s) {
        Some(ep) => PeerId::parse(ep.address),
        None => PeerId::parse(s),
    }
}

/// Text of the first element named `names[i]` (local name, any prefix) that is a
/// direct child of the root element. Nested elements of the same name (route
/// advertisements inside JXSE 2.7's ERM carry their own `<Dest>`-like tags) are not
/// taken. Entity and character references are resolved; CDATA kept; surrounding
/// whitespace trimmed. Parsing stops at the first XML error, keeping what was found.
pub fn root_child_texts<const N: usize>(xml: &str, names: [&str; N]) -> [Option<String>; N] {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0usize;
    // (index into names, text so far) while inside a wanted element.
    let mut current: Option<(usize, String)> = None;
    loop {
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(_) => break,
        };
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth == 2 && current.is_none() {
                    let local = e.local_name();
                    if let Some(i) = names.iter().position(|n| *n == local.as_ref()) {
                        if found.get(i).is_some_and(Option::is_none) {
                            current = Some((i, String::new()));
                        }
                    }
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some((i, text)) = current.take() {
                        if let Some(slot) = found.get_mut(i) {
                            *slot = Some(text.trim().to_string());
                        }
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Empty(e) => {
                // `<Dest/>`: present but empty.
                if depth == 1 {
                    let local = e.local_name();
                    if let Some(i) = names.iter().position(|n| *n == local.as_ref()) {
                        if let Some(slot) = found.get_mut(i) {
                            slot.get_or_insert_with(String::new);
                        }
                    }
                }
            }
            Event::Text(t) => {
                if let Some((_, s)) = current.as_mut() {
                    s.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some((_, s)) = current.as_mut() {
                    s.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, s)) = current.as_mut() {
                    if let Ok(Some(c)) = r.resolve_char_ref() {
                        s.push(c);
                    } else if let Some(v) = quick_xml::escape::resolve_predefined_entity(&r) {
                        s.push_str(v);
                    }
                    // Other entities are never expanded (no DTD processing).
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    found
}

/// Builds an `EndpointRouterMsg` document as JXSE 2.5 writes it (byte for byte the
/// same as in the real capture): `<Dest>` is `jxta://<dest>/<service_path>`.
pub fn erm_xml(src: &PeerId, dest: &PeerId, service_path: &str, last: &PeerId) -> String {
    let service_path = service_path.trim_start_matches('/');
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE jxta:ERM>\n\
         <jxta:ERM xml:space=\"preserve\" xmlns:jxta=\"http://jxta.org\">\n\
         <Src>jxta://{}</Src><Dest>jxta://{}/{}</Dest><Last>jxta://{}</Last><Fwd/><Rvs/></jxta:ERM>\n",
        src.unique(),
        dest.unique(),
        escape_text(service_path),
        last.unique()
    )
}

fn escape_text(s: &str) -> Cow<'_, str> {
    if s.contains(['&', '<', '>']) {
        Cow::Owned(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// `<proto>://<proto-addr>[/<service-name>[/<service-param>]]`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointAddress<'a> {
    pub protocol: &'a str,
    pub address: &'a str,
    pub service: Option<&'a str>,
    /// Everything after the service name (may itself contain `/`, as in
    /// `JxtaPropagate/jxta-NetGroup`).
    pub param: Option<&'a str>,
}

pub fn parse_endpoint_address(s: &str) -> Option<EndpointAddress<'_>> {
    let (protocol, rest) = s.split_once("://")?;
    if protocol.is_empty()
        || !protocol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    let (address, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    if address.is_empty()
        || address
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    let (service, param) = match path {
        None => (None, None),
        Some(p) => match p.split_once('/') {
            Some((s, q)) => (Some(s), Some(q)),
            None => (Some(p), None),
        },
    };
    Some(EndpointAddress {
        protocol,
        address,
        service: service.filter(|s| !s.is_empty()),
        param: param.filter(|s| !s.is_empty()),
    })
}

use super::*;

const ALICE: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03";
const BOB: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603";

const SPEC_PING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<PING>
  <Buddy>
    <name>alice</name>
    <peerID>urn:jxta:uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03</peerID>
  </Buddy>
  <correlator>4611686018427387905</correlator>
</PING>"#;

const SPEC_PONG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<PONG>
  <BuddyStatus>
    <name>bob</name>
    <peerID>urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603</peerID>
    <status>busy</status>
  </BuddyStatus>
  <correlator>4611686018427387905</correlator>
</PONG>"#;

fn ok(s: &str) -> Document {
    parse(s.as_bytes())
        .expect("well formed")
        .expect("a JIM document")
}

#[test]
fn spec_ping() {
    let d = ok(SPEC_PING);
    assert_eq!(d.kind, Kind::Ping);
    assert_eq!(d.name.as_deref(), Some("alice"));
    assert_eq!(d.peer_id.as_deref(), Some(ALICE));
    assert_eq!(d.correlator.as_deref(), Some("4611686018427387905"));
    assert_eq!(
        d.correlator_bytes as usize,
        "<correlator>4611686018427387905</correlator>".len()
    );
    assert_eq!(d.status, None);
}

#[test]
fn spec_pong() {
    let d = ok(SPEC_PONG);
    assert_eq!(d.kind, Kind::Pong);
    assert_eq!(d.name.as_deref(), Some("bob"));
    assert_eq!(d.peer_id.as_deref(), Some(BOB));
    assert_eq!(d.status, Some(Status::Busy));
    assert_eq!(d.correlator_bytes, 44);
}

#[test]
fn spec_message() {
    let d = ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MESSAGE>\n  <from>alice</from>\n  <to>bob</to>\n  <body>see you at noon</body>\n</MESSAGE>");
    assert_eq!(d.kind, Kind::Message);
    assert_eq!(d.from.as_deref(), Some("alice"));
    assert_eq!(d.to.as_deref(), Some("bob"));
    assert_eq!(d.body.as_deref(), Some("see you at noon"));
    assert_eq!(d.correlator_bytes, 0);
}

#[test]
fn real_jxse_variant() {
    let d = ok(
        r#"<?xml version="1.0" encoding="UTF-8"?><PING><correlator>corr-0001</correlator><from>PingClient</from><seq>1</seq><ts>1795528304808</ts></PING>"#,
    );
    assert_eq!(d.kind, Kind::Ping);
    assert_eq!(d.name.as_deref(), Some("PingClient"));
    assert_eq!(d.from.as_deref(), Some("PingClient"));
    assert_eq!(d.correlator.as_deref(), Some("corr-0001"));
    assert_eq!(
        d.correlator_bytes as usize,
        "<correlator>corr-0001</correlator>".len()
    );
}

#[test]
fn no_declaration_no_indentation_bom() {
    let d = ok(
        "\u{feff}<PONG><BuddyStatus><status>online</status><name>bob</name></BuddyStatus></PONG>",
    );
    assert_eq!(d.status, Some(Status::Online));
    assert_eq!(d.name.as_deref(), Some("bob"));
    let d = ok("\n\t  <PING><Buddy><name>x</name></Buddy></PING>\n\n");
    assert_eq!(d.name.as_deref(), Some("x"));
}

#[test]
fn namespace_prefixes_and_prefix_counted_in_bytes() {
    let s = r#"<jim:PONG xmlns:jim="urn:jim"><jim:BuddyStatus><jim:name>bob</jim:name><jim:status>Away</jim:status></jim:BuddyStatus><jim:correlator>c-1</jim:correlator></jim:PONG>"#;
    let d = ok(s);
    assert_eq!(d.kind, Kind::Pong);
    assert_eq!(d.name.as_deref(), Some("bob"));
    assert_eq!(d.status, Some(Status::Away));
    assert_eq!(d.correlator.as_deref(), Some("c-1"));
    assert_eq!(
        d.correlator_bytes as usize,
        "<jim:correlator>c-1</jim:correlator>".len()
    );
}

#[test]
fn any_order_unknown_elements_and_attributes() {
    let s = r#"<PONG version="2"><correlator kind="long"> 42 </correlator><extra a='1'><deep><name>not-me</name></deep></extra><BuddyStatus id="x"><status>OFFLINE</status><mood>happy</mood><peerID>urn:jxta:uuid-AB03</peerID><name>bob</name></BuddyStatus></PONG>"#;
    let d = ok(s);
    assert_eq!(d.name.as_deref(), Some("bob"));
    assert_eq!(d.status, Some(Status::Offline));
    assert_eq!(d.peer_id.as_deref(), Some("urn:jxta:uuid-AB03"));
    assert_eq!(d.correlator.as_deref(), Some("42"));
    assert_eq!(
        d.correlator_bytes as usize,
        r#"<correlator kind="long"> 42 </correlator>"#.len()
    );
}

#[test]
fn status_any_case_and_unknown_kept() {
    for (t, s) in [
        ("ONLINE", Status::Online),
        ("Busy", Status::Busy),
        (" aWaY ", Status::Away),
    ] {
        let d = ok(&format!(
            "<PONG><BuddyStatus><status>{t}</status></BuddyStatus></PONG>"
        ));
        assert_eq!(d.status, Some(s));
        assert_eq!(d.status_text, None);
    }
    let d = ok("<PONG><BuddyStatus><status>dnd</status></BuddyStatus></PONG>");
    assert_eq!(d.status, None);
    assert_eq!(d.status_text.as_deref(), Some("dnd"));
}

#[test]
fn entities_charrefs_cdata() {
    let d = ok("<MESSAGE><from>a&amp;b &lt;&gt;&quot;&apos;</from><to>&#98;&#x6F;b</to><body><![CDATA[<b>hi</b> & bye]]></body></MESSAGE>");
    assert_eq!(d.from.as_deref(), Some("a&b <>\"'"));
    assert_eq!(d.to.as_deref(), Some("bob"));
    assert_eq!(d.body.as_deref(), Some("<b>hi</b> & bye"));
    let d = ok("<PING><correlator><![CDATA[corr-7]]></correlator></PING>");
    assert_eq!(d.correlator.as_deref(), Some("corr-7"));
    assert_eq!(
        d.correlator_bytes as usize,
        "<correlator><![CDATA[corr-7]]></correlator>".len()
    );
}

#[test]
fn empty_or_missing_correlator() {
    let d = ok("<PING><correlator>   </correlator></PING>");
    assert_eq!(d.correlator, None);
    assert_eq!(d.correlator_bytes, 0);
    let d = ok("<PING><correlator/></PING>");
    assert_eq!(d.correlator, None);
    let d = ok("<PING/>");
    assert_eq!(d.kind, Kind::Ping);
}

#[test]
fn not_jim() {
    for s in [
        &b""[..],
        b"   ",
        b"hello barney",
        b"\x1f\x8b\x08\x00binary",
        b"<3 you",
        b"<jxta:ERM><Src>jxta://uuid-AB03</Src></jxta:ERM>",
        b"<?xml version=\"1.0\"?><jxta:PA><PID>x</PID></jxta:PA>",
        b"<ping/>",
        b"text <PING/>",
    ] {
        assert_eq!(parse(s), Ok(None), "{:?}", String::from_utf8_lossy(s));
    }
    // A big non-JIM document is still simply "not JIM", not "too large".
    let big = format!("<Adv>{}</Adv>", "x".repeat(DEFAULT_MAX_DOCUMENT_BYTES * 2));
    assert_eq!(parse(big.as_bytes()), Ok(None));
}

#[test]
fn billion_laughs_is_refused() {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE PING [\n <!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        s.push_str(&format!(
            " <!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    s.push_str("]>\n<PING><correlator>&lol9;</correlator></PING>");
    assert!(matches!(parse(s.as_bytes()), Err(JimError::UnknownEntity(n)) if n == "lol9"));
}

#[test]
fn external_entity_is_refused() {
    let s = "<?xml version=\"1.0\"?><!DOCTYPE PING [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><PING><Buddy><name>&xxe;</name></Buddy></PING>";
    assert!(matches!(parse(s.as_bytes()), Err(JimError::UnknownEntity(n)) if n == "xxe"));
    // Even outside any field, an unknown reference makes the document malformed.
    let s = "<PING><junk>&xxe;</junk></PING>";
    assert!(matches!(
        parse(s.as_bytes()),
        Err(JimError::UnknownEntity(_))
    ));
}

#[test]
fn deep_nesting_is_refused() {
    // Unclosed (fits the size cap, so depth is what stops it)...
    let s = format!("<PING>{}", "<a>".repeat(10_000));
    assert_eq!(
        parse(s.as_bytes()),
        Err(JimError::TooDeep { max: MAX_DEPTH })
    );
    // ...and closed (over the size cap as well: refused either way).
    let s = format!(
        "<PING>{}{}</PING>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    assert!(parse(s.as_bytes()).is_err());
    let s = format!(
        "<PING>{}{}</PING>",
        "<a>".repeat(MAX_DEPTH),
        "</a>".repeat(MAX_DEPTH)
    );
    assert_eq!(
        parse(s.as_bytes()),
        Err(JimError::TooDeep { max: MAX_DEPTH })
    );
    let s = format!(
        "<PING>{}{}</PING>",
        "<a>".repeat(MAX_DEPTH - 1),
        "</a>".repeat(MAX_DEPTH - 1)
    );
    assert!(parse(s.as_bytes()).unwrap().is_some());
}

#[test]
fn oversized_jim_is_refused() {
    let s = format!(
        "<PING><pad>{}</pad></PING>",
        "x".repeat(DEFAULT_MAX_DOCUMENT_BYTES)
    );
    assert!(matches!(
        parse(s.as_bytes()),
        Err(JimError::TooLarge {
            kind: Kind::Ping,
            ..
        })
    ));
}

#[test]
fn the_document_limit_is_the_callers() {
    // A 100 KB PING: over the old 64 KiB cap, under the default; the plain path and
    // the XML decoder both honour a smaller limit.
    let pad = "x".repeat(100_000);
    for doc in [
        format!("<PING><Buddy><name>al</name></Buddy><pad>{pad}</pad></PING>"),
        format!("<PING a='1'><Buddy><name>al</name></Buddy><pad>{pad}</pad></PING>"),
    ] {
        let d = parse(doc.as_bytes()).expect("decodes").expect("JIM");
        assert_eq!(d.name.as_deref(), Some("al"));
        let limit = doc.len() - 1;
        assert_eq!(
            parse_limited(doc.as_bytes(), limit),
            Err(JimError::TooLarge {
                kind: Kind::Ping,
                len: doc.len(),
                max: limit
            })
        );
        assert!(parse_limited(doc.as_bytes(), doc.len()).is_ok_and(|d| d.is_some()));
    }
}

#[test]
fn invalid_utf8() {
    let mut v = b"<PING><Buddy><name>al".to_vec();
    v.extend_from_slice(&[0xff, 0xfe]);
    v.extend_from_slice(b"ice</name></Buddy></PING>");
    assert!(matches!(
        parse(&v),
        Err(JimError::InvalidUtf8 { valid_up_to: 21 })
    ));
    // Invalid UTF-8 inside a non-JIM document is not our business.
    let mut v = b"<Other><x>".to_vec();
    v.extend_from_slice(&[0xff]);
    v.extend_from_slice(b"</x></Other>");
    assert_eq!(parse(&v), Ok(None));
}

#[test]
fn malformed_jim_is_an_error() {
    for s in [
        "<PING><Buddy><name>alice</Buddy></PING>",
        "<PING><Buddy><name>alice</name></Buddy>",
        "<PING></PONG>",
        "<PING><correlator>1</correlator></PING><PING/>",
        "<PING/>trailing",
        "<PING a=\"1\" a=\"2\"/>",
        "<PING a=1/>",
        "<PING>&amp</PING>",
        "<PING>&#0;</PING>",
        "<PING><!-- -- --></PING>",
        "<PING><Buddy",
    ] {
        assert!(parse(s.as_bytes()).is_err(), "{s:?} should be malformed");
    }
}

#[test]
fn repeated_field_first_wins() {
    let d = ok("<PING><correlator>a</correlator><correlator>bbbb</correlator></PING>");
    assert_eq!(d.correlator.as_deref(), Some("a"));
    assert_eq!(
        d.correlator_bytes as usize,
        "<correlator>a</correlator>".len()
    );
}

#[test]
fn to_xml_matches_spec_layout() {
    let ping = Document {
        kind: Kind::Ping,
        name: Some("alice".into()),
        peer_id: Some(ALICE.into()),
        correlator: Some("4611686018427387905".into()),
        ..Default::default()
    };
    assert_eq!(ping.to_xml(), SPEC_PING);
    let pong = Document {
        kind: Kind::Pong,
        name: Some("bob".into()),
        peer_id: Some(BOB.into()),
        status: Some(Status::Busy),
        correlator: Some("4611686018427387905".into()),
        ..Default::default()
    };
    assert_eq!(pong.to_xml(), SPEC_PONG);
}

#[test]
fn to_xml_parse_round_trip() {
    let docs = [
        Document {
            kind: Kind::Ping,
            name: Some("a<&>\"'z".into()),
            peer_id: Some(ALICE.into()),
            correlator: Some("corr-0042".into()),
            ..Default::default()
        },
        Document {
            kind: Kind::Pong,
            name: Some("bob".into()),
            peer_id: Some(BOB.into()),
            status: Some(Status::Offline),
            ..Default::default()
        },
        Document {
            kind: Kind::Ping,
            name: Some("PingClient".into()),
            from: Some("PingClient".into()),
            correlator: Some("corr-0001".into()),
            ..Default::default()
        },
        Document {
            kind: Kind::Message,
            name: Some("alice".into()),
            from: Some("alice".into()),
            to: Some("bob".into()),
            body: Some("see you at noon".into()),
            ..Default::default()
        },
    ];
    for d in docs {
        let xml = d.to_xml();
        let mut back = parse(xml.as_bytes()).unwrap().unwrap();
        if let Some(c) = &d.correlator {
            let expect = format!("<correlator>{c}</correlator>").len();
            assert_eq!(back.correlator_bytes as usize, expect);
            // The bytes really are a substring of the document.
            assert!(xml.contains(&format!("<correlator>{c}</correlator>")));
        }
        assert_eq!(
            back.document_bytes as usize,
            xml.len(),
            "the whole document"
        );
        back.correlator_bytes = 0;
        back.document_bytes = 0;
        assert_eq!(back, d, "{xml}");
    }
}

#[test]
fn never_panics_on_prefixes_of_valid_documents() {
    let bytes = SPEC_PONG.as_bytes();
    for i in 0..bytes.len() {
        let _ = parse(&bytes[..i]);
    }
}

/// The plain path takes what peers send (the spec's examples, the real JXSE variant,
/// our own encoder's output) and gives exactly the XML decoder's document.
#[test]
fn plain_path_takes_real_documents_and_agrees() {
    let real = r#"<?xml version="1.0" encoding="UTF-8"?><PING><correlator>corr-0001</correlator><from>PingClient</from><seq>1</seq><ts>1795528304808</ts></PING>"#;
    let message = Document {
        kind: Kind::Message,
        name: Some("alice".into()),
        from: Some("alice".into()),
        to: Some("bob".into()),
        body: Some("hello\n  bob".into()),
        ..Default::default()
    };
    let docs = [
        SPEC_PING.to_string(),
        SPEC_PONG.to_string(),
        real.to_string(),
        ok(SPEC_PONG).to_xml(),
        message.to_xml(),
    ];
    for d in &docs {
        let plain = decode_plain(d.as_bytes()).unwrap_or_else(|| panic!("plain path refused {d}"));
        assert_eq!(
            Some(plain),
            parse_full(d.as_bytes()).expect("well formed"),
            "{d}"
        );
    }
}

/// Each plain declaration and every prefix of it: the length `starts_with` on the
/// list gives (JXSE's, compared as one array, too).
#[test]
fn plain_declarations_are_found_whole() {
    let mut taken = 0;
    for decl in PLAIN_DECLS {
        for cut in 0..=decl.len() {
            let mut bytes = decl[..cut].to_vec();
            bytes.extend_from_slice(b"<PING/>");
            let want = PLAIN_DECLS
                .iter()
                .find(|d| bytes.starts_with(d))
                .map(|d| d.len());
            assert_eq!(
                plain_decl(&bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
            taken += usize::from(want.is_some());
        }
    }
    assert_eq!(taken, PLAIN_DECLS.len());
    assert_eq!(plain_decl(JXSE_DECL), Some(38));
}

/// Everything outside the plain subset goes to the XML decoder, which decides.
#[test]
fn plain_path_refuses_what_it_does_not_model() {
    for d in [
        "<PING a='1'><correlator>1</correlator></PING>",
        "<jim:PING><correlator>1</correlator></jim:PING>",
        "<PING><correlator>a&amp;b</correlator></PING>",
        "<PING><!-- c --><correlator>1</correlator></PING>",
        "<PING><correlator><![CDATA[1]]></correlator></PING>",
        "<PING><correlator/></PING>",
        "<?xml version=\"1.1\"?><PING></PING>",
        "<?xml version=\"1.0\"?>x<PING></PING>",
        "<PING></PING>x",
        "<PING></PING><PING></PING>",
        "<PING><a><b><c>deep</c></b></a></PING>",
        "<PING><correlator>1<b/></correlator></PING>",
        "<PING><correlator>1</CORRELATOR></PING>",
        "<PING><correlator>1</correlatorX></PING>",
        "<PING><correlator>1</correlato></PING>",
        "<PING><correlator>1</correlator ></PING>",
        "<PING><correlator>1</correlator",
        "</PING>",
        "<PING>\r\n</PING>",
        "<PING>a>b</PING>",
        "<PING><correlator>1>2</correlator></PING>",
        "<PING><Buddy><name>a</name>></Buddy></PING>",
        "<?xml version=\"1.0\"?>\n>\n<PING></PING>",
        "<?xml version=\"1.0\"?>><PING></PING>",
        "<PING></PING>\n>",
        "<PING></PING>\r",
        "<PING>&</PING>",
        "<PING>caf\u{e9}</PING>",
        "<PING><corr\u{e9}>1</corr\u{e9}></PING>",
        "<PING><correlator>1</correlator\u{e9}></PING>",
        "<PING></PING>\u{a0}",
        "\u{a0}<PING></PING>",
        "<?xml version=\"1.0\"?>\u{a0}<PING></PING>",
        "<PING>\u{2028}<correlator>1</correlator></PING>",
        "<ping></ping>",
        "<PING>",
    ] {
        assert_eq!(decode_plain(d.as_bytes()), None, "{d}");
    }
    // Not UTF-8 at all, in text, in a name, around the root.
    for d in [
        &b"<PING>\xff</PING>"[..],
        b"<PING><correlator>\xe9</correlator></PING>",
        b"<PING\xff></PING\xff>",
        b"<PING></PING>\x80",
        b"\x80<PING></PING>",
    ] {
        assert_eq!(decode_plain(d), None, "{d:?}");
    }
}

/// A document, then the correlator, name and peer ID decoded from it.
type Expected = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// A field is its exact name at its place: near-miss names, a field's name at another
/// depth or outside `Buddy`, are not fields (the plain path recognises field tags
/// without scanning their names; the XML decoder is the reference).
#[test]
fn plain_path_fields_by_exact_name_and_place() {
    let cases: [Expected; 8] = [
        // (document, correlator, name, peer ID)
        ("<PING><correlatorX>1</correlatorX><from>a</from></PING>", None, Some("a"), None),
        ("<PING><correlato>1</correlato><fromage>b</fromage></PING>", None, None, None),
        ("<PING><Buddy><correlator>1</correlator></Buddy></PING>", None, None, None),
        ("<PING><name>n</name><from>f</from></PING>", None, Some("f"), None),
        ("<PING><Other><name>n</name><peerID>p</peerID></Other></PING>", None, None, None),
        ("<PING><Buddy><names>n</names><peerIDs>p</peerIDs></Buddy></PING>", None, None, None),
        (
            "<PING><Buddy><name> n </name><peerID>p</peerID></Buddy><correlator>\x0b c\x0c</correlator></PING>",
            Some("c"),
            Some("n"),
            Some("p"),
        ),
        ("<PONG><BuddyStatus><status>\tAway </status></BuddyStatus></PONG>", None, None, None),
    ];
    for (d, correlator, name, peer_id) in cases {
        let plain = decode_plain(d.as_bytes()).unwrap_or_else(|| panic!("plain path refused {d}"));
        assert_eq!(
            Some(&plain),
            parse_full(d.as_bytes()).expect(d).as_ref(),
            "{d}"
        );
        assert_eq!(plain.correlator.as_deref(), correlator, "{d}");
        assert_eq!(plain.name.as_deref(), name, "{d}");
        assert_eq!(plain.peer_id.as_deref(), peer_id, "{d}");
    }
    let away = decode_plain(cases[7].0.as_bytes()).expect("taken");
    assert_eq!(away.status, Some(Status::Away));
}

/// The JXSE layout's documents, then each with a byte changed to one that matters to
/// the tags (`<`, `>`, `/`, `&`, CR, space, a letter, not ASCII), a byte removed or
/// doubled, or cut: wherever [`jxse`] answers, [`tags`] finds the same (for both
/// sets of texts); and it answers for the layout, with texts empty, padded or absent.
/// Fails when the correlator's element size, the name's fallback to `from` or a
/// refused tag is wrong.
#[test]
fn jxse_layout_is_what_tags_find() {
    let ping = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PING><correlator>s00000000</correlator><from>peer000000</from><seq>1</seq><ts>1795528304808</ts></PING>";
    let pong = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PONG><correlator>s00000000</correlator><from>peer000001</from><ts>1795528304833</ts></PONG>";
    let taken = [
        ping.to_string(),
        pong.to_string(),
        format!("{ping}\n \t"),
        ping.replace(">s00000000<", "> s0 \n<")
            .replace(">peer000000<", ">\tp<"),
        ping.replace(">s00000000<", "><").replace(">1<", "><"),
        pong.replace(">peer000001<", "> <")
            .replace(">1795528304833<", "><"),
        pong.replace("s00000000", &"c".repeat(40)),
    ];
    let agree = |bytes: &[u8]| -> bool {
        let Ok(all) = crate::jxta::wire_str(bytes) else {
            return false;
        };
        let mut answered = false;
        for texts in [Texts::All, Texts::Matched] {
            if let Some(fast) = jxse(bytes, texts) {
                assert_eq!(
                    Some(&fast),
                    tags(bytes, all, texts).as_ref(),
                    "{:?}",
                    String::from_utf8_lossy(bytes)
                );
                answered = true;
            }
        }
        answered
    };
    let mut agreed = 0;
    for d in &taken {
        assert!(agree(d.as_bytes()), "not taken: {d}");
        let found = jxse(d.as_bytes(), Texts::All).expect("taken");
        let full = parse_full(d.as_bytes()).expect("well formed").expect("JIM");
        assert_eq!(
            found.into_document(0),
            Document {
                document_bytes: 0,
                ..full
            },
            "{d}"
        );
        let bytes = d.as_bytes();
        for at in 0..bytes.len() {
            for b in [b'<', b'>', b'/', b'&', b'\r', b' ', b'x', 0xe9] {
                let mut m = bytes.to_vec();
                m[at] = b;
                agreed += usize::from(agree(&m));
            }
            let mut m = bytes.to_vec();
            m.remove(at);
            agreed += usize::from(agree(&m));
            let mut m = bytes.to_vec();
            m.insert(at, bytes[at]);
            agreed += usize::from(agree(&m));
            agreed += usize::from(agree(&bytes[..at]));
        }
    }
    // Changed texts are still the layout: the check above ran on them.
    assert!(agreed > 1000, "{agreed}");
}

proptest::proptest! {
    /// The plain path trims a field's bytes as `str::trim` trims its text (the path
    /// only takes ASCII text).
    #[test]
    fn spans_trim_as_str_trim(text in "[ \t\n\x0b\x0c\ra-z]{0,12}") {
        let (a, b) = trim_span(text.as_bytes(), (0, text.len()));
        proptest::prop_assert_eq!(&text[a..b], text.trim());
    }

    /// End tags are compared with their start tags word by word: as `==` on every
    /// length, the same or not.
    #[test]
    fn names_compare_as_slices(
        a in proptest::collection::vec(b'a'..=b'c', 0..20),
        b in proptest::collection::vec(b'a'..=b'c', 0..20),
        at in 0usize..20,
    ) {
        proptest::prop_assert_eq!(same_name(&a, &b), a == b);
        proptest::prop_assert!(same_name(&a, &a.clone()));
        // The same length, one byte different: wherever it is, the names differ.
        if !a.is_empty() {
            let mut c = a.clone();
            c[at % a.len()] = b'x';
            proptest::prop_assert!(!same_name(&a, &c));
        }
    }

    /// The text scan by blocks stops where the byte loop stops, from any start: on a
    /// run of text (none, within one block, across two or three) then bytes with
    /// every stop among them and the bytes either side of each.
    #[test]
    fn texts_end_where_the_byte_loop_ends(
        text in "[a-z0-9 \t\n=?%'/]{0,40}",
        rest in proptest::collection::vec(
            proptest::sample::select(vec![
                b'a', b' ', b'<', b'>', b'&', b'\r', b';', b'=', b'?', b'%', b'\'', 0x0C,
                0x0E, 0x00, 0x7F, 0x80, 0xC3, 0xFF,
            ]),
            0..24,
        ),
        start in 0usize..70,
    ) {
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&rest);
        let mut want = start;
        while want < bytes.len() && !TEXT_STOPS[usize::from(bytes[want])] {
            want += 1;
        }
        proptest::prop_assert_eq!(text_end(&bytes, start), want);
    }

    /// Arrays are compared word by word (the last word overlapping): as `==`, and one
    /// byte changed anywhere, the first and last included, makes them differ.
    #[test]
    fn arrays_compare_as_arrays(
        a in proptest::array::uniform32(b'a'..=b'b'),
        b in proptest::array::uniform32(b'a'..=b'b'),
        at in 0usize..38,
    ) {
        let mut a38 = *JXSE_DECL;
        let mut b38 = *JXSE_DECL;
        a38[..32].copy_from_slice(&a);
        b38[6..].copy_from_slice(&b);
        proptest::prop_assert_eq!(same_array(&a38, &b38), a38 == b38);
        proptest::prop_assert!(same_array(&a38, &a38.clone()));
        let mut c = a38;
        c[at] ^= 0x20;
        proptest::prop_assert!(!same_array(&a38, &c));
        let (a9, b9) = (word::<9>(&a, 0), word::<9>(&b, 1));
        proptest::prop_assert_eq!(same_array(&a9, &b9), a9 == b9);
        let mut c9 = a9;
        c9[at % 9] ^= 0x20;
        proptest::prop_assert!(!same_array(&a9, &c9));
    }
}

proptest::proptest! {
    /// Random documents built from JIM's vocabulary, odd whitespace, unknown elements
    /// and bytes that break the subset: whenever the plain path takes one, the XML
    /// decoder gives the same document.
    #[test]
    fn plain_path_agrees_with_the_xml_decoder(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("<correlator>".to_string()),
                proptest::strategy::Just("</correlator>".to_string()),
                proptest::strategy::Just("<Buddy>".to_string()),
                proptest::strategy::Just("</Buddy>".to_string()),
                proptest::strategy::Just("<BuddyStatus>".to_string()),
                proptest::strategy::Just("</BuddyStatus>".to_string()),
                proptest::strategy::Just("<name>".to_string()),
                proptest::strategy::Just("</name>".to_string()),
                proptest::strategy::Just("<status>".to_string()),
                proptest::strategy::Just("</status>".to_string()),
                proptest::strategy::Just("<from>".to_string()),
                proptest::strategy::Just("</from>".to_string()),
                proptest::strategy::Just("<body>".to_string()),
                proptest::strategy::Just("</body>".to_string()),
                proptest::strategy::Just("<x>".to_string()),
                proptest::strategy::Just("</x>".to_string()),
                proptest::strategy::Just("<peerID>".to_string()),
                proptest::strategy::Just("</peerID>".to_string()),
                proptest::strategy::Just("<to>".to_string()),
                proptest::strategy::Just("</to>".to_string()),
                proptest::strategy::Just("<correlatorX>".to_string()),
                proptest::strategy::Just("</correlatorX>".to_string()),
                proptest::strategy::Just("<fro>".to_string()),
                proptest::strategy::Just("</fro>".to_string()),
                "[ a-zA-Z0-9\\n\\r\\t\\x0b\\x0c<>&/\u{e9}\u{a0}]{0,6}",
            ],
            0..14,
        ),
        root in proptest::prop_oneof![
            proptest::strategy::Just("PING"),
            proptest::strategy::Just("PONG"),
            proptest::strategy::Just("MESSAGE"),
        ],
        decl in proptest::bool::ANY,
    ) {
        let mut d = String::new();
        if decl {
            d.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        }
        d.push_str(&format!("<{root}>"));
        for p in &parts {
            d.push_str(p);
        }
        d.push_str(&format!("</{root}>"));
        agree(d.as_bytes())?;
    }

    /// Well-formed documents of JIM's shape (a root, children, their children, text
    /// and whitespace between and in them, field names among others), then mutated:
    /// a byte replaced by one that matters to XML, inserted or removed, or the
    /// document cut. The plain path, the XML decoder and the matcher's documents must
    /// agree on every one.
    #[test]
    fn plain_path_agrees_on_mutated_documents(
        root in proptest::sample::select(vec!["PING", "PONG", "MESSAGE", "PINGX"]),
        decl in proptest::sample::select(vec![
            "",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version=\"1.0\"?>\n",
            "<?xml version='1.0' encoding='UTF-8'?> ",
        ]),
        children in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "correlator", "from", "to", "body", "Buddy", "BuddyStatus", "seq", "ts",
                    "name", "x", "seqs", "t", "Budd", "BuddyStatusX",
                ]),
                "[ \ta-z0-9\n]{0,6}",
                proptest::collection::vec(
                    (
                        proptest::sample::select(vec![
                            "name", "peerID", "status", "correlator", "nam", "y",
                        ]),
                        "[ \ta-zA-Z0-9\n]{0,8}",
                    ),
                    0..4,
                ),
            ),
            0..6,
        ),
        mutation in proptest::option::of((
            0usize..400,
            proptest::sample::select(vec![
                b'<', b'>', b'/', b'&', b'\r', b' ', b'=', b'"', b'!', b'?', b':', b'a', 0xC3, 0xFF,
            ]),
            0u8..4,
        )),
    ) {
        let mut d = format!("{decl}<{root}>");
        for (name, text, leaves) in &children {
            d.push_str(&format!("<{name}>{text}"));
            for (leaf, leaf_text) in leaves {
                d.push_str(&format!("<{leaf}>{leaf_text}</{leaf}>{text}"));
            }
            d.push_str(&format!("</{name}>\n "));
        }
        d.push_str(&format!("</{root}>"));
        let mut bytes = d.into_bytes();
        if let Some((at, b, how)) = mutation {
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = b,
                1 => bytes.insert(at, b),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        agree(&bytes)?;
    }
}

/// The plain path against the XML decoder where it takes the document, and the
/// matcher's documents against `parse`'s, on one document.
fn agree(d: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
    let text = String::from_utf8_lossy(d);
    if let Some(plain) = decode_plain(d) {
        proptest::prop_assert_eq!(Some(plain), parse_full(d).ok().flatten(), "{}", text);
    }
    let for_matcher = parse_for_matcher(d, DEFAULT_MAX_DOCUMENT_BYTES);
    proptest::prop_assert_eq!(&for_matcher, &parse(d).map(|d| d.map(matched)), "{}", text);
    // Into a document that holds every field (strings longer and shorter than the new
    // ones): the same document, or that one untouched when there is none.
    for stale in [stale(1), stale(40)] {
        let mut reused = stale.clone();
        let got = parse_for_matcher_into(d, DEFAULT_MAX_DOCUMENT_BYTES, &mut reused);
        if got != Ok(true) {
            proptest::prop_assert_eq!(&reused, &stale, "{}", text);
        }
        let got = got.map(|jim| jim.then(|| reused.clone()));
        proptest::prop_assert_eq!(&got, &for_matcher, "{}", text);
    }
    Ok(())
}

/// A document with every field set, each text `len` bytes: what the message stage's
/// document may hold when the next one is decoded into it.
fn stale(len: usize) -> Document {
    let text = |c: &str| Some(c.repeat(len));
    Document {
        kind: Kind::Message,
        name: text("n"),
        peer_id: text("p"),
        status: Some(Status::Away),
        status_text: text("s"),
        correlator: text("c"),
        correlator_bytes: 7,
        document_bytes: 9,
        from: text("f"),
        to: text("t"),
        body: text("b"),
    }
}

/// Documents decoded one after another into one `Document` are each what
/// [`parse_for_matcher`] gives, whatever the one before left (a status text, no
/// correlator, a longer name); not JIM and errors leave it as it was.
#[test]
fn documents_decoded_into_one_are_each_decoded_whole() {
    let off_plain = SPEC_PONG.replace("bob", "b&amp;b");
    let docs = [
        SPEC_PING,
        "<PONG><BuddyStatus><status>dnd</status><name>a-much-longer-name</name></BuddyStatus></PONG>",
        SPEC_PONG,
        "<PING><from>x</from></PING>",
        "not xml",
        "<PING><from>a</PING>",
        &off_plain,
        SPEC_PING,
        "<PING/>",
    ];
    let mut doc = Document::default();
    let mut last = doc.clone();
    for d in docs {
        let want = parse_for_matcher(d.as_bytes(), DEFAULT_MAX_DOCUMENT_BYTES);
        let got = parse_for_matcher_into(d.as_bytes(), DEFAULT_MAX_DOCUMENT_BYTES, &mut doc);
        match want {
            Ok(Some(w)) => {
                assert_eq!(got, Ok(true), "{d}");
                assert_eq!(doc, w, "{d}");
            }
            Ok(None) => assert_eq!((got, &doc), (Ok(false), &last), "{d}"),
            Err(e) => assert_eq!((got, &doc), (Err(e), &last), "{d}"),
        }
        last = doc.clone();
    }
}

/// What [`parse_for_matcher`] should give for `parse`'s document.
fn matched(mut d: Document) -> Document {
    (d.from, d.to, d.body) = (None, None, None);
    d
}

/// The matcher's documents are `parse`'s without `from`, `to` and `body`, on the plain
/// path and off it (an entity sends the document to the XML decoder), with the name
/// still taken from `from`; errors and "not JIM" alike.
#[test]
fn documents_for_the_matcher_leave_out_what_it_does_not_read() {
    let message = Document {
        kind: Kind::Message,
        from: Some("alice".into()),
        to: Some("bob".into()),
        body: Some("hi".into()),
        correlator: Some("c1".into()),
        ..Default::default()
    }
    .to_xml();
    let real =
        r#"<PING><correlator>corr-0001</correlator><from>PingClient</from><to>x</to></PING>"#;
    let off_plain = real.replace("PingClient", "Ping&amp;Client");
    let mut checked = 0;
    for d in [
        SPEC_PING,
        SPEC_PONG,
        &message,
        real,
        &off_plain,
        "<PING><from>a</PING>",
        "not xml",
    ] {
        let want = parse(d.as_bytes()).map(|d| d.map(matched));
        let got = parse_for_matcher(d.as_bytes(), DEFAULT_MAX_DOCUMENT_BYTES);
        assert_eq!(got, want, "{d}");
        if let Ok(Some(doc)) = &got {
            assert!(doc.from.is_none() && doc.to.is_none() && doc.body.is_none());
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
    let named = parse_for_matcher(off_plain.as_bytes(), DEFAULT_MAX_DOCUMENT_BYTES);
    assert_eq!(
        named.ok().flatten().and_then(|d| d.name),
        Some("Ping&Client".to_string())
    );
    assert!(decode_plain(off_plain.as_bytes()).is_none());
}

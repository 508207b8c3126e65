//! The wire format, checked: frames round trip, data frames read in place or by serde
//! alike, and damaged or foreign bytes are refused without a panic.

use super::*;

#[test]
fn control_frames_round_trip() {
    let bytes = encode(&Frame::Credit { to: 7, taken: 3, grant: 2 });
    assert!(matches!(decode(&bytes), Ok(Frame::Credit { to: 7, taken: 3, grant: 2 })));
}

#[test]
fn other_versions_and_garbage_are_refused() {
    assert!(
        matches!(decode(&[0x92, VERSION + 1, 0xc0]), Err(FrameError::Version(v)) if v == VERSION + 1)
    );
    assert!(matches!(decode(&[0x92, 3, 0xc0]), Err(FrameError::Version(3))), "the last version");
    assert!(matches!(decode(&[]), Err(FrameError::Malformed(_))));
    assert!(matches!(decode(&[0x92, VERSION, 0xc1]), Err(FrameError::Malformed(_))));
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let _ = decode(&junk);
    }
}

/// A packed data frame of `msgs` for receiver 5, as the outbox builds it.
fn packed(msgs: &[&[u8]]) -> Vec<u8> {
    let mut f = data_header(5, true).to_vec();
    f.push(0xdd);
    f.extend((msgs.len() as u32).to_be_bytes());
    for m in msgs {
        f.push(0xc6);
        f.extend((m.len() as u32).to_be_bytes());
        f.extend(*m);
    }
    f
}

#[test]
fn data_frames_are_read_in_place_or_by_serde_alike() {
    let msgs: [&[u8]; 3] = [b"\x01", b"", b"\x92\x01\x02"];
    let f = packed(&msgs);
    let Ok(Frame::Data { to: 5, copies: true, msgs: got }) = decode(&f) else { panic!() };
    assert!(matches!(got, DataMsgs::Packed { count: 3, .. }));
    assert!(got.iter().eq(msgs.iter().copied()));
    // Serde's own encoding of the same frame (array and bins of other sizes) reads alike.
    let by_serde = encode(&Frame::Data { to: 5, copies: true, msgs: got });
    assert_ne!(by_serde[..], f[..]);
    let Ok(Frame::Data { to: 5, copies: true, msgs: again }) = decode(&by_serde) else { panic!() };
    assert!(matches!(again, DataMsgs::List(_)));
    assert!(again.iter().eq(msgs.iter().copied()));
}

#[test]
fn a_packed_data_frame_that_does_not_add_up_is_left_to_serde() {
    let good = packed(&[b"abc", b"de"]);
    let count_at = data_header(0, false).len() + 1;
    let mut more = good.clone();
    more[count_at + 3] = 3; // says 3 messages, holds 2
    let mut long = good.clone();
    long[count_at + 8] = 200; // the first message's length runs past the end
    let cut = &good[..good.len() - 1];
    for (what, f) in [("more", &more[..]), ("long", &long[..]), ("cut", cut)] {
        assert!(matches!(decode(f), Err(FrameError::Malformed(_))), "{what}: {:?}", decode(f));
    }
    // Messages as bin8 (serde's own choice for short ones) in an array32: serde's to read.
    let mut bin8 = data_header(5, false).to_vec();
    bin8.extend([0xdd, 0, 0, 0, 2, 0xc4, 1, b'x', 0xc4, 0]);
    let Ok(Frame::Data { msgs, .. }) = decode(&bin8) else { panic!("serde reads it") };
    assert!(matches!(msgs, DataMsgs::List(_)));
    assert!(msgs.iter().eq([&b"x"[..], &b""[..]]));
    // Every prefix and every single-byte change: an error or a frame, never a panic, and a
    // frame read in place holds exactly its messages.
    for len in 0..good.len() {
        let _ = decode(&good[..len]).map(|f| format!("{f:?}"));
    }
    for i in 0..good.len() {
        for b in [0x00, 0x01, 0xc6, 0xdd, 0xff] {
            let mut f = good.clone();
            f[i] = b;
            if let Ok(Frame::Data { msgs, .. }) = decode(&f) {
                assert_eq!(msgs.iter().count(), msgs.len(), "byte {i} set to {b:#x}");
            }
        }
    }
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    /// Control frames of every kind the message path uses, with arbitrary contents.
    fn control() -> impl Strategy<Value = Frame<'static>> {
        prop_oneof![
            (any::<u64>(), any::<u32>(), any::<u32>())
                .prop_map(|(to, taken, grant)| Frame::Credit { to, taken, grant }),
            any::<u64>().prop_map(|to| Frame::Want { to }),
            any::<u64>().prop_map(|to| Frame::Reclaim { to }),
            (any::<u64>(), any::<u32>(), any::<bool>()).prop_map(|(to, n, last)| Frame::Return {
                to,
                n,
                last
            }),
            Just(()).prop_map(|()| Frame::Bye {}),
            (".{0,40}", any::<u64>())
                .prop_map(|(channel, created)| Frame::Fence { channel, created }),
            any::<u64>().prop_map(|to| Frame::Released { to }),
            (any::<u64>(), any::<bool>()).prop_map(|(to, ask)| Frame::Shut { to, ask }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(id, token)| Frame::Answers { answers: vec![(id, token, None)] }),
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<Option<u64>>(), any::<Option<u64>>())
                .prop_map(|(id, token, hop, asker, holder)| Frame::Held {
                    id,
                    token,
                    hop,
                    asker,
                    holder
                }),
            (any::<u64>(), any::<u64>()).prop_map(|(stream, from)| Frame::Resume { stream, from }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(stream, count)| Frame::Received { stream, count }),
            ".{0,40}".prop_map(|reason| Frame::Refused { reason }),
        ]
    }

    proptest! {
        /// Any bytes at all: an error or a frame, never a panic; and a frame decoded from
        /// them is exactly what its own encoding decodes to (nothing half-read).
        #[test]
        fn arbitrary_bytes_never_panic_and_decode_faithfully(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            prefix in 0..3u8,
        ) {
            let mut buf = bytes;
            match prefix {
                1 => drop(buf.splice(0..0, [0x92, VERSION])),
                // A packed data frame's header (the fast path), then anything.
                2 => drop(buf.splice(0..0, data_header(3, false).into_iter().chain([0xdd]))),
                _ => {}
            }
            fuzz_decode(&buf);
        }

        /// Every control frame comes back as it was sent; cut short or with a byte changed it
        /// is refused or decodes to a frame whose own encoding says the same (no panic).
        #[test]
        fn control_frames_round_trip_and_damage_is_caught(
            frame in control(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let bytes = encode(&frame);
            prop_assert_eq!(format!("{frame:?}"), format!("{:?}", decode(&bytes).expect("decodes")));
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(decode(short).is_err(), "a frame cut short decoded");
            let mut damaged = bytes.to_vec();
            let at = flip.0.index(damaged.len());
            damaged[at] ^= flip.1 | 1;
            if let Ok(f) = decode(&damaged) {
                let again = encode(&f);
                prop_assert_eq!(format!("{f:?}"), format!("{:?}", decode(&again).expect("re-decodes")));
            }
        }
    }
}

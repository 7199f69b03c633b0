use super::*;

fn entries() -> Vec<Entry> {
    let config = Membership {
        voters: [NodeId(1), NodeId(2)].into(),
        outgoing_voters: [NodeId(3)].into(),
        learners: [NodeId(9)].into(),
    };
    vec![
        Entry {
            id: LogId::new(1, 1),
            payload: EntryPayload::Noop,
        },
        Entry {
            id: LogId::new(1, 2),
            payload: EntryPayload::Command(Bytes::from_static(b"set x 1")),
        },
        Entry {
            id: LogId::new(2, 3),
            payload: EntryPayload::Config(config.into()),
        },
    ]
}

#[test]
fn records_round_trip() {
    let mut buf = Vec::new();
    for e in entries() {
        encode(&e, 7, &mut buf).unwrap();
    }
    buf.extend_from_slice(&[0u8; 64]);
    let mut offset = 0;
    for e in entries() {
        let Decoded::Record { entry, len } = decode(&buf, offset, 7) else {
            panic!("bad record at {offset}");
        };
        assert_eq!(entry, e);
        assert_eq!(len, encoded_len(&e));
        offset += len;
    }
    assert_eq!(decode(&buf, offset, 7), Decoded::End);
    assert_eq!(decode(&buf, buf.len() - 3, 7), Decoded::End);
}

#[test]
fn another_segments_salt_fails_the_header_checksum() {
    let mut buf = Vec::new();
    encode(&entries()[1], 7, &mut buf).unwrap();
    assert_eq!(
        decode(&buf, 0, 8),
        Decoded::Invalid(CorruptionKind::HeaderChecksum)
    );
}

#[test]
fn every_single_bit_flip_is_detected() {
    let mut buf = Vec::new();
    encode(&entries()[2], 1, &mut buf).unwrap();
    for i in 0..buf.len() * 8 {
        let mut bad = buf.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(
            matches!(decode(&bad, 0, 1), Decoded::Invalid(_)),
            "flip of bit {i} went unnoticed"
        );
    }
}

#[test]
fn a_header_claiming_4_gib_is_rejected_without_allocating() {
    let mut buf = Vec::new();
    encode(&entries()[1], 1, &mut buf).unwrap();
    buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = header_crc(&buf[..HEADER_BYTES], 1);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode(&buf, 0, 1),
        Decoded::Invalid(CorruptionKind::LengthOutOfBounds {
            len: u64::from(u32::MAX)
        })
    );
}

#[test]
fn a_configuration_with_a_huge_count_is_malformed() {
    let mut payload = u32::MAX.to_le_bytes().to_vec();
    payload.extend_from_slice(&[1u8; 16]);
    assert_eq!(decode_membership(&payload), None);
}

#[test]
fn oversized_entries_are_refused() {
    let e = Entry {
        id: LogId::new(1, 1),
        payload: EntryPayload::Command(Bytes::from(vec![0u8; PAYLOAD_BYTES_MAX as usize + 1])),
    };
    assert!(matches!(
        encode(&e, 1, &mut Vec::new()),
        Err(StorageError::EntryTooLarge { .. })
    ));
}

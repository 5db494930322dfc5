//! The broker's stored records (what `RedbStore` reads back from disk: messages and session
//! records) from arbitrary bytes: decoding never panics, and whatever decodes re-encodes to
//! bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingkit_broker::{SessionRecord, StoredMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok(message) = StoredMessage::from_bytes(bytes) {
            let again = message.to_bytes().expect("a decoded message encodes");
            assert_eq!(StoredMessage::from_bytes(&again).as_ref(), Ok(&message));
        }
    } else if let Ok(record) = SessionRecord::from_bytes(bytes) {
        let again = record.to_bytes().expect("a decoded record encodes");
        assert_eq!(SessionRecord::from_bytes(&again), Ok(record));
    }
});

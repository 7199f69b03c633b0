//! The replicated key-value state machine and its command encoding.
//!
//! Writes go through the Raft log and the state machine answers with the
//! RESP reply itself. Reads (GET, MGET) are served from the map directly,
//! after a read barrier (`Node::read_barrier`): once it resolves, the map
//! holds every write that completed before the read, so reading it then is
//! linearizable. The map is shared between the apply task and the readers
//! behind a lock; GET and MGET entries still in old logs apply as before.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use oar::core::LogId;
use oar::runtime::{
    Committed, SnapshotError, SnapshotReader, SnapshotView, StateMachine, snapshot_file,
};

use crate::resp;

/// Operations of the key-value store, as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    Get = 1,
    Set = 2,
    Del = 3,
    Incr = 4,
    Mget = 5,
}

/// Encodes an operation and its arguments: op byte, then each argument as a
/// u32 length and its bytes.
pub(crate) fn encode(op: Op, args: &[Vec<u8>]) -> Bytes {
    let mut out = vec![op as u8];
    for arg in args {
        out.extend_from_slice(&(arg.len() as u32).to_be_bytes());
        out.extend_from_slice(arg);
    }
    Bytes::from(out)
}

fn decode(data: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let (&op, mut rest) = data.split_first()?;
    let mut args = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        args.push(rest.get(4..4 + len)?);
        rest = &rest[4 + len..];
    }
    Some((op, args))
}

/// The longest reply a multi-key read may build.
///
/// Why: a command of a few hundred kilobytes naming one large key many
/// times would otherwise make every node's apply loop build a reply of
/// gigabytes (65,535 times a 4 MiB value); 16 MiB still fits several values
/// of the largest size a command can carry.
const REPLY_BYTES_MAX: usize = 16 << 20;

/// What reads see: the in-memory map, or the disk store's index over its
/// files.
pub(crate) trait KvRead: Send + Sync {
    /// The value of `key`, if any.
    ///
    /// # Errors
    /// The store could not read it.
    fn get(&self, key: &[u8]) -> io::Result<Option<Cow<'_, [u8]>>>;

    /// The length of `key`'s value, if any, without reading it.
    fn value_len(&self, key: &[u8]) -> Option<usize>;
}

/// What commands change, on top of what they read.
pub(crate) trait KvMap: KvRead {
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]);

    /// Removes `key`; whether it was there.
    fn remove(&mut self, key: &[u8]) -> bool;
}

impl KvRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Cow<'_, [u8]>>> {
        Ok(BTreeMap::get(self, key).map(|v| Cow::Borrowed(v.as_slice())))
    }

    fn value_len(&self, key: &[u8]) -> Option<usize> {
        BTreeMap::get(self, key).map(Vec::len)
    }
}

impl KvMap for BTreeMap<Vec<u8>, Vec<u8>> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.insert(key.to_vec(), value.to_vec());
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        BTreeMap::remove(self, key).is_some()
    }
}

/// The state, shared by the apply task (writer) and the readers.
pub(crate) type SharedMap = Arc<RwLock<dyn KvRead>>;

/// The key-value state machine.
#[derive(Debug, Default)]
pub(crate) struct KvStore {
    map: Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

/// Answers GET (`Op::Get`, one key) or MGET from `map`, appending the reply.
///
/// # Errors
/// The store could not read a value.
pub(crate) fn read_reply(
    map: &(impl KvRead + ?Sized),
    op: Op,
    keys: &[impl AsRef<[u8]>],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    match (op, keys) {
        (Op::Get, [key]) => resp::bulk(out, map.get(key.as_ref())?.as_deref()),
        (Op::Mget, keys) => {
            let reply_bytes: usize = keys
                .iter()
                .map(|k| map.value_len(k.as_ref()).map_or(5, resp::bulk_encoded_len))
                .sum();
            if reply_bytes > REPLY_BYTES_MAX {
                resp::error(out, "ERR reply too large");
                return Ok(());
            }
            resp::array_header(out, keys.len());
            for key in keys {
                resp::bulk(out, map.get(key.as_ref())?.as_deref());
            }
        }
        _ => resp::error(out, "ERR not a read"),
    }
    Ok(())
}

/// Executes a logged command on `map`; returns its RESP reply.
///
/// # Errors
/// The store could not read a value (the caller stops: replicas must not
/// diverge on a local failure).
pub(crate) fn execute(map: &mut impl KvMap, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let Some((op, args)) = decode(data) else {
        resp::error(&mut out, "ERR corrupt command in log");
        return Ok(out);
    };
    match (op, args.as_slice()) {
        (1, [_]) => read_reply(map, Op::Get, &args, &mut out)?,
        (2, [key, value]) => {
            map.put(key, value);
            resp::simple(&mut out, "OK");
        }
        (3, keys) => {
            let removed = keys.iter().filter(|k| map.remove(k)).count();
            resp::integer(&mut out, removed as i64);
        }
        (4, [key]) => {
            let current = match map.get(key)? {
                None => Some(0),
                Some(v) => std::str::from_utf8(&v)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok()),
            };
            match current.and_then(|n| n.checked_add(1)) {
                Some(n) => {
                    map.put(key, n.to_string().as_bytes());
                    resp::integer(&mut out, n);
                }
                None => resp::error(&mut out, "ERR value is not an integer or out of range"),
            }
        }
        (5, _) => read_reply(map, Op::Mget, &args, &mut out)?,
        _ => resp::error(&mut out, "ERR malformed command in log"),
    }
    Ok(out)
}

impl KvStore {
    /// The map, for serving reads after a barrier.
    pub(crate) fn map(&self) -> SharedMap {
        Arc::clone(&self.map) as SharedMap
    }
}

impl StateMachine for KvStore {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut map = self.map.write().expect("map lock");
        commands
            .iter()
            .map(|c| Bytes::from(execute(&mut *map, &c.data).expect("a map never fails")))
            .collect()
    }

    /// One file, `data`: per key, a u32 length and the key, a u32 length
    /// and the value, in key order.
    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        // Encoded now (a point-in-time copy); written out while applies go on.
        let map = self.map.read().expect("map lock");
        let size: usize = map.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let mut data = Vec::with_capacity(size);
        for (k, v) in map.iter() {
            for part in [k, v] {
                data.extend_from_slice(&(part.len() as u32).to_le_bytes());
                data.extend_from_slice(part);
            }
        }
        Ok(snapshot_file(SNAPSHOT_FILE, data))
    }

    /// Streams the file (checked against its CRC32C at its end), so the
    /// map is built without the file ever held whole.
    fn on_snapshot_load(
        &mut self,
        _last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let mut file = std::io::BufReader::new(snapshot.open_file(SNAPSHOT_FILE)?);
        let mut map = BTreeMap::new();
        while !std::io::BufRead::fill_buf(&mut file)?.is_empty() {
            let key = take_part(&mut file)?;
            let value = take_part(&mut file)?;
            map.insert(key, value);
        }
        *self.map.write().expect("map lock") = map;
        Ok(())
    }
}

/// The snapshot's one file.
const SNAPSHOT_FILE: &str = "data";

/// Splits a u32-length-prefixed part off the front of `rest`.
/// Reads one length-prefixed part. A lying length allocates only the
/// bytes actually there (`take` + `read_to_end` grow as data arrives).
fn take_part(file: &mut impl std::io::Read) -> Result<Vec<u8>, SnapshotError> {
    use std::io::Read;
    let truncated = || SnapshotError::Invalid("truncated snapshot record".into());
    let mut len = [0u8; 4];
    match file.read_exact(&mut len) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(truncated()),
        other => other?,
    }
    let len = u64::from(u32::from_le_bytes(len));
    let mut part = Vec::new();
    file.take(len).read_to_end(&mut part)?;
    if (part.len() as u64) < len {
        return Err(truncated());
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oar::runtime::{MemSnapshots, SnapshotFiles, SnapshotStorage};

    fn run(store: &mut KvStore, op: Op, args: &[&str]) -> String {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let data = encode(op, &args);
        let reply = store.on_apply(&[Committed {
            id: LogId::new(1, 1),
            data,
        }]);
        String::from_utf8(reply[0].to_vec()).unwrap()
    }

    #[test]
    fn commands_behave_like_redis() {
        let mut s = KvStore::default();
        assert_eq!(run(&mut s, Op::Get, &["a"]), "$-1\r\n");
        assert_eq!(run(&mut s, Op::Set, &["a", "1"]), "+OK\r\n");
        assert_eq!(run(&mut s, Op::Incr, &["a"]), ":2\r\n");
        assert_eq!(run(&mut s, Op::Incr, &["n"]), ":1\r\n");
        assert_eq!(run(&mut s, Op::Set, &["b", "x"]), "+OK\r\n");
        assert!(run(&mut s, Op::Incr, &["b"]).starts_with("-ERR"));
        assert_eq!(
            run(&mut s, Op::Mget, &["a", "zz", "b"]),
            "*3\r\n$1\r\n2\r\n$-1\r\n$1\r\nx\r\n"
        );
        assert_eq!(run(&mut s, Op::Del, &["a", "b", "zz"]), ":2\r\n");
    }

    #[test]
    fn a_snapshot_restores_the_map_and_bad_ones_are_refused() {
        let mut s = KvStore::default();
        run(&mut s, Op::Set, &["a", "1"]);
        run(&mut s, Op::Set, &["", "empty key"]);
        let snapshots = MemSnapshots::new();
        let mut writer = snapshots.begin(false).unwrap();
        s.on_snapshot_save().unwrap().write_to(&mut writer).unwrap();
        let last = LogId::new(1, 2);
        snapshots.commit(writer, last, Default::default()).unwrap();
        let saved = snapshots.open().unwrap().unwrap();
        let mut t = KvStore::default();
        t.on_snapshot_load(last, &saved).unwrap();
        assert_eq!(*t.map.read().unwrap(), *s.map.read().unwrap());
        let data = saved.read_file(SNAPSHOT_FILE).unwrap();
        let cut = SnapshotFiles::from([(
            SNAPSHOT_FILE.to_owned(),
            Bytes::copy_from_slice(&data[..data.len() - 1]),
        )]);
        let last = LogId::new(1, 3);
        snapshots.save(last, Default::default(), &cut).unwrap();
        let cut = snapshots.open().unwrap().unwrap();
        assert!(t.on_snapshot_load(last, &cut).is_err());
        assert_eq!(
            *t.map.read().unwrap(),
            *s.map.read().unwrap(),
            "a refused snapshot changes nothing"
        );
    }
}

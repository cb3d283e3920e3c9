//! How records are encoded in Kafka: JSON and bincode out of the box, traits for others.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

/// A record as read from a Kafka partition, before deserialization.
#[derive(Debug, Clone, Copy)]
pub struct KafkaMessage<'a> {
    /// Topic it was read from.
    pub topic: &'a str,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: a tombstone).
    pub payload: Option<&'a [u8]>,
    /// Its timestamp in milliseconds since the Unix epoch, if the broker gave one.
    pub timestamp: Option<i64>,
}

/// Turns a Kafka record into a value. An `Err` is a bad record: the source's
/// [`BadRecordPolicy`](super::source::BadRecordPolicy) decides what happens to it.
pub trait KafkaDeserializer<T>: Send + Sync + 'static {
    /// Decodes one record; the error says why it is bad.
    fn deserialize(&self, message: &KafkaMessage<'_>) -> std::result::Result<T, String>;
}

/// Turns a value into a Kafka record's value bytes.
pub trait KafkaSerializer<T>: Send + Sync + 'static {
    /// Encodes one value; an error fails the sink (the value cannot be written).
    fn serialize(&self, value: &T) -> std::result::Result<Vec<u8>, String>;
}

/// JSON values (serde_json).
pub struct Json<T>(PhantomData<fn() -> T>);

/// Bincode values (bincode 2, standard configuration, through serde).
pub struct Bincode<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON format for `T`.
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Bincode<T> {
    /// The bincode format for `T`.
    pub fn new() -> Self {
        Bincode(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Default for Bincode<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Json")
    }
}

impl<T> std::fmt::Debug for Bincode<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bincode")
    }
}

fn payload<'a>(m: &KafkaMessage<'a>) -> std::result::Result<&'a [u8], String> {
    m.payload
        .ok_or_else(|| "the record has no value (a tombstone)".to_string())
}

impl<T: DeserializeOwned + 'static> KafkaDeserializer<T> for Json<T> {
    fn deserialize(&self, m: &KafkaMessage<'_>) -> std::result::Result<T, String> {
        serde_json::from_slice(payload(m)?).map_err(|e| format!("not valid JSON for this type: {e}"))
    }
}

impl<T: Serialize + 'static> KafkaSerializer<T> for Json<T> {
    fn serialize(&self, value: &T) -> std::result::Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| format!("encoding as JSON: {e}"))
    }
}

impl<T: DeserializeOwned + 'static> KafkaDeserializer<T> for Bincode<T> {
    fn deserialize(&self, m: &KafkaMessage<'_>) -> std::result::Result<T, String> {
        let bytes = payload(m)?;
        let (v, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| format!("not valid bincode for this type: {e}"))?;
        if used != bytes.len() {
            return Err(format!(
                "bincode value followed by {} unexpected bytes",
                bytes.len() - used
            ));
        }
        Ok(v)
    }
}

impl<T: Serialize + 'static> KafkaSerializer<T> for Bincode<T> {
    fn serialize(&self, value: &T) -> std::result::Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| format!("encoding as bincode: {e}"))
    }
}

/// Reads a compacted topic's tombstones as values: a record without a value (a deletion of
/// its key) becomes `None`, any other record `Some` of what `D` makes of it (`D`'s errors stay
/// bad records). Without it, the built-in formats take a tombstone for a bad record.
///
/// ```
/// use weir_connectors::kafka::{Json, KafkaDeserializer, KafkaMessage, Nullable};
/// let format = Nullable(Json::<u64>::new());
/// let tombstone = KafkaMessage { topic: "accounts", partition: 0, offset: 9, key: Some(b"a-17"), payload: None, timestamp: None };
/// assert_eq!(format.deserialize(&tombstone), Ok(None));
/// ```
///
/// To keep the key as well (a changelog of key and latest value), deserialize with a function
/// of the message: `|m: &KafkaMessage<'_>| Ok((m.key.map(<[u8]>::to_vec), m.payload.map(<[u8]>::to_vec)))`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<D>(pub D);

impl<T, D: KafkaDeserializer<T>> KafkaDeserializer<Option<T>> for Nullable<D> {
    fn deserialize(&self, m: &KafkaMessage<'_>) -> std::result::Result<Option<T>, String> {
        match m.payload {
            None => Ok(None),
            Some(_) => self.0.deserialize(m).map(Some),
        }
    }
}

/// Any function of the raw message is a deserializer.
impl<T, F> KafkaDeserializer<T> for F
where
    F: Fn(&KafkaMessage<'_>) -> std::result::Result<T, String> + Send + Sync + 'static,
{
    fn deserialize(&self, m: &KafkaMessage<'_>) -> std::result::Result<T, String> {
        self(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &[u8]) -> KafkaMessage<'_> {
        KafkaMessage {
            topic: "t",
            partition: 0,
            offset: 7,
            key: None,
            payload: Some(payload),
            timestamp: None,
        }
    }

    #[test]
    fn json_and_bincode_round_trip_and_reject_garbage() {
        let v = (42u64, "pay".to_string());
        let j = Json::<(u64, String)>::new();
        assert_eq!(j.deserialize(&msg(&j.serialize(&v).unwrap())).unwrap(), v);
        assert!(j.deserialize(&msg(b"{not json")).unwrap_err().contains("JSON"));
        let b = Bincode::<(u64, String)>::new();
        let bytes = b.serialize(&v).unwrap();
        assert_eq!(b.deserialize(&msg(&bytes)).unwrap(), v);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(b.deserialize(&msg(&longer)).unwrap_err().contains("unexpected bytes"));
        assert!(b.deserialize(&msg(&[0xff])).is_err());
        let tomb = KafkaMessage {
            payload: None,
            ..msg(b"")
        };
        assert!(j.deserialize(&tomb).unwrap_err().contains("tombstone"));
    }

    #[test]
    fn nullable_reads_tombstones_as_none_and_keeps_bad_records_bad() {
        let n = Nullable(Json::<u64>::new());
        let tomb = KafkaMessage {
            payload: None,
            ..msg(b"")
        };
        assert_eq!(n.deserialize(&tomb), Ok(None));
        assert_eq!(n.deserialize(&msg(b"17")), Ok(Some(17)));
        assert!(n.deserialize(&msg(b"seventeen")).unwrap_err().contains("JSON"));
        // An empty value is not a tombstone: it is a value that does not parse.
        assert!(n.deserialize(&msg(b"")).is_err());
    }
}

//! An order-preserving encoding of map keys: for every [`SortKey`] type, comparing two encoded
//! keys byte by byte gives the same order as comparing the values (`Ord`). This is what lets
//! [`SortedMapState`](super::SortedMapState) iterate in key order and scan ranges directly in
//! the store (bincode, which `MapState` uses, writes varints, whose byte order is not numeric
//! order: 250 encodes as `[250]`, 251 as `[251, 251, 0]`, -1 as `[1]`).
//!
//! # Format (stable: it is part of checkpoints)
//! * unsigned integers: big-endian, fixed width;
//! * signed integers: big-endian, fixed width, sign bit flipped (so negatives sort first);
//! * `bool`: one byte, 0 or 1; `()`: nothing;
//! * `String`: its bytes with every `0x00` written as `0x00 0xFF`, then `0x00 0x00`: no encoding
//!   is a prefix of another, so strings also sort correctly inside tuples;
//! * tuples: their fields' encodings one after another (lexicographic order).

use crate::{Error, Result};

/// A map key with an order-preserving byte encoding (see the [module docs](self)).
///
/// Implemented for the integer types, `bool`, `String`, `()` and tuples of up to four of
/// them, which covers timestamps, sequence numbers, names and compound keys.
pub trait SortKey: Sized {
    /// Appends the key's encoding to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
    /// Reads one key from the front of `input` and advances it past the key.
    ///
    /// # Errors
    /// A description of why the bytes are not such a key.
    fn read_key(input: &mut &[u8]) -> std::result::Result<Self, String>;
}

/// The encoding of `k`.
pub fn encode_sort_key<K: SortKey>(k: &K) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    k.write_key(&mut out);
    out
}

/// Decodes a whole encoded key of state `name`; bytes that are not exactly one `K` are a
/// configuration error naming the state (its key type changed since the restored checkpoint).
pub fn decode_sort_key<K: SortKey>(name: &str, mut bytes: &[u8]) -> Result<K> {
    let changed = |why: String| {
        Error::config(format!(
            "sorted map state \"{name}\" holds a key that does not decode as {} ({why}): was the state's key \
             type changed since the restored checkpoint? Keep the type, or give the new type a new state name",
            std::any::type_name::<K>()
        ))
    };
    let k = K::read_key(&mut bytes).map_err(changed)?;
    if !bytes.is_empty() {
        return Err(changed(format!("{} bytes left over", bytes.len())));
    }
    Ok(k)
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
    if input.len() < n {
        return Err(format!("{what} needs {n} bytes, {} left", input.len()));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl SortKey for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn read_key(input: &mut &[u8]) -> std::result::Result<Self, String> {
                let b = take(input, std::mem::size_of::<$t>(), stringify!($t))?;
                Ok(<$t>::from_be_bytes(b.try_into().expect("sized")))
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl SortKey for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn read_key(input: &mut &[u8]) -> std::result::Result<Self, String> {
                let b = take(input, std::mem::size_of::<$t>(), stringify!($t))?;
                let u = <$u>::from_be_bytes(b.try_into().expect("sized"));
                Ok((u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, u128);
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl SortKey for bool {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn read_key(input: &mut &[u8]) -> std::result::Result<Self, String> {
        match take(input, 1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("bool byte {b}")),
        }
    }
}

impl SortKey for () {
    fn write_key(&self, _out: &mut Vec<u8>) {}
    fn read_key(_input: &mut &[u8]) -> std::result::Result<Self, String> {
        Ok(())
    }
}

impl SortKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        for &b in self.as_bytes() {
            out.push(b);
            if b == 0 {
                out.push(0xFF);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
    fn read_key(input: &mut &[u8]) -> std::result::Result<Self, String> {
        let mut bytes = Vec::new();
        let mut i = 0;
        loop {
            match input.get(i) {
                None => return Err("string without its terminator".into()),
                Some(0) => match input.get(i + 1) {
                    Some(0) => break,
                    Some(0xFF) => {
                        bytes.push(0);
                        i += 2;
                    }
                    _ => return Err("string with a malformed 0x00 escape".into()),
                },
                Some(&b) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        *input = &input[i + 2..];
        String::from_utf8(bytes).map_err(|e| format!("string that is not UTF-8: {e}"))
    }
}

macro_rules! tuple {
    ($($n:tt $t:ident),+) => {
        impl<$($t: SortKey),+> SortKey for ($($t,)+) {
            fn write_key(&self, out: &mut Vec<u8>) {
                $(self.$n.write_key(out);)+
            }
            fn read_key(input: &mut &[u8]) -> std::result::Result<Self, String> {
                Ok(($($t::read_key(input)?,)+))
            }
        }
    };
}

tuple!(0 A);
tuple!(0 A, 1 B);
tuple!(0 A, 1 B, 2 C);
tuple!(0 A, 1 B, 2 C, 3 D);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip<K: SortKey + PartialEq + std::fmt::Debug>(k: K) -> Vec<u8> {
        let e = encode_sort_key(&k);
        assert_eq!(decode_sort_key::<K>("t", &e).unwrap(), k);
        e
    }

    /// Byte order of the encodings equals `Ord` of the values, pairwise over `values`.
    fn order_preserved<K: SortKey + Ord + Clone + std::fmt::Debug>(values: &[K]) {
        for a in values {
            for b in values {
                let (ea, eb) = (roundtrip(a.clone()), roundtrip(b.clone()));
                assert_eq!(ea.cmp(&eb), a.cmp(b), "{a:?} vs {b:?}: {ea:?} vs {eb:?}");
            }
        }
    }

    #[test]
    fn i64_negatives_sort_before_positives() {
        order_preserved(&[i64::MIN, -300, -256, -255, -2, -1, 0, 1, 127, 128, 255, 256, i64::MAX]);
        order_preserved(&[i32::MIN, -1, 0, 1, i32::MAX]);
        order_preserved(&[i8::MIN, -1, 0, 1, i8::MAX]);
    }

    #[test]
    fn u64_sorts_across_varint_widths() {
        // 250/251 and 2^16, 2^32 are where bincode's varint changes width.
        order_preserved(&[
            0u64,
            1,
            250,
            251,
            252,
            255,
            256,
            65_535,
            65_536,
            1 << 32,
            (1 << 32) + 1,
            u64::MAX,
        ]);
        order_preserved(&[0u16, 250, 251, u16::MAX]);
    }

    #[test]
    fn strings_sort_bytewise_with_prefixes_and_zero_bytes_first() {
        let s = |v: &str| v.to_string();
        order_preserved(&[
            s(""),
            s("\0"),
            s("\0\0"),
            s("\0a"),
            s("a"),
            s("a\0"),
            s("a\0b"),
            s("ab"),
            s("b"),
            s("é"),
        ]);
    }

    #[test]
    fn tuples_sort_field_by_field_even_with_strings_first() {
        let s = |v: &str| v.to_string();
        order_preserved(&[(s("a"), 2i64), (s("a"), -1), (s("ab"), -5), (s(""), 9), (s("a\0"), 0)]);
        order_preserved(&[(1i64, 2u64, true), (1, 2, false), (-1, u64::MAX, true), (1, 1, true)]);
        order_preserved(&[(1u8, s("x"), 3i16, ()), (1, s("x"), -3, ()), (0, s("zz"), 0, ())]);
    }

    #[test]
    fn malformed_or_foreign_bytes_are_errors_naming_the_state() {
        let e = decode_sort_key::<i64>("buffer", &[1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("\"buffer\"") && e.contains("i64"), "{e}");
        let e = decode_sort_key::<u32>("buffer", &[0, 0, 0, 1, 9])
            .unwrap_err()
            .to_string();
        assert!(e.contains("left over"), "{e}");
        assert!(decode_sort_key::<String>("s", &[b'a', 0]).is_err());
        assert!(decode_sort_key::<String>("s", &[b'a', 0, 7]).is_err());
        assert!(decode_sort_key::<bool>("s", &[2]).is_err());
    }

    proptest! {
        #[test]
        fn generated_keys_keep_their_order(
            a in (any::<i64>(), any::<String>(), any::<u32>()),
            b in (any::<i64>(), any::<String>(), any::<u32>()),
        ) {
            let (ea, eb) = (roundtrip(a.clone()), roundtrip(b.clone()));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
        }
    }
}

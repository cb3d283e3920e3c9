//! The frame around Weir's own state files (the memory backend's snapshot, the segment list of
//! a RocksDB snapshot): magic (8 bytes), format version (u32), payload length (u64) and CRC32C
//! of the payload (u32), little-endian, then the payload. A file that is cut short, of another
//! kind or version, or damaged anywhere is refused when read, never decoded as far as it goes.

/// Header length: magic, version, payload length, payload CRC32C.
pub(crate) const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// What a framed file is: its magic and the format version this code writes and reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileKind {
    pub(crate) magic: &'static [u8; 8],
    pub(crate) version: u32,
}

/// Why framed bytes were refused; the `Display` reads after the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Shorter than the header.
    Short,
    /// Another kind of file.
    Magic,
    /// Another format version.
    Version { found: u32, expected: u32 },
    /// The payload's length differs from the header's.
    Length { found: u64, expected: u64 },
    /// The payload's checksum differs from the header's.
    Checksum,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Short => write!(f, "is shorter than its header"),
            FrameError::Magic => write!(f, "has a bad magic (another kind of file)"),
            FrameError::Version { found, expected } => {
                write!(f, "has format version {found}; this Weir reads version {expected}")
            }
            FrameError::Length { found, expected } => {
                write!(
                    f,
                    "has a payload of {found} bytes where its header says {expected} (truncated)"
                )
            }
            FrameError::Checksum => write!(f, "is corrupt (checksum mismatch)"),
        }
    }
}

/// `payload` framed as a file of `kind`.
pub(crate) fn frame(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(kind.magic);
    bytes.extend_from_slice(&kind.version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The payload of `bytes`, a file of `kind`, once its header and checksum check out.
pub(crate) fn unframe(kind: FileKind, bytes: &[u8]) -> Result<&[u8], FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Short);
    }
    if &bytes[..8] != kind.magic {
        return Err(FrameError::Magic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != kind.version {
        return Err(FrameError::Version {
            found: version,
            expected: kind.version,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(FrameError::Length {
            found: payload.len() as u64,
            expected: len,
        });
    }
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: FileKind = FileKind {
        magic: b"WEIRTST\0",
        version: 3,
    };

    #[test]
    fn a_frame_reads_back_and_every_damage_is_refused() {
        let good = frame(KIND, b"payload");
        assert_eq!(unframe(KIND, &good), Ok(&b"payload"[..]));
        assert_eq!(unframe(KIND, &good[..5]), Err(FrameError::Short));
        let mut magic = good.clone();
        magic[0] ^= 1;
        assert_eq!(unframe(KIND, &magic), Err(FrameError::Magic));
        let other = FileKind { version: 4, ..KIND };
        assert_eq!(
            unframe(other, &good),
            Err(FrameError::Version { found: 3, expected: 4 })
        );
        assert_eq!(
            unframe(KIND, &good[..good.len() - 1]),
            Err(FrameError::Length { found: 6, expected: 7 })
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        assert_eq!(unframe(KIND, &flipped), Err(FrameError::Checksum));
    }
}

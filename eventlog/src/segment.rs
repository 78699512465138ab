//! One segment file: the record frame, positional frame reads, and the sparse offset index.
//!
//! Frame: `len u32 LE | crc32 u32 LE | offset u64 LE | key_len u32 LE | key | value`, where `len`
//! counts the bytes after the crc and the crc covers exactly those bytes. Frames are
//! self-delimiting and self-checking, so a scan tells a complete record from a torn write with no
//! other metadata, and the offset inside each frame lets it spot a stale or misplaced one.

use crate::LogError;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const FRAME_HEADER: usize = 8; // len + crc
const BODY_FIXED: usize = 12; // offset + key_len
/// Bytes a frame takes beyond its key and value.
pub(crate) const FRAME_OVERHEAD: usize = FRAME_HEADER + BODY_FIXED;
/// Reads fetch at least this much, so small records cost one syscall per chunk, not per frame.
const READ_CHUNK: usize = 64 << 10;
/// The sparse index gets an entry at most every this many bytes of segment.
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 4 << 10;

/// Bytes a record takes on disk, or `None` if it does not fit one frame (`len` is a u32).
pub fn frame_size(key: &[u8], value: &[u8]) -> Option<usize> {
    let body = BODY_FIXED.checked_add(key.len())?.checked_add(value.len())?;
    u32::try_from(body).ok()?;
    Some(FRAME_HEADER + body)
}

/// Appends one frame to `out`. The caller has checked [`frame_size`]: a record too large for one
/// frame would be written with a wrong length.
pub fn encode_frame(out: &mut Vec<u8>, offset: u64, key: &[u8], value: &[u8]) {
    let start = out.len();
    let body_len = (BODY_FIXED + key.len() + value.len()) as u32;
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Where a frame's parts lie relative to its start; no borrow, so a reader can refill its buffer.
#[derive(Debug, PartialEq, Eq)]
struct FrameSpan {
    offset: u64,
    key_len: usize,
    size: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Frame(FrameSpan),
    /// The frame starting here needs this many bytes in total to be decoded.
    NeedMore(usize),
    Invalid(&'static str),
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn decode_frame(buf: &[u8]) -> Decoded {
    let Some(header) = buf.get(..FRAME_HEADER) else { return Decoded::NeedMore(FRAME_HEADER) };
    let body_len = le_u32(header) as usize;
    if body_len < BODY_FIXED {
        return Decoded::Invalid("frame shorter than its fixed fields");
    }
    let size = FRAME_HEADER + body_len;
    let Some(body) = buf.get(FRAME_HEADER..size) else { return Decoded::NeedMore(size) };
    if crc32fast::hash(body) != le_u32(&header[4..]) {
        return Decoded::Invalid("checksum mismatch");
    }
    let key_len = le_u32(&body[8..]) as usize;
    if key_len > body_len - BODY_FIXED {
        return Decoded::Invalid("key longer than its frame");
    }
    let mut offset = [0; 8];
    offset.copy_from_slice(&body[..8]);
    Decoded::Frame(FrameSpan { offset: u64::from_le_bytes(offset), key_len, size })
}

/// The frame at the start of `buf`, checked: its `(offset, key, value)`, or `None` if `buf` does
/// not start with a complete frame with a matching checksum. The frame takes
/// `frame_size(key, value)` bytes of `buf`; the next one starts there.
pub fn decode_frame_parts(buf: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let Decoded::Frame(span) = decode_frame(buf) else { return None };
    let (key, value) = buf[FRAME_HEADER + BODY_FIXED..span.size].split_at(span.key_len);
    Some((span.offset, key, value))
}

/// An open segment file. Reads and writes are positional (`read_at`/`write_all_at`), so the
/// writer and any number of readers share one handle without a cursor.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub base: u64,
    pub path: PathBuf,
    pub file: File,
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The base offset named by a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LogError::io(format!("sync {}", dir.display()), e))
}

impl SegmentFile {
    pub fn open(dir: &Path, base: u64) -> Result<Self, LogError> {
        let path = segment_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(format!("open {}", path.display()), e))?;
        Ok(Self { base, path, file })
    }

    /// Creates an empty segment and makes its directory entry durable, so records fsync'd into
    /// it cannot vanish with a lost directory entry.
    pub fn create(dir: &Path, base: u64) -> Result<Self, LogError> {
        let path = segment_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(format!("create {}", path.display()), e))?;
        sync_dir(dir)?;
        Ok(Self { base, path, file })
    }

    /// Walks the frames in file positions `[start, end)`.
    pub fn frames(&self, start: u64, end: u64) -> FrameReader<'_> {
        FrameReader { file: &self.file, buf: Vec::new(), buf_pos: start, at: 0, end }
    }
}

/// One step of a [`FrameReader`].
pub(crate) enum Step<'a> {
    Frame {
        pos: u64,
        next_pos: u64,
        offset: u64,
        key: &'a [u8],
        value: &'a [u8],
    },
    End,
    /// The bytes at `pos` are not a complete, valid frame.
    Torn {
        pos: u64,
        reason: &'static str,
    },
}

/// A buffered, positional walk over the frames of a byte range of one segment.
pub(crate) struct FrameReader<'f> {
    file: &'f File,
    buf: Vec<u8>,
    /// The file position of `buf[0]`.
    buf_pos: u64,
    at: usize,
    end: u64,
}

impl FrameReader<'_> {
    pub fn next_frame(&mut self) -> io::Result<Step<'_>> {
        let (pos, span) = loop {
            let pos = self.buf_pos + self.at as u64;
            match decode_frame(&self.buf[self.at..]) {
                Decoded::Frame(span) => break (pos, span),
                Decoded::Invalid(reason) => return Ok(Step::Torn { pos, reason }),
                Decoded::NeedMore(need) => {
                    let left = self.end.saturating_sub(pos);
                    if left == 0 {
                        return Ok(Step::End);
                    }
                    if need as u64 > left {
                        return Ok(Step::Torn { pos, reason: "frame runs past the end of the segment" });
                    }
                    // `need <= left`, so this fetches the whole frame (and more when cheap).
                    let want = (need.max(READ_CHUNK) as u64).min(left) as usize;
                    self.buf.resize(want, 0);
                    self.file.read_exact_at(&mut self.buf, pos)?;
                    self.buf_pos = pos;
                    self.at = 0;
                }
            }
        };
        let body = &self.buf[self.at + FRAME_HEADER..self.at + span.size];
        self.at += span.size;
        let (key, value) = body[BODY_FIXED..].split_at(span.key_len);
        Ok(Step::Frame { pos, next_pos: pos + span.size as u64, offset: span.offset, key, value })
    }
}

/// Offset → file position samples of one segment, so a read seeks near its start offset instead
/// of scanning the segment from the top.
#[derive(Clone, Debug, Default)]
pub(crate) struct SparseIndex {
    entries: Vec<(u64, u64)>,
}

/// Whether a frame at `pos` deserves an index entry, given the last indexed position.
pub(crate) fn index_due(last_pos: Option<u64>, pos: u64) -> bool {
    last_pos.is_none_or(|last| pos >= last + INDEX_INTERVAL_BYTES)
}

impl SparseIndex {
    pub fn note(&mut self, offset: u64, pos: u64) {
        if index_due(self.last_pos(), pos) {
            self.entries.push((offset, pos));
        }
    }

    pub fn last_pos(&self) -> Option<u64> {
        self.entries.last().map(|&(_, pos)| pos)
    }

    /// Entries must come in offset order, after this index's own.
    pub fn from_entries(entries: Vec<(u64, u64)>) -> Self {
        Self { entries }
    }

    pub fn extend(&mut self, later: SparseIndex) {
        self.entries.extend(later.entries);
    }

    /// The position of the last sampled frame at or before `offset` (0 if none).
    pub fn lookup(&self, offset: u64) -> u64 {
        let i = self.entries.partition_point(|&(o, _)| o <= offset);
        i.checked_sub(1).map_or(0, |i| self.entries[i].1)
    }
}

/// What a recovery scan found in one segment.
pub(crate) struct Scan {
    /// Bytes of complete, valid, consecutive frames from the start.
    pub valid_len: u64,
    pub next_offset: u64,
    pub index: SparseIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub torn: Option<&'static str>,
}

/// Reads a whole segment, checking every frame and that offsets run `base, base + 1, ...`.
pub(crate) fn scan(segment: &SegmentFile, file_len: u64) -> io::Result<Scan> {
    let mut frames = segment.frames(0, file_len);
    let mut scan =
        Scan { valid_len: 0, next_offset: segment.base, index: SparseIndex::default(), torn: None };
    loop {
        match frames.next_frame()? {
            Step::End => return Ok(scan),
            Step::Torn { reason, .. } => {
                scan.torn = Some(reason);
                return Ok(scan);
            }
            Step::Frame { offset, .. } if offset != scan.next_offset => {
                scan.torn = Some("offset out of sequence");
                return Ok(scan);
            }
            Step::Frame { pos, next_pos, offset, .. } => {
                scan.index.note(offset, pos);
                scan.next_offset += 1;
                scan.valid_len = next_pos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_damage() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 7, b"cust_1", b"{\"n\":1}");
        assert_eq!(buf.len(), frame_size(b"cust_1", b"{\"n\":1}").unwrap());
        assert_eq!(decode_frame(&buf), Decoded::Frame(FrameSpan { offset: 7, key_len: 6, size: buf.len() }));
        assert_eq!(decode_frame(&buf[..5]), Decoded::NeedMore(FRAME_HEADER));
        assert_eq!(decode_frame(&buf[..buf.len() - 1]), Decoded::NeedMore(buf.len()));
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_frame(&flipped), Decoded::Invalid("checksum mismatch"));
        assert!(matches!(decode_frame(&[0; 32]), Decoded::Invalid(_)));
    }

    #[test]
    fn frame_parts_walk_consecutive_frames_and_refuse_damage() {
        let records: [(u64, &[u8], &[u8]); 3] =
            [(7, b"cust_1", b"{\"n\":1}"), (8, b"", b""), (9, b"k", b"v")];
        let mut buf = Vec::new();
        for (offset, key, value) in records {
            encode_frame(&mut buf, offset, key, value);
        }
        let mut rest = &buf[..];
        for (offset, key, value) in records {
            assert_eq!(decode_frame_parts(rest), Some((offset, key, value)));
            rest = &rest[frame_size(key, value).unwrap()..];
        }
        assert!(rest.is_empty());
        assert_eq!(decode_frame_parts(rest), None);
        assert_eq!(decode_frame_parts(&buf[..10]), None);
        let mut flipped = buf.clone();
        flipped[FRAME_OVERHEAD] ^= 1;
        assert_eq!(decode_frame_parts(&flipped), None);
    }

    #[test]
    fn sparse_index_finds_the_nearest_earlier_sample() {
        let mut index = SparseIndex::default();
        for i in 0..100u64 {
            index.note(10 + i, i * 1000);
        }
        // Samples land every 5 frames (5000 bytes >= 4096): offsets 10, 15, 20, ...
        assert_eq!(index.lookup(3), 0);
        assert_eq!(index.lookup(10), 0);
        assert_eq!(index.lookup(14), 0);
        assert_eq!(index.lookup(15), 5000);
        assert_eq!(index.lookup(27), 15000);
        assert_eq!(index.lookup(1_000), 95000);
    }

    #[test]
    fn segment_names_round_trip() {
        let name = segment_path(Path::new("d"), 42).file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_segment_name(&name), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
    }
}

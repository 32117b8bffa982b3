//! Chunked authenticated encryption of documents (PDFs, images, text attachments) that are
//! stored as files outside the database.
//!
//! The construction is RustCrypto's STREAM (`aead::stream`, re-exported by `aes-gcm`) over
//! AES-256-GCM with the big-endian 32-bit counter flavour (`EncryptorBE32` / `DecryptorBE32`):
//! the 12-byte GCM nonce of chunk `i` is `prefix (7 bytes) || i (u32 BE) || last flag (1 byte)`,
//! so chunks cannot be reordered, dropped or duplicated, and a stream cannot be cut at a chunk
//! boundary without the missing "last" chunk being noticed. This module only composes it.
//!
//! Every document is sealed under a fresh random 32-byte key chosen by the caller (who wraps
//! it elsewhere), so a random 7-byte nonce prefix per document is sufficient.
//!
//! # Format (`CVS1`)
//!
//! ```text
//! header  = "CVS1" || chunk size (u32 BE, = CHUNK_PLAINTEXT) || nonce prefix (7 bytes)   (15 bytes)
//! frame   = sealed length (u32 BE) || sealed chunk (plaintext || 16-byte GCM tag)
//! stream  = header || frame* || last frame
//! ```
//!
//! Every chunk but the last holds exactly `CHUNK_PLAINTEXT` bytes of plaintext and is sealed
//! with `encrypt_next`; the last one holds fewer (possibly none: a document whose length is a
//! multiple of the chunk size ends with an empty last chunk) and is sealed with `encrypt_last`.
//! A frame is therefore the last one exactly when its sealed length is shorter than a full
//! chunk's. The length prefix is what lets a reader tell a cut inside a chunk ([`StreamError::Truncated`])
//! and bytes after the last chunk ([`StreamError::TrailingData`]) apart from tampering; it needs
//! no MAC of its own, since GCM authenticates the length of the ciphertext it opens and STREAM's
//! last flag authenticates which chunk ends the stream.
//!
//! The associated data of every chunk is `header || aad`: the header (fixed length, so the
//! concatenation is unambiguous) is bound to every chunk together with the caller's `aad`.
//!
//! Plaintext buffered inside [`Sealer`] and [`Opener`] is zeroized. What [`Opener::update`] emits
//! is authentic chunk by chunk, but the document is only known to be complete (not truncated)
//! once [`Opener::finish`] has returned `Ok`: a caller must not act on the plaintext before then.

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Plaintext bytes per chunk (every chunk but the last).
pub const CHUNK_PLAINTEXT: usize = 64 * 1024;

/// Magic and format version at the start of every stream.
const MAGIC: [u8; 4] = *b"CVS1";
/// Length of the random nonce prefix: 12-byte GCM nonce minus STREAM's 4-byte counter and 1-byte last flag.
const NONCE_PREFIX_LEN: usize = 7;
/// Length of the header: magic, chunk size, nonce prefix.
const HEADER_LEN: usize = MAGIC.len() + 4 + NONCE_PREFIX_LEN;
/// Length of a GCM tag.
const TAG_LEN: usize = 16;
/// Sealed length of a full (non-last) chunk.
const SEALED_FULL: usize = CHUNK_PLAINTEXT + TAG_LEN;
/// Length of the sealed-length prefix of a frame.
const FRAME_PREFIX_LEN: usize = 4;

/// Why a stream could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The header is not a carevault document stream header, or is of an unsupported version.
    #[error("not a supported document stream: {0}")]
    BadHeader(&'static str),
    /// A chunk did not open: the stream was altered, its chunks reordered, or it was sealed
    /// under another key or for other associated data.
    #[error("the document stream could not be opened: it was altered or reordered, or the key or associated data is wrong")]
    Authentication,
    /// The stream ends before its last chunk (dropped chunks or a cut inside a chunk).
    #[error("the document stream is truncated")]
    Truncated,
    /// There are bytes after the (authentic) last chunk.
    #[error("the document stream has data after its last chunk")]
    TrailingData,
    /// The document exceeds what one stream can hold (2^32 - 1 chunks).
    #[error("the document is too long for one stream")]
    TooLong,
}

/// Length and SHA-256 of the plaintext that went through a [`Sealer`] or came out of an [`Opener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    pub plaintext_len: u64,
    pub plaintext_sha256: [u8; 32],
}

fn encode_header(nonce_prefix: &[u8; NONCE_PREFIX_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (magic, rest) = h.split_at_mut(MAGIC.len());
    magic.copy_from_slice(&MAGIC);
    let (chunk, prefix) = rest.split_at_mut(4);
    // CHUNK_PLAINTEXT is a small constant (64 KiB): the conversion cannot truncate.
    chunk.copy_from_slice(&(CHUNK_PLAINTEXT as u32).to_be_bytes());
    prefix.copy_from_slice(nonce_prefix);
    h
}

fn chunk_aad(header: &[u8; HEADER_LEN], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + aad.len());
    v.extend_from_slice(header);
    v.extend_from_slice(aad);
    v
}

fn push_frame(out: &mut Vec<u8>, sealed: &[u8]) -> Result<(), StreamError> {
    let len = u32::try_from(sealed.len()).map_err(|_| StreamError::TooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sealed);
    Ok(())
}

/// Incremental encryption of one document. Write [`Sealer::header`] first, then everything
/// [`Sealer::update`] and [`Sealer::finish`] append, in order.
pub struct Sealer {
    enc: EncryptorBE32<Aes256Gcm>,
    header: [u8; HEADER_LEN],
    chunk_aad: Vec<u8>,
    /// Plaintext of the chunk being filled; capacity for a sealed chunk so that sealing in
    /// place never reallocates (which would leave plaintext behind in freed memory).
    buf: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    len: u64,
    failed: Option<StreamError>,
}

impl Sealer {
    /// A sealer under `key` (a fresh random key per document) binding `aad`, with a random nonce prefix.
    pub fn new(key: &[u8; 32], aad: &[u8]) -> Sealer {
        let prefix = crate::random_bytes::<NONCE_PREFIX_LEN>();
        let header = encode_header(&prefix);
        Sealer {
            enc: EncryptorBE32::from_aead(Aes256Gcm::new(key.into()), (&prefix).into()),
            header,
            chunk_aad: chunk_aad(&header, aad),
            buf: Zeroizing::new(Vec::with_capacity(SEALED_FULL)),
            hasher: Sha256::new(),
            len: 0,
            failed: None,
        }
    }

    /// The stream header; it goes before the chunks.
    pub fn header(&self) -> Vec<u8> {
        self.header.to_vec()
    }

    /// Takes the next piece of plaintext; appends every chunk it completes to `out`.
    pub fn update(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.hasher.update(plaintext);
        self.len += plaintext.len() as u64;
        while !plaintext.is_empty() {
            let take = (CHUNK_PLAINTEXT - self.buf.len()).min(plaintext.len());
            let (now, rest) = plaintext.split_at(take);
            self.buf.extend_from_slice(now);
            plaintext = rest;
            if self.buf.len() == CHUNK_PLAINTEXT {
                if let Err(e) = self.seal_full(out) {
                    self.failed = Some(e);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn seal_full(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        // The only failure of `encrypt_next` here is the exhausted 32-bit chunk counter.
        self.enc.encrypt_next_in_place(&self.chunk_aad, &mut *self.buf).map_err(|_| StreamError::TooLong)?;
        push_frame(out, &self.buf)?;
        // Sealed in place: what is left is ciphertext.
        self.buf.clear();
        Ok(())
    }

    /// Seals the last chunk (what is buffered, possibly nothing) and appends it to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<StreamSummary, StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Sealer { enc, chunk_aad, mut buf, hasher, len, .. } = self;
        enc.encrypt_last_in_place(&chunk_aad, &mut *buf).map_err(|_| StreamError::TooLong)?;
        push_frame(out, &buf)?;
        Ok(StreamSummary { plaintext_len: len, plaintext_sha256: hasher.finalize().into() })
    }
}

/// Incremental decryption of one document: the header first ([`Opener::new`]), then the rest
/// of the stream in pieces of any size ([`Opener::update`]), then [`Opener::finish`]. After an
/// error every further call returns the same error.
pub struct Opener {
    /// `None` once the last chunk has been opened.
    dec: Option<DecryptorBE32<Aes256Gcm>>,
    chunk_aad: Vec<u8>,
    prefix: [u8; FRAME_PREFIX_LEN],
    prefix_have: usize,
    /// Sealed length of the frame being read, once its prefix is complete.
    expected: Option<usize>,
    /// Sealed bytes of the frame being read; after the last chunk has been opened, its plaintext.
    body: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    len: u64,
    failed: Option<StreamError>,
}

impl Opener {
    /// Length of the stream header.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// An opener for the stream that starts with `header` (exactly [`Opener::HEADER_LEN`] bytes),
    /// sealed under `key` for `aad`. Nothing is authenticated yet: a header altered in its nonce
    /// prefix fails on the first chunk.
    pub fn new(key: &[u8; 32], aad: &[u8], header: &[u8]) -> Result<Opener, StreamError> {
        let header: [u8; HEADER_LEN] = header.try_into().map_err(|_| StreamError::BadHeader("the header is not 15 bytes long"))?;
        let (magic, rest) = header.split_at(MAGIC.len());
        let (chunk, prefix) = rest.split_at(4);
        if magic != MAGIC {
            return Err(if magic.starts_with(b"CVS") {
                StreamError::BadHeader("unsupported format version")
            } else {
                StreamError::BadHeader("not a carevault document stream")
            });
        }
        if chunk != (CHUNK_PLAINTEXT as u32).to_be_bytes() {
            return Err(StreamError::BadHeader("unsupported chunk size"));
        }
        let prefix: [u8; NONCE_PREFIX_LEN] = prefix.try_into().map_err(|_| StreamError::BadHeader("the header is not 15 bytes long"))?;
        Ok(Opener {
            dec: Some(DecryptorBE32::from_aead(Aes256Gcm::new(key.into()), (&prefix).into())),
            chunk_aad: chunk_aad(&header, aad),
            prefix: [0; FRAME_PREFIX_LEN],
            prefix_have: 0,
            expected: None,
            body: Zeroizing::new(Vec::with_capacity(SEALED_FULL)),
            hasher: Sha256::new(),
            len: 0,
            failed: None,
        })
    }

    /// Takes the next piece of the stream (after the header); appends to `out` the plaintext of
    /// every complete chunk that is not the last. The last chunk is opened as soon as it is
    /// complete (so bytes after it are reported as [`StreamError::TrailingData`]) but its
    /// plaintext is only emitted by [`Opener::finish`].
    pub fn update(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.absorb(ciphertext, out).inspect_err(|e| self.failed = Some(*e))
    }

    fn absorb(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        while !input.is_empty() {
            if self.dec.is_none() {
                return Err(StreamError::TrailingData);
            }
            match self.expected {
                None => {
                    let take = (FRAME_PREFIX_LEN - self.prefix_have).min(input.len());
                    let (now, rest) = input.split_at(take);
                    if let Some(dst) = self.prefix.get_mut(self.prefix_have..self.prefix_have + take) {
                        dst.copy_from_slice(now);
                    }
                    self.prefix_have += take;
                    input = rest;
                    if self.prefix_have == FRAME_PREFIX_LEN {
                        self.prefix_have = 0;
                        let sealed_len = u32::from_be_bytes(self.prefix) as usize;
                        if !(TAG_LEN..=SEALED_FULL).contains(&sealed_len) {
                            // No chunk of this format has such a length: the prefix was altered.
                            return Err(StreamError::Authentication);
                        }
                        self.expected = Some(sealed_len);
                    }
                }
                Some(sealed_len) => {
                    let take = (sealed_len - self.body.len()).min(input.len());
                    let (now, rest) = input.split_at(take);
                    self.body.extend_from_slice(now);
                    input = rest;
                    if self.body.len() == sealed_len {
                        self.expected = None;
                        self.open_frame(sealed_len, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn open_frame(&mut self, sealed_len: usize, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if sealed_len == SEALED_FULL {
            let dec = self.dec.as_mut().ok_or(StreamError::TrailingData)?;
            // aes-gcm checks the tag before decrypting: on failure the buffer holds no plaintext.
            dec.decrypt_next_in_place(&self.chunk_aad, &mut *self.body).map_err(|_| StreamError::Authentication)?;
            self.hasher.update(&self.body[..]);
            self.len += self.body.len() as u64;
            out.extend_from_slice(&self.body);
            self.body.zeroize();
        } else {
            let dec = self.dec.take().ok_or(StreamError::TrailingData)?;
            dec.decrypt_last_in_place(&self.chunk_aad, &mut *self.body).map_err(|_| StreamError::Authentication)?;
        }
        Ok(())
    }

    /// Ends the stream: appends the plaintext of the last chunk to `out` and returns the
    /// summary of the whole document. A stream that ended before its last chunk is
    /// [`StreamError::Truncated`].
    pub fn finish(self, out: &mut Vec<u8>) -> Result<StreamSummary, StreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.dec.is_some() {
            return Err(StreamError::Truncated);
        }
        let Opener { body, mut hasher, len, .. } = self;
        hasher.update(&body[..]);
        out.extend_from_slice(&body);
        Ok(StreamSummary { plaintext_len: len + body.len() as u64, plaintext_sha256: hasher.finalize().into() })
    }
}

/// Seals a whole document held in memory: header and chunks, and the summary.
pub fn seal_all(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, StreamSummary), StreamError> {
    let mut sealer = Sealer::new(key, aad);
    let chunks = plaintext.len() / CHUNK_PLAINTEXT + 1;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + chunks * (FRAME_PREFIX_LEN + TAG_LEN));
    out.extend_from_slice(&sealer.header);
    sealer.update(plaintext, &mut out)?;
    let summary = sealer.finish(&mut out)?;
    Ok((out, summary))
}

/// Opens a whole stream held in memory (header included).
pub fn open_all(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<(Zeroizing<Vec<u8>>, StreamSummary), StreamError> {
    let Some((header, rest)) = sealed.split_at_checked(HEADER_LEN) else {
        return Err(if sealed.len() >= MAGIC.len() && !sealed.starts_with(&MAGIC) {
            StreamError::BadHeader("not a carevault document stream")
        } else {
            StreamError::Truncated
        });
    };
    let mut opener = Opener::new(key, aad, header)?;
    // The plaintext is shorter than the rest of the stream: reserving it up front means the
    // buffer is never reallocated (no plaintext copies left behind in freed memory).
    let mut out = Zeroizing::new(Vec::with_capacity(rest.len()));
    opener.update(rest, &mut out)?;
    let summary = opener.finish(&mut out)?;
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7u8; 32];
    const AAD: &[u8] = b"document/d1";

    /// Deterministic pseudo-random bytes (xorshift64*).
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// Splits `data` into pieces whose sizes cycle through `sizes` (0 means an empty piece).
    fn pieces<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            let (a, b) = rest.split_at(n);
            out.push(a);
            rest = b;
            i += 1;
        }
        out
    }

    fn seal_in_pieces(plain: &[u8], sizes: &[usize]) -> (Vec<u8>, StreamSummary) {
        let mut s = Sealer::new(&KEY, AAD);
        let mut out = s.header();
        for p in pieces(plain, sizes) {
            s.update(p, &mut out).unwrap();
        }
        let summary = s.finish(&mut out).unwrap();
        (out, summary)
    }

    fn open_in_pieces(sealed: &[u8], sizes: &[usize]) -> Result<(Vec<u8>, StreamSummary), StreamError> {
        let (header, rest) = sealed.split_at(Opener::HEADER_LEN);
        let mut o = Opener::new(&KEY, AAD, header)?;
        let mut out = Vec::new();
        for p in pieces(rest, sizes) {
            o.update(p, &mut out)?;
        }
        let summary = o.finish(&mut out)?;
        Ok((out, summary))
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// Byte offset of frame `i` (0-based) in a stream whose earlier frames are all full.
    fn frame_at(i: usize) -> usize {
        HEADER_LEN + i * (FRAME_PREFIX_LEN + SEALED_FULL)
    }

    const SIZES: [usize; 6] = [0, 1, CHUNK_PLAINTEXT - 1, CHUNK_PLAINTEXT, CHUNK_PLAINTEXT + 1, 3 * CHUNK_PLAINTEXT + 5];

    #[test]
    fn round_trip_at_chunk_boundaries_in_random_pieces() {
        for (k, &len) in SIZES.iter().enumerate() {
            let plain = bytes(len, 100 + k as u64);
            let (sealed, summary) = seal_in_pieces(&plain, &[1, 7000, 0, 65_535, 3, 131_073, 12_345]);
            assert_eq!(summary, StreamSummary { plaintext_len: len as u64, plaintext_sha256: sha(&plain) });
            let full_chunks = len / CHUNK_PLAINTEXT;
            let last = len % CHUNK_PLAINTEXT;
            assert_eq!(sealed.len(), frame_at(full_chunks) + FRAME_PREFIX_LEN + last + TAG_LEN, "length {len}");
            let (opened, summary2) = open_in_pieces(&sealed, &[5, 1, 70_000, 0, 4, 65_552, 999]).unwrap();
            assert_eq!(opened, plain);
            assert_eq!(summary2, summary);
            let (all, summary3) = open_all(&KEY, AAD, &sealed).unwrap();
            assert_eq!(&all[..], &plain[..]);
            assert_eq!(summary3, summary);
        }
    }

    #[test]
    fn seal_all_matches_the_incremental_format() {
        let plain = bytes(3 * CHUNK_PLAINTEXT + 5, 1);
        let (sealed, summary) = seal_all(&KEY, AAD, &plain).unwrap();
        assert_eq!(summary.plaintext_sha256, sha(&plain));
        assert_eq!(summary.plaintext_len, plain.len() as u64);
        let (opened, summary2) = open_in_pieces(&sealed, &[1000]).unwrap();
        assert_eq!(opened, plain);
        assert_eq!(summary2, summary);
    }

    #[test]
    fn header_layout() {
        let s = Sealer::new(&KEY, AAD);
        let h = s.header();
        assert_eq!(h.len(), Opener::HEADER_LEN);
        assert_eq!(&h[..4], b"CVS1");
        assert_eq!(&h[4..8], &65_536u32.to_be_bytes());
        // A fresh nonce prefix per sealer.
        assert_ne!(h, Sealer::new(&KEY, AAD).header());
        let (a, _) = seal_all(&KEY, AAD, b"same").unwrap();
        let (b, _) = seal_all(&KEY, AAD, b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn dropping_the_last_chunk_is_truncation() {
        for len in [CHUNK_PLAINTEXT, 3 * CHUNK_PLAINTEXT, 3 * CHUNK_PLAINTEXT + 5] {
            let (sealed, _) = seal_all(&KEY, AAD, &bytes(len, 2)).unwrap();
            let full = len / CHUNK_PLAINTEXT;
            for keep in 0..=full {
                assert_eq!(open_all(&KEY, AAD, &sealed[..frame_at(keep)]).unwrap_err(), StreamError::Truncated, "{len} {keep}");
            }
        }
        // Even an empty document has a (sealed, empty) last chunk.
        let (sealed, _) = seal_all(&KEY, AAD, b"").unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + FRAME_PREFIX_LEN + TAG_LEN);
        assert_eq!(open_all(&KEY, AAD, &sealed[..HEADER_LEN]).unwrap_err(), StreamError::Truncated);
    }

    #[test]
    fn cutting_anywhere_is_truncation() {
        let (sealed, _) = seal_all(&KEY, AAD, &bytes(3 * CHUNK_PLAINTEXT + 5, 3)).unwrap();
        let mut cuts = vec![0, 1, 3, 4, HEADER_LEN - 1, sealed.len() - 1, sealed.len() - TAG_LEN, sealed.len() - 21];
        for i in 0..=3 {
            let f = frame_at(i);
            cuts.extend([f + 1, f + 2, f + 3, f + 4, f + 5, f + 4 + 1000, f + 4 + SEALED_FULL / 2]);
            if i < 3 {
                cuts.extend([f + 4 + SEALED_FULL - 1, f + 4 + SEALED_FULL - TAG_LEN]);
            }
        }
        for cut in cuts.into_iter().filter(|&c| c < sealed.len()) {
            assert_eq!(open_all(&KEY, AAD, &sealed[..cut]).unwrap_err(), StreamError::Truncated, "cut at {cut}");
            if cut >= HEADER_LEN {
                assert_eq!(open_in_pieces(&sealed[..cut], &[333]).unwrap_err(), StreamError::Truncated, "cut at {cut}");
            }
        }
    }

    #[test]
    fn reordered_chunks_do_not_open() {
        let (sealed, _) = seal_all(&KEY, AAD, &bytes(3 * CHUNK_PLAINTEXT + 5, 4)).unwrap();
        let frame = FRAME_PREFIX_LEN + SEALED_FULL;
        let swap = |a: usize, b: usize| {
            let mut s = sealed.clone();
            let fa = sealed[frame_at(a)..frame_at(a) + frame].to_vec();
            let fb = sealed[frame_at(b)..frame_at(b) + frame].to_vec();
            s[frame_at(a)..frame_at(a) + frame].copy_from_slice(&fb);
            s[frame_at(b)..frame_at(b) + frame].copy_from_slice(&fa);
            s
        };
        assert_eq!(open_all(&KEY, AAD, &swap(0, 1)).unwrap_err(), StreamError::Authentication);
        assert_eq!(open_all(&KEY, AAD, &swap(1, 2)).unwrap_err(), StreamError::Authentication);
        // The last (short) chunk moved to the front.
        let last = sealed[frame_at(3)..].to_vec();
        let mut moved = sealed[..HEADER_LEN].to_vec();
        moved.extend_from_slice(&last);
        moved.extend_from_slice(&sealed[HEADER_LEN..frame_at(3)]);
        assert_eq!(open_all(&KEY, AAD, &moved).unwrap_err(), StreamError::Authentication);
        // A chunk repeated in place of the next one.
        let mut dup = sealed.clone();
        dup.copy_within(frame_at(0)..frame_at(1), frame_at(1));
        assert_eq!(open_all(&KEY, AAD, &dup).unwrap_err(), StreamError::Authentication);
        // A chunk of another stream under the same key and aad.
        let (other, _) = seal_all(&KEY, AAD, &bytes(3 * CHUNK_PLAINTEXT + 5, 4)).unwrap();
        let mut spliced = sealed.clone();
        spliced[frame_at(1)..frame_at(2)].copy_from_slice(&other[frame_at(1)..frame_at(2)]);
        assert_eq!(open_all(&KEY, AAD, &spliced).unwrap_err(), StreamError::Authentication);
    }

    #[test]
    fn a_flipped_bit_in_any_chunk_is_detected() {
        let (sealed, _) = seal_all(&KEY, AAD, &bytes(3 * CHUNK_PLAINTEXT + 5, 5)).unwrap();
        for i in 0..=3 {
            let body = frame_at(i) + FRAME_PREFIX_LEN;
            let body_len = if i < 3 { SEALED_FULL } else { 5 + TAG_LEN };
            // Ciphertext and tag bytes: authentication failure.
            for off in [0, 1, body_len / 2, body_len - TAG_LEN - 1, body_len - TAG_LEN, body_len - 1] {
                for bit in [0, 3, 7] {
                    let mut s = sealed.clone();
                    s[body + off] ^= 1 << bit;
                    assert_eq!(open_all(&KEY, AAD, &s).unwrap_err(), StreamError::Authentication, "chunk {i} byte {off} bit {bit}");
                }
            }
            // Length prefix: always refused (a longer last frame may read as truncated).
            for off in 0..FRAME_PREFIX_LEN {
                for bit in 0..8 {
                    let mut s = sealed.clone();
                    s[frame_at(i) + off] ^= 1 << bit;
                    let err = open_all(&KEY, AAD, &s).unwrap_err();
                    if i < 3 {
                        assert_eq!(err, StreamError::Authentication, "chunk {i} prefix byte {off} bit {bit}");
                    } else {
                        assert!(matches!(err, StreamError::Authentication | StreamError::Truncated), "{err:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_in_the_header_is_detected() {
        let (sealed, _) = seal_all(&KEY, AAD, &bytes(CHUNK_PLAINTEXT + 10, 6)).unwrap();
        for off in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut s = sealed.clone();
                s[off] ^= 1 << bit;
                let err = open_all(&KEY, AAD, &s).unwrap_err();
                if off < 8 {
                    assert!(matches!(err, StreamError::BadHeader(_)), "byte {off} bit {bit}: {err:?}");
                } else {
                    assert_eq!(err, StreamError::Authentication, "byte {off} bit {bit}");
                }
            }
        }
        let mut v2 = sealed.clone();
        v2[3] = b'2';
        assert_eq!(open_all(&KEY, AAD, &v2).unwrap_err(), StreamError::BadHeader("unsupported format version"));
        assert!(matches!(open_all(&KEY, AAD, b"%PDF-1.7 not sealed at all").unwrap_err(), StreamError::BadHeader(_)));
        assert!(matches!(Opener::new(&KEY, AAD, &sealed[..HEADER_LEN - 1]), Err(StreamError::BadHeader(_))));
        assert!(matches!(Opener::new(&KEY, AAD, &sealed[..HEADER_LEN + 1]), Err(StreamError::BadHeader(_))));
    }

    #[test]
    fn wrong_aad_or_key_does_not_open() {
        for len in [0, 10, CHUNK_PLAINTEXT + 10] {
            let (sealed, _) = seal_all(&KEY, AAD, &bytes(len, 7)).unwrap();
            assert_eq!(open_all(&KEY, b"document/d2", &sealed).unwrap_err(), StreamError::Authentication);
            assert_eq!(open_all(&KEY, b"", &sealed).unwrap_err(), StreamError::Authentication);
            let mut other = KEY;
            other[31] ^= 1;
            assert_eq!(open_all(&other, AAD, &sealed).unwrap_err(), StreamError::Authentication);
            assert!(open_all(&KEY, AAD, &sealed).is_ok());
        }
    }

    #[test]
    fn bytes_after_the_last_chunk_are_refused() {
        for len in [0, 5, CHUNK_PLAINTEXT, 2 * CHUNK_PLAINTEXT + 5] {
            let (sealed, _) = seal_all(&KEY, AAD, &bytes(len, 8)).unwrap();
            for extra in [&b"\0"[..], b"x", &[0u8; 21], &bytes(SEALED_FULL + 100, 9)] {
                let mut s = sealed.clone();
                s.extend_from_slice(extra);
                assert_eq!(open_all(&KEY, AAD, &s).unwrap_err(), StreamError::TrailingData, "{len} + {}", extra.len());
                assert_eq!(open_in_pieces(&s, &[1]).unwrap_err(), StreamError::TrailingData);
            }
            // Two streams concatenated.
            let mut twice = sealed.clone();
            twice.extend_from_slice(&sealed);
            assert_eq!(open_all(&KEY, AAD, &twice).unwrap_err(), StreamError::TrailingData);
        }
    }

    #[test]
    fn errors_are_sticky() {
        let (sealed, _) = seal_all(&KEY, AAD, &bytes(2 * CHUNK_PLAINTEXT, 10)).unwrap();
        let mut s = sealed.clone();
        s[frame_at(0) + 10] ^= 1;
        let mut o = Opener::new(&KEY, AAD, &s[..HEADER_LEN]).unwrap();
        let mut out = Vec::new();
        assert_eq!(o.update(&s[HEADER_LEN..frame_at(1)], &mut out), Err(StreamError::Authentication));
        assert!(out.is_empty());
        // The rest is genuine, but the opener stays failed.
        assert_eq!(o.update(&sealed[frame_at(1)..], &mut out), Err(StreamError::Authentication));
        assert_eq!(o.finish(&mut out), Err(StreamError::Authentication));
        assert!(out.is_empty());
    }

    #[test]
    fn the_last_chunk_is_only_released_by_finish() {
        let plain = bytes(CHUNK_PLAINTEXT + 100, 11);
        let (sealed, _) = seal_all(&KEY, AAD, &plain).unwrap();
        let mut o = Opener::new(&KEY, AAD, &sealed[..HEADER_LEN]).unwrap();
        let mut out = Vec::new();
        o.update(&sealed[HEADER_LEN..], &mut out).unwrap();
        assert_eq!(out, &plain[..CHUNK_PLAINTEXT]);
        o.finish(&mut out).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let marker = b"PATIENT-MARKER: Jane Q. Example, DOB 1970-01-01";
        let plain: Vec<u8> = marker.iter().copied().cycle().take(3 * CHUNK_PLAINTEXT + 5).collect();
        let (sealed, _) = seal_all(&KEY, AAD, &plain).unwrap();
        assert!(!sealed.windows(8).any(|w| w == &marker[..8]));
        assert!(!sealed.windows(marker.len()).any(|w| w == marker));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn round_trip_in_arbitrary_pieces(
            len in 0usize..200 * 1024,
            seed in any::<u64>(),
            seal_sizes in proptest::collection::vec(0usize..80_000, 1..6),
            open_sizes in proptest::collection::vec(0usize..80_000, 1..6),
        ) {
            prop_assume!(seal_sizes.iter().any(|&n| n > 0) && open_sizes.iter().any(|&n| n > 0));
            let plain = bytes(len, seed);
            let (sealed, summary) = seal_in_pieces(&plain, &seal_sizes);
            prop_assert_eq!(summary.plaintext_sha256, sha(&plain));
            prop_assert_eq!(summary.plaintext_len, len as u64);
            let (opened, summary2) = open_in_pieces(&sealed, &open_sizes).unwrap();
            prop_assert_eq!(&opened, &plain);
            prop_assert_eq!(summary2, summary);
        }
    }
}

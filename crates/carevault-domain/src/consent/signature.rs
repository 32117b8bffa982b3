//! The drawn signature: its limits and its canonical, hashed form.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::document::to_hex;
use crate::error::{InputError, IssueCode};

/// A signature drawn on a canvas of `width` × `height` units (pixels of the signing pad): strokes
/// of `[x, y]` points, y pointing down. Points on the canvas edge (`x == width`) are inside.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawnSignature {
    pub width: u16,
    pub height: u16,
    pub strokes: Vec<Vec<[u16; 2]>>,
}

redacted_debug!(DrawnSignature);

impl DrawnSignature {
    pub const WIDTH: std::ops::RangeInclusive<u16> = 100..=2000;
    pub const HEIGHT: std::ops::RangeInclusive<u16> = 50..=1000;
    pub const MAX_STROKES: usize = 100;
    pub const MAX_POINTS_PER_STROKE: usize = 2000;
    pub const MAX_POINTS: usize = 20_000;
    /// The narrowest drawing accepted (bounding box width in canvas units): not a dot.
    pub const MIN_EXTENT: u16 = 10;

    pub fn check(&self) -> Result<(), InputError> {
        if !Self::WIDTH.contains(&self.width) {
            return Err(InputError::value("signature.width", "the canvas is 100 to 2000 units wide"));
        }
        if !Self::HEIGHT.contains(&self.height) {
            return Err(InputError::value("signature.height", "the canvas is 50 to 1000 units high"));
        }
        if self.strokes.is_empty() {
            return Err(InputError::new(IssueCode::Required, Some("signature.strokes".to_string()), "the signature has no strokes"));
        }
        if self.strokes.len() > Self::MAX_STROKES {
            return Err(InputError::value("signature.strokes", "at most 100 strokes"));
        }
        let mut total = 0usize;
        for (i, stroke) in self.strokes.iter().enumerate() {
            if stroke.is_empty() || stroke.len() > Self::MAX_POINTS_PER_STROKE {
                return Err(InputError::value(&format!("signature.strokes[{i}]"), "a stroke has 1 to 2000 points"));
            }
            total += stroke.len();
            if let Some(j) = stroke.iter().position(|[x, y]| *x > self.width || *y > self.height) {
                return Err(InputError::value(&format!("signature.strokes[{i}][{j}]"), "the point is outside the canvas"));
            }
        }
        if total > Self::MAX_POINTS {
            return Err(InputError::value("signature.strokes", "at most 20000 points in all"));
        }
        let (min_x, max_x) = self.points().fold((u16::MAX, 0), |(lo, hi), [x, _]| (lo.min(x), hi.max(x)));
        if max_x.saturating_sub(min_x) < Self::MIN_EXTENT {
            return Err(InputError::value("signature.strokes", "the drawing is too small to be a signature"));
        }
        Ok(())
    }

    fn points(&self) -> impl Iterator<Item = [u16; 2]> + '_ {
        self.strokes.iter().flatten().copied()
    }

    /// The stable serialization that is hashed: compact JSON with the keys in this order,
    /// `{"width":W,"height":H,"strokes":[[[x,y],...],...]}` (what `serde_json::to_vec` writes).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut s = format!("{{\"width\":{},\"height\":{},\"strokes\":[", self.width, self.height);
        for (i, stroke) in self.strokes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('[');
            for (j, [x, y]) in stroke.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str(&format!("[{x},{y}]"));
            }
            s.push(']');
        }
        s.push_str("]}");
        s.into_bytes()
    }

    /// SHA-256 of [`canonical_bytes`](Self::canonical_bytes).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// [`sha256`](Self::sha256) as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        to_hex(&self.sha256())
    }
}

//! The byte encoding of a [`CarryState`](crate::CarryState): what a job stores between micro-batches
//! (PostgreSQL `metrics_carry`) and what pickling ships to an executor.
//!
//! Little-endian, fixed-width, versioned: `b"STCS"`, a `u16` version, the state-shaping parameters
//! of the configuration that produced it, then the state itself. Decoding checks every length and
//! count against the configuration it is restored under, so a truncated, foreign or tampered value
//! is an error, never a carry that would continue a series differently.

use std::fmt;

/// First bytes of every encoded carry.
pub(crate) const MAGIC: &[u8; 4] = b"STCS";
/// Bumped whenever the layout changes; an older value is rejected (the job then warms up from bars).
pub(crate) const VERSION: u16 = 2;

/// Why bytes are not a carry for a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a carry state: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

pub(crate) fn invalid(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

#[derive(Default)]
pub(crate) struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, x: u8) {
        self.bytes.push(x);
    }
    pub fn u16(&mut self, x: u16) {
        self.bytes.extend_from_slice(&x.to_le_bytes());
    }
    pub fn u64(&mut self, x: u64) {
        self.bytes.extend_from_slice(&x.to_le_bytes());
    }
    pub fn usize(&mut self, x: usize) {
        self.u64(x as u64);
    }
    pub fn i64(&mut self, x: i64) {
        self.bytes.extend_from_slice(&x.to_le_bytes());
    }
    /// Bit for bit, so NaN payloads and signed zeros survive.
    pub fn f64(&mut self, x: f64) {
        self.u64(x.to_bits());
    }
    pub fn f64s(&mut self, xs: &[f64]) {
        self.usize(xs.len());
        xs.iter().for_each(|&x| self.f64(x));
    }
    pub fn i64s(&mut self, xs: &[i64]) {
        self.usize(xs.len());
        xs.iter().for_each(|&x| self.i64(x));
    }
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let end = self.at + N;
        let chunk = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| invalid(format!("truncated in {what} at byte {}", self.at)))?;
        self.at = end;
        Ok(chunk.try_into().expect("N bytes"))
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(what)?))
    }
    pub fn usize(&mut self, what: &str) -> Result<usize, DecodeError> {
        usize::try_from(self.u64(what)?).map_err(|_| invalid(format!("{what} out of range")))
    }
    pub fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(what)?))
    }
    pub fn f64(&mut self, what: &str) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    pub fn bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(invalid(format!("{what} is {other}, not a boolean"))),
        }
    }

    /// A length-prefixed vector of at most `max` values.
    pub fn f64s(&mut self, what: &str, max: usize) -> Result<Vec<f64>, DecodeError> {
        let len = self.bounded_len(what, max)?;
        (0..len).map(|_| self.f64(what)).collect()
    }
    pub fn i64s(&mut self, what: &str, max: usize) -> Result<Vec<i64>, DecodeError> {
        let len = self.bounded_len(what, max)?;
        (0..len).map(|_| self.i64(what)).collect()
    }
    fn bounded_len(&mut self, what: &str, max: usize) -> Result<usize, DecodeError> {
        let len = self.usize(what)?;
        if len > max {
            return Err(invalid(format!(
                "{what} holds {len} values, at most {max} fit the configuration"
            )));
        }
        Ok(len)
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(invalid(format!(
                "{} bytes after the end",
                self.bytes.len() - self.at
            )))
        }
    }
}

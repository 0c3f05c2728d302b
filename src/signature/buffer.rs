use bytes::{Buf, Bytes};

use super::budget::Reservation;
use crate::Verification;

/// The most a buffer allocates on the strength of a declared length alone: past this it
/// grows only as bytes actually arrive, so a client's claim costs nothing by itself.
const INITIAL_CAPACITY_CAP: usize = 64 * 1024;

/// Frames copied into the buffer are fed to the MAC once this many bytes are waiting:
/// SHA-256 pays a fixed cost per call, which a body in many small frames would pay per
/// frame, while a chunk this size is still in cache from the copy.
const HASH_CHUNK: usize = 16 * 1024;

/// Frames at least this large are hashed straight from the frame: SHA-256's cost per call
/// is lost in them.
const HASH_DIRECTLY: usize = 1024;

/// Collects the body within the limit while feeding the MAC.
///
/// A body that arrives as a single frame is kept as that frame's `Bytes`, never copied,
/// and hashed as it arrives.
/// A second frame starts one buffer sized for the declared length, capped at
/// [`INITIAL_CAPACITY_CAP`]; it grows by doubling (never past the limit or an honest
/// declared length), every growth is charged to the layer's budget first and allocated
/// fallibly, so no request can make the process abort.
pub(crate) struct BodyBuffer {
    collected: Collected,
    limit: usize,
    declared: Option<usize>,
    reservation: Reservation,
}

enum Collected {
    Nothing,
    OneFrame(Bytes),
    /// The bytes so far, of which the first `hashed` have been fed to the MAC.
    Frames {
        buffer: Vec<u8>,
        hashed: usize,
    },
}

/// Why a frame could not be taken.
pub(crate) enum Refused {
    /// The body would pass the limit.
    OverLimit,
    /// The budget (or the allocator) cannot hold it now.
    OverBudget,
}

impl BodyBuffer {
    pub(crate) fn new(limit: usize, declared: Option<u64>, reservation: Reservation) -> Self {
        Self {
            collected: Collected::Nothing,
            limit,
            declared: declared.and_then(|length| usize::try_from(length).ok()),
            reservation,
        }
    }

    pub(crate) fn push(
        &mut self,
        data: &mut impl Buf,
        verification: &mut Verification,
    ) -> Result<(), Refused> {
        let incoming = data.remaining();
        let len = self
            .len()
            .checked_add(incoming)
            .filter(|&len| len <= self.limit)
            .ok_or(Refused::OverLimit)?;
        if incoming == 0 {
            return Ok(());
        }
        match &mut self.collected {
            Collected::Nothing => {
                if !self.reservation.grow_to(incoming) {
                    return Err(Refused::OverBudget);
                }
                // Zero-copy when the frame is already `Bytes`.
                let frame = data.copy_to_bytes(incoming);
                verification.update(&frame);
                self.collected = Collected::OneFrame(frame);
            }
            Collected::OneFrame(first) => {
                let capacity = self
                    .declared
                    .unwrap_or(0)
                    .min(INITIAL_CAPACITY_CAP)
                    .clamp(len, self.limit);
                let mut buffer = Vec::new();
                reserve(&mut buffer, capacity, &mut self.reservation)?;
                buffer.extend_from_slice(first);
                let mut hashed = first.len();
                append(&mut buffer, &mut hashed, data, verification);
                self.collected = Collected::Frames { buffer, hashed };
            }
            Collected::Frames { buffer, hashed } => {
                if buffer.capacity() < len {
                    let mut capacity = buffer.capacity().saturating_mul(2).min(self.limit);
                    if let Some(declared) = self.declared.filter(|&declared| declared >= len) {
                        capacity = capacity.min(declared);
                    }
                    reserve(buffer, capacity.max(len), &mut self.reservation)?;
                }
                append(buffer, hashed, data, verification);
            }
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        match &self.collected {
            Collected::Nothing => 0,
            Collected::OneFrame(frame) => frame.len(),
            Collected::Frames { buffer, .. } => buffer.len(),
        }
    }

    /// The collected bytes, all of them fed to the MAC; they leave the budget here.
    pub(crate) fn finish(&mut self, verification: &mut Verification) -> Bytes {
        self.reservation = Reservation::default();
        match std::mem::replace(&mut self.collected, Collected::Nothing) {
            Collected::Nothing => Bytes::new(),
            Collected::OneFrame(frame) => frame,
            Collected::Frames { buffer, hashed } => {
                verification.update(&buffer[hashed..]);
                Bytes::from(buffer)
            }
        }
    }
}

/// Grows `buffer` to hold `capacity` bytes, charging the budget before allocating.
fn reserve(
    buffer: &mut Vec<u8>,
    capacity: usize,
    reservation: &mut Reservation,
) -> Result<(), Refused> {
    if !reservation.grow_to(capacity) {
        return Err(Refused::OverBudget);
    }
    buffer
        .try_reserve_exact(capacity - buffer.len())
        .map_err(|_| Refused::OverBudget)
}

/// Copies `data` into `buffer`, of which the first `hashed` bytes have been fed to the
/// MAC. A large frame with nothing waiting before it is hashed as it is copied, while it
/// is in cache; small ones wait until [`HASH_CHUNK`] bytes have gathered.
fn append(
    buffer: &mut Vec<u8>,
    hashed: &mut usize,
    data: &mut impl Buf,
    verification: &mut Verification,
) {
    let direct = *hashed == buffer.len() && data.remaining() >= HASH_DIRECTLY;
    while data.has_remaining() {
        let chunk = data.chunk();
        if direct {
            verification.update(chunk);
        }
        buffer.extend_from_slice(chunk);
        let read = chunk.len();
        data.advance(read);
    }
    if direct {
        *hashed = buffer.len();
    } else if buffer.len() - *hashed >= HASH_CHUNK {
        verification.update(&buffer[*hashed..]);
        *hashed = buffer.len();
    }
}

use bytes::{Buf, Bytes, BytesMut};

use crate::Verification;

/// Collects the body within the limit while feeding the MAC, in one pass.
///
/// A body that arrives as a single frame is kept as that frame's `Bytes`, never copied.
/// A second frame starts one buffer sized for the declared length (never beyond the
/// limit); an honest `content-length` means it never grows, and it never grows past the
/// limit.
pub(crate) struct BodyBuffer {
    collected: Collected,
    limit: usize,
    capacity_hint: usize,
}

enum Collected {
    Nothing,
    OneFrame(Bytes),
    Frames(BytesMut),
}

/// The frame would take the body past the limit.
pub(crate) struct OverLimit;

impl BodyBuffer {
    pub(crate) fn new(limit: usize, declared: Option<u64>) -> Self {
        let capacity_hint = declared.map_or(0, |length| {
            usize::try_from(length).map_or(limit, |length| length.min(limit))
        });
        Self {
            collected: Collected::Nothing,
            limit,
            capacity_hint,
        }
    }

    pub(crate) fn push(
        &mut self,
        mut data: impl Buf,
        verification: &mut Verification,
    ) -> Result<(), OverLimit> {
        let incoming = data.remaining();
        let len = self
            .len()
            .checked_add(incoming)
            .filter(|&len| len <= self.limit)
            .ok_or(OverLimit)?;
        if incoming == 0 {
            return Ok(());
        }
        match &mut self.collected {
            Collected::Nothing => {
                // Zero-copy when the frame is already `Bytes`.
                let frame = data.copy_to_bytes(incoming);
                verification.update(&frame);
                self.collected = Collected::OneFrame(frame);
            }
            Collected::OneFrame(first) => {
                let mut buffer = BytesMut::with_capacity(self.capacity_hint.max(len));
                buffer.extend_from_slice(first);
                absorb(&mut buffer, data, verification);
                self.collected = Collected::Frames(buffer);
            }
            Collected::Frames(buffer) => {
                if buffer.capacity() < len {
                    // Grow by doubling like `Vec`, but never past the limit.
                    let capacity = len.max(buffer.capacity().saturating_mul(2)).min(self.limit);
                    let mut grown = BytesMut::with_capacity(capacity);
                    grown.extend_from_slice(buffer);
                    *buffer = grown;
                }
                absorb(buffer, data, verification);
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match &self.collected {
            Collected::Nothing => 0,
            Collected::OneFrame(frame) => frame.len(),
            Collected::Frames(buffer) => buffer.len(),
        }
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        match self.collected {
            Collected::Nothing => Bytes::new(),
            Collected::OneFrame(frame) => frame,
            Collected::Frames(buffer) => buffer.freeze(),
        }
    }
}

fn absorb(buffer: &mut BytesMut, mut data: impl Buf, verification: &mut Verification) {
    while data.has_remaining() {
        let chunk = data.chunk();
        verification.update(chunk);
        buffer.extend_from_slice(chunk);
        let read = chunk.len();
        data.advance(read);
    }
}

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use super::{DeadLetter, DeadLetters, Filter, Kept, Reason};
use crate::idempotency::StoreFuture;

/// The most letters a store keeps unless configured otherwise.
pub const DEFAULT_MAX_DEAD_LETTERS: usize = 10_000;
/// The most bytes of delivery bodies a [`MemoryDeadLetters`] keeps unless configured
/// otherwise: 64 MiB.
pub const DEFAULT_MAX_DEAD_LETTER_BYTES: usize = 64 * 1024 * 1024;

/// Keeps dead letters in this process's memory: what
/// [`MemoryStore`](crate::idempotency::MemoryStore) uses, and a store of its own for a
/// layer whose records are kept elsewhere. Like the memory store, **one process only**,
/// and forgotten at a restart.
///
/// At most `max_letters` letters (10,000) and `max_bytes` of bodies (64 MiB); past
/// either, the oldest resolved letters go first, and when every letter is unresolved
/// the new one is not kept ([`Kept::Full`]).
///
/// # Example
///
/// ```
/// use aghanim_webhook::dead_letter::MemoryDeadLetters;
///
/// let letters = MemoryDeadLetters::with_limits(1_000, 16 * 1024 * 1024);
/// ```
#[derive(Clone)]
pub struct MemoryDeadLetters {
    shared: Arc<Shared>,
}

struct Shared {
    book: Mutex<Book>,
    max_letters: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Book {
    letters: HashMap<String, DeadLetter>,
    bytes: usize,
}

impl MemoryDeadLetters {
    /// At most [`DEFAULT_MAX_DEAD_LETTERS`] letters and
    /// [`DEFAULT_MAX_DEAD_LETTER_BYTES`] of bodies.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_DEAD_LETTERS, DEFAULT_MAX_DEAD_LETTER_BYTES)
    }

    /// At most `max_letters` letters and `max_bytes` of bodies.
    pub fn with_limits(max_letters: usize, max_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                book: Mutex::default(),
                max_letters,
                max_bytes,
            }),
        }
    }

    /// How many letters are kept, resolved or not.
    pub fn len(&self) -> usize {
        self.book().letters.len()
    }

    /// Whether no letter is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes of bodies are kept.
    pub fn bytes(&self) -> usize {
        self.book().bytes
    }

    /// Marks the letter of `key` resolved: a delivery of it succeeded.
    pub(crate) fn resolve(&self, key: &str) {
        if let Some(letter) = self.book().letters.get_mut(key) {
            letter.resolved = true;
        }
    }

    /// Keeps `letter`, resolved from the start when `applied` (its key was completed
    /// before this attempt failed).
    pub(crate) fn keep_now(&self, letter: &DeadLetter, applied: bool) -> Kept {
        let mut book = self.book();
        let now = SystemTime::now();
        if let Some(old) = book.letters.get(&letter.key).map(|kept| kept.body.len()) {
            // The latest attempt's bytes, when they fit; else the letter keeps its own.
            let new = letter.body.len();
            let fits = |book: &Book| book.bytes - old + new <= self.shared.max_bytes;
            while !fits(&book) && book.make_room(Some(&letter.key)) {}
            let fits = fits(&book);
            let Book { letters, bytes } = &mut *book;
            if let Some(kept) = letters.get_mut(&letter.key) {
                kept.attempts += 1;
                kept.last_seen = now;
                kept.reason = letter.reason;
                kept.detail.clone_from(&letter.detail);
                kept.status = letter.status;
                kept.resolved |= applied;
                if fits {
                    kept.body = letter.body.clone();
                    *bytes = *bytes - old + new;
                }
            }
            return Kept::Updated;
        }
        let size = letter.body.len();
        while book.letters.len() >= self.shared.max_letters
            || book.bytes + size > self.shared.max_bytes
        {
            if !book.make_room(None) {
                return Kept::Full;
            }
        }
        let mut kept = letter.clone();
        kept.attempts = 1;
        kept.first_seen = now;
        kept.last_seen = now;
        kept.resolved = applied;
        book.bytes += size;
        book.letters.insert(kept.key.clone(), kept);
        Kept::Created
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while the lock was held left the book whole: every change above is
        // made after the last call that could panic.
        self.shared
            .book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Book {
    /// Drops the resolved letter seen longest ago, else the one no handler took seen
    /// longest ago (a type a studio acknowledges without a handler would otherwise fill
    /// the bound for good), other than `sparing`'s; `false` when there is none.
    fn make_room(&mut self, sparing: Option<&str>) -> bool {
        self.drop_oldest(sparing, |letter| letter.resolved)
            || self.drop_oldest(sparing, |letter| letter.reason == Reason::NoHandler)
    }

    /// Drops the letter seen longest ago among those `evictable` picks, other than
    /// `sparing`'s.
    fn drop_oldest(&mut self, sparing: Option<&str>, evictable: fn(&DeadLetter) -> bool) -> bool {
        let oldest = self
            .letters
            .values()
            .filter(|letter| evictable(letter) && Some(letter.key.as_str()) != sparing)
            .min_by_key(|letter| letter.last_seen)
            .map(|letter| letter.key.clone());
        match oldest.and_then(|key| self.letters.remove(&key)) {
            Some(dropped) => {
                self.bytes -= dropped.body.len();
                true
            }
            None => false,
        }
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadLetters for MemoryDeadLetters {
    fn keep<'a>(&'a self, letter: &'a DeadLetter) -> StoreFuture<'a, Kept> {
        Box::pin(std::future::ready(Ok(self.keep_now(letter, false))))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<DeadLetter>> {
        let now = SystemTime::now();
        let mut listed: Vec<DeadLetter> = self
            .book()
            .letters
            .values()
            .filter(|letter| filter.matches(letter, now))
            .cloned()
            .collect();
        listed.sort_by_key(|letter| std::cmp::Reverse(letter.last_seen));
        listed.truncate(filter.limit.unwrap_or(usize::MAX));
        Box::pin(std::future::ready(Ok(listed)))
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        let letter = self.book().letters.get(key).cloned();
        Box::pin(std::future::ready(Ok(letter)))
    }

    fn forget<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<DeadLetter>> {
        let mut book = self.book();
        let letter = book.letters.remove(key);
        if let Some(letter) = &letter {
            book.bytes -= letter.body.len();
        }
        Box::pin(std::future::ready(Ok(letter)))
    }
}

impl fmt::Debug for MemoryDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDeadLetters")
            .field("letters", &self.len())
            .field("max_letters", &self.shared.max_letters)
            .field("max_bytes", &self.shared.max_bytes)
            .finish()
    }
}

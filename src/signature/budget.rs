use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// How many bytes the bodies still being read may hold at once, across every service
/// that one [`AghanimSignatureLayer`](super::AghanimSignatureLayer) (and its clones)
/// made. None of those bytes is verified until its request's last byte arrives, so
/// this is the memory a client without the secret can make the server hold.
#[derive(Debug)]
pub(crate) struct BufferBudget {
    total: usize,
    in_use: AtomicUsize,
}

impl BufferBudget {
    pub(crate) fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            in_use: AtomicUsize::new(0),
        })
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Whether `bytes` more would fit now; reserves nothing.
    pub(crate) fn fits(&self, bytes: usize) -> bool {
        self.in_use
            .load(Ordering::Relaxed)
            .checked_add(bytes)
            .is_some_and(|total| total <= self.total)
    }

    fn try_take(&self, bytes: usize) -> bool {
        let taken = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_use| {
                in_use
                    .checked_add(bytes)
                    .filter(|&total| total <= self.total)
            });
        if let Ok(before) = taken {
            super::metrics::budget_in_use(before + bytes);
        }
        taken.is_ok()
    }

    fn give_back(&self, bytes: usize) {
        let before = self.in_use.fetch_sub(bytes, Ordering::AcqRel);
        super::metrics::budget_in_use(before - bytes);
    }

    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }
}

/// The share of a [`BufferBudget`] one body holds while it is read; given back when
/// dropped. The default holds nothing and stands for no body.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    budget: Option<Arc<BufferBudget>>,
    held: usize,
    /// Made for a body being read, and counted as such in the metrics.
    reading: bool,
}

impl Reservation {
    pub(crate) fn new(budget: Option<Arc<BufferBudget>>) -> Self {
        super::metrics::bodies_reading(1);
        Self {
            budget,
            held: 0,
            reading: true,
        }
    }

    /// Holds `total` bytes in all, taking the difference from the budget; `false` when
    /// the budget cannot cover it. Never shrinks.
    pub(crate) fn grow_to(&mut self, total: usize) -> bool {
        let Some(more) = total.checked_sub(self.held).filter(|&more| more > 0) else {
            return true;
        };
        if let Some(budget) = &self.budget {
            if !budget.try_take(more) {
                return false;
            }
        }
        self.held = total;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.reading {
            super::metrics::bodies_reading(-1);
        }
        if let Some(budget) = &self.budget {
            budget.give_back(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BufferBudget, Reservation};

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let budget = BufferBudget::new(100);
        let mut first = Reservation::new(Some(budget.clone()));
        let mut second = Reservation::new(Some(budget.clone()));
        assert!(first.grow_to(60));
        assert!(!second.grow_to(41));
        assert!(second.grow_to(40));
        assert!(!budget.fits(1));
        assert!(first.grow_to(60), "growing to what is held takes nothing");
        drop(first);
        assert_eq!(budget.in_use(), 40);
        assert!(second.grow_to(100));
        drop(second);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn without_a_budget_everything_fits() {
        let mut reservation = Reservation::new(None);
        assert!(reservation.grow_to(usize::MAX));
    }
}

//! Asymmetric Namespace Access (Base 2.0 section 8.1): each namespace belongs to an ANA group
//! (`anagrpid`, 1..=the subsystem's namespace limit), and each listener of a subsystem with ANA
//! reporting has a state per group, which every controller connected through that listener
//! reports (Identify, the ANA log page 0Ch, ANA Change events) and enforces on I/O.
//!
//! A controller keeps its own copy of its listener's states in atomics, so the I/O check is one
//! relaxed load indexed by the namespace's group; the control path updates the copies when the
//! application changes a state (`Subsystem::set_ana_state`).

use crate::spec::{ana_state, PathStatus, Status};
use std::sync::atomic::{AtomicU8, Ordering};

/// An ANA state (Base 2.0 section 8.1.3), with the names SPDK's RPCs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AnaState {
    Optimized = ana_state::OPTIMIZED,
    NonOptimized = ana_state::NON_OPTIMIZED,
    Inaccessible = ana_state::INACCESSIBLE,
    PersistentLoss = ana_state::PERSISTENT_LOSS,
    Change = ana_state::CHANGE,
}

impl AnaState {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Optimized, Self::NonOptimized, Self::Inaccessible, Self::PersistentLoss, Self::Change]
            .into_iter()
            .find(|s| *s as u8 == v)
    }

    /// SPDK's name (`nvmf_subsystem_listener_set_ana_state --ana-state`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Optimized => "optimized",
            Self::NonOptimized => "non_optimized",
            Self::Inaccessible => "inaccessible",
            Self::PersistentLoss => "persistent_loss",
            Self::Change => "change",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Optimized, Self::NonOptimized, Self::Inaccessible, Self::PersistentLoss, Self::Change]
            .into_iter()
            .find(|st| st.name() == s)
    }

    /// The status an I/O command gets through a path in this state, or `None` when it may run.
    pub fn io_refusal(self) -> Option<Status> {
        match self {
            Self::Optimized | Self::NonOptimized => None,
            Self::Inaccessible => Some(Status::path(PathStatus::ASYMMETRIC_ACCESS_INACCESSIBLE)),
            // Not retryable on this path, but on another one (Base 2.0 section 8.1.3.4): no DNR,
            // which would stop a multipath host from failing over (Linux checks DNR first).
            Self::PersistentLoss => Some(Status::path(PathStatus::ASYMMETRIC_ACCESS_PERSISTENT_LOSS)),
            Self::Change => Some(Status::path(PathStatus::ASYMMETRIC_ACCESS_TRANSITION)),
        }
    }

    /// Whether the namespace reads as unusable (Identify Namespace NUSE 0, as SPDK reports).
    pub fn unusable(self) -> bool {
        matches!(self, Self::Inaccessible | Self::PersistentLoss)
    }
}

/// A controller's view of its listener's ANA states, index `anagrpid - 1`.
#[derive(Debug)]
pub(crate) struct AnaView {
    states: Box<[AtomicU8]>,
}

impl AnaView {
    pub fn new(groups: &[AnaState]) -> Self {
        AnaView { states: groups.iter().map(|s| AtomicU8::new(*s as u8)).collect() }
    }

    /// The state of group `anagrpid` (Optimized for a group out of range: none exists there).
    #[inline]
    pub fn get(&self, anagrpid: u32) -> AnaState {
        let v = self.states.get((anagrpid as usize).wrapping_sub(1)).map_or(1, |s| s.load(Ordering::Relaxed));
        AnaState::from_u8(v).unwrap_or(AnaState::Optimized)
    }

    pub fn set(&self, anagrpid: u32, state: AnaState) {
        if let Some(s) = self.states.get((anagrpid as usize).wrapping_sub(1)) {
            s.store(state as u8, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StatusCodeType;

    #[test]
    fn states_names_and_refusals() {
        for s in [
            AnaState::Optimized,
            AnaState::NonOptimized,
            AnaState::Inaccessible,
            AnaState::PersistentLoss,
            AnaState::Change,
        ] {
            assert_eq!(AnaState::parse(s.name()), Some(s));
            assert_eq!(AnaState::from_u8(s as u8), Some(s));
        }
        assert_eq!(AnaState::from_u8(0), None);
        assert!(AnaState::Optimized.io_refusal().is_none() && AnaState::NonOptimized.io_refusal().is_none());
        let s = AnaState::Inaccessible.io_refusal().unwrap();
        assert_eq!((s.sct(), s.sc(), s.is_dnr()), (StatusCodeType::Path as u8, 0x02, false));
        let s = AnaState::PersistentLoss.io_refusal().unwrap();
        assert_eq!((s.sc(), s.is_dnr()), (0x01, false), "no DNR: the host fails over to another path");
    }

    #[test]
    fn view() {
        let v = AnaView::new(&[AnaState::Optimized, AnaState::NonOptimized]);
        assert_eq!(v.get(2), AnaState::NonOptimized);
        v.set(1, AnaState::Inaccessible);
        assert_eq!(v.get(1), AnaState::Inaccessible);
        assert_eq!(v.get(0), AnaState::Optimized);
        assert_eq!(v.get(9), AnaState::Optimized);
    }
}

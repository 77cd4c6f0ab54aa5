//! Discovery referrals (NVMe-oF 1.1 section 5.3, SUBTYPE 1/2 entries pointing elsewhere), as
//! SPDK's `nvmf_discovery_add_referral`: the discovery log page lists each one for every host.

use crate::spec::fabrics::DISCOVERY_NQN;
use crate::subsystem::valid_nqn;
use crate::transport::TransportAddr;
use crate::{Error, Result};

/// Most referrals one target holds (each is a 1 KiB discovery log entry for every host).
pub const MAX_REFERRALS: usize = 256;

/// A referral: where another discovery service (or an NVM subsystem) can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referral {
    pub addr: TransportAddr,
    /// The discovery NQN (a referral to another discovery service, SUBTYPE 1) or an NVM
    /// subsystem's NQN (SUBTYPE 2).
    pub subnqn: String,
    /// The referred port requires a secure channel (TREQ SECURE_CHANNEL = 01b).
    pub secure_channel: bool,
}

impl Referral {
    /// A referral to the discovery service at `addr`.
    pub fn discovery(addr: TransportAddr) -> Self {
        Referral { addr, subnqn: DISCOVERY_NQN.to_string(), secure_channel: false }
    }
    /// Whether it refers to a discovery service (rather than an NVM subsystem).
    pub fn is_discovery(&self) -> bool {
        self.subnqn == DISCOVERY_NQN
    }
    /// The identity SPDK matches referrals by: the transport ID with its subsystem NQN.
    fn same_target(&self, other: &Referral) -> bool {
        self.addr == other.addr && self.subnqn == other.subnqn
    }
}

/// The target's referral list (control path only).
#[derive(Default)]
pub(crate) struct Referrals(Vec<Referral>);

impl Referrals {
    /// Add `r`; false when a referral to the same address and NQN exists (nothing changes, as
    /// in SPDK).
    pub(crate) fn add(&mut self, r: Referral) -> Result<bool> {
        if !valid_nqn(&r.subnqn) {
            return Err(Error::InvalidNqn(r.subnqn));
        }
        if self.0.iter().any(|x| x.same_target(&r)) {
            return Ok(false);
        }
        if self.0.len() >= MAX_REFERRALS {
            return Err(Error::InvalidParam(format!("at most {MAX_REFERRALS} referrals")));
        }
        self.0.push(r);
        Ok(true)
    }
    /// Remove the referral to `r`'s address and NQN.
    pub(crate) fn remove(&mut self, r: &Referral) -> Result<()> {
        let before = self.0.len();
        self.0.retain(|x| !x.same_target(r));
        if self.0.len() == before {
            return Err(Error::ReferralNotFound(format!("{} {}", r.addr, r.subnqn)));
        }
        Ok(())
    }
    pub(crate) fn list(&self) -> Vec<Referral> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_matched_by_address_and_nqn() {
        let mut list = Referrals::default();
        for port in 0..MAX_REFERRALS as u16 {
            assert!(list.add(Referral::discovery(TransportAddr::tcp("192.0.2.1", port))).unwrap());
        }
        let extra = Referral::discovery(TransportAddr::tcp("192.0.2.2", 1));
        assert!(matches!(list.add(extra.clone()), Err(Error::InvalidParam(_))));
        // A duplicate is no error even when full, and changes nothing.
        let dup = Referral { secure_channel: true, ..Referral::discovery(TransportAddr::tcp("192.0.2.1", 7)) };
        assert!(!list.add(dup.clone()).unwrap());
        assert!(!list.list()[7].secure_channel);
        // Same address, other NQN: another referral.
        let nvm = Referral { subnqn: "nqn.2016-06.io.spdk:cnode1".into(), ..dup.clone() };
        assert!(matches!(list.remove(&nvm), Err(Error::ReferralNotFound(_))));
        list.remove(&dup).unwrap();
        assert_eq!(list.list().len(), MAX_REFERRALS - 1);
        assert!(list.add(nvm).unwrap());
        assert!(!list.list().last().unwrap().is_discovery());
    }
}

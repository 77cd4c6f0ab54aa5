//! The Discovery Log Page (NVMe-oF 1.1 section 5.3), filtered by the requesting host's access.
//!
//! It is built from a [`DiscoveryView`], not from the target itself: the command layer sees
//! only what the log page lists (the target implements the view, see `target.rs`).

use crate::referral::Referral;
use crate::spec::discovery::{eflags, rdma_tsas, subtype, treq, DiscoveryLogEntry, DiscoveryLogHeader};
use crate::spec::fabrics::DISCOVERY_NQN;
use crate::spec::put_str;
use crate::subsystem::Subsystem;
use crate::transport::{TransportAddr, TransportType};
use std::sync::Arc;
use zerocopy::{FromZeros, IntoBytes};

/// What the discovery log page needs to know about the target (read on a Get Log Page, never
/// per I/O).
pub(crate) trait DiscoveryView {
    /// The target's listeners, in PORTID order.
    fn listener_addrs(&self) -> Vec<TransportAddr>;
    /// The NVM subsystems (not the discovery subsystem) `hostnqn` may connect to.
    fn subsystems_visible_to(&self, hostnqn: &str) -> Vec<Arc<Subsystem>>;
    /// The discovery referrals (listed for every host).
    fn referrals(&self) -> Vec<Referral>;
    /// The discovery generation counter (GENCTR).
    fn discovery_genctr(&self) -> u64;
}

fn entry(addr: &TransportAddr, nqn: &str, kind: u8, portid: u16) -> DiscoveryLogEntry {
    let mut e = DiscoveryLogEntry::new_zeroed();
    e.trtype = addr.trtype.trtype();
    e.adrfam = addr.adrfam();
    e.subtype = kind;
    // No secure channel needed; a host may disable SQ flow control (Connect CATTR bit 2).
    e.treq = treq::SECURE_CHANNEL_NOT_REQUIRED | treq::DISABLE_SQFLOW;
    e.portid.set(portid);
    e.cntlid.set(0xffff);
    e.asqsz.set(crate::ctrlr::MAX_ADMIN_QUEUE_DEPTH);
    if kind == subtype::CURRENT_DISCOVERY {
        // This discovery controller keeps persistent connections and reports log changes
        // (EPCSD); the entry repeats what the host already knows (DUPRETINFO).
        e.eflags.set(eflags::DUPRETINFO | eflags::EPCSD);
    }
    put_str(&mut e.trsvcid, &addr.trsvcid, b' ');
    put_str(&mut e.subnqn, nqn, 0);
    put_str(&mut e.traddr, &addr.traddr, b' ');
    if addr.trtype == crate::transport::TransportType::Rdma {
        // TSAS for RDMA (NVMe/RDMA 1.0b Figure 6): reliable connected QPs, no provider
        // type, the RDMA_CM connection management.
        e.tsas[0] = rdma_tsas::QPTYPE_RELIABLE_CONNECTED;
        e.tsas[1] = rdma_tsas::PRTYPE_NOT_SPECIFIED;
        e.tsas[2] = rdma_tsas::CMS_RDMA_CM;
    }
    // TSAS for TCP: SECTYPE 0 (no security), all zeroes.
    e
}

/// Build the whole log page for `hostnqn`: the discovery subsystem's own listeners, every NVM
/// subsystem listener the host may use, then the referrals (SUBTYPE 1 for another discovery
/// service, 2 for an NVM subsystem elsewhere, as SPDK; PORTID 0, as SPDK).
/// Returns the page and its GENCTR.
pub(crate) fn build_log(target: &impl DiscoveryView, hostnqn: &str, requester: TransportType) -> (Vec<u8>, u64) {
    let listeners = target.listener_addrs();
    // In-process (loopback) ports mean nothing to a host on the network.
    let reachable = |a: &TransportAddr| a.trtype != TransportType::Loop || requester == TransportType::Loop;
    let mut entries = Vec::new();
    for (i, l) in listeners.iter().enumerate().filter(|(_, l)| reachable(l)) {
        entries.push(entry(l, DISCOVERY_NQN, subtype::CURRENT_DISCOVERY, i as u16));
    }
    for sub in target.subsystems_visible_to(hostnqn) {
        for addr in sub.listeners().into_iter().filter(|a| reachable(a)) {
            let portid = listeners.iter().position(|l| addr.matches(l) || l.matches(&addr)).unwrap_or(0) as u16;
            entries.push(entry(&addr, &sub.nqn, subtype::NVME, portid));
        }
    }
    for r in target.referrals() {
        let kind = if r.is_discovery() { subtype::DISCOVERY_REFERRAL } else { subtype::NVME };
        let mut e = entry(&r.addr, &r.subnqn, kind, 0);
        // Another target's port: its secure-channel need as configured, nothing else claimed.
        e.treq = if r.secure_channel { treq::SECURE_CHANNEL_REQUIRED } else { treq::SECURE_CHANNEL_NOT_REQUIRED };
        entries.push(e);
    }
    let mut hdr = DiscoveryLogHeader::new_zeroed();
    let genctr = target.discovery_genctr();
    hdr.genctr.set(genctr);
    hdr.numrec.set(entries.len() as u64);
    let mut page = Vec::with_capacity(1024 * (entries.len() + 1));
    page.extend_from_slice(hdr.as_bytes());
    for e in &entries {
        page.extend_from_slice(e.as_bytes());
    }
    (page, genctr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromBytes;

    /// A view with no target behind it: the log page needs nothing else.
    struct Fixed;

    impl DiscoveryView for Fixed {
        fn listener_addrs(&self) -> Vec<TransportAddr> {
            vec![
                TransportAddr::tcp("10.0.0.1", 4420),
                TransportAddr::loopback("loop0"),
                TransportAddr::tcp("10.0.0.2", 4420),
            ]
        }
        fn subsystems_visible_to(&self, _hostnqn: &str) -> Vec<Arc<Subsystem>> {
            Vec::new()
        }
        fn referrals(&self) -> Vec<Referral> {
            vec![Referral::discovery(TransportAddr::tcp("10.0.0.9", 8009))]
        }
        fn discovery_genctr(&self) -> u64 {
            7
        }
    }

    #[test]
    fn log_page_is_built_from_the_view_alone() {
        let (page, genctr) = build_log(&Fixed, "nqn.2014-08.org.nvmexpress:uuid:host", TransportType::Tcp);
        assert_eq!(genctr, 7);
        let (hdr, rest) = DiscoveryLogHeader::read_from_prefix(&page).unwrap();
        assert_eq!(hdr.genctr.get(), 7);
        assert_eq!(hdr.numrec.get(), 3);
        let entries = &page[size_of::<DiscoveryLogHeader>()..];
        assert_eq!(rest.len() + size_of::<DiscoveryLogHeader>(), page.len());
        let e: Vec<DiscoveryLogEntry> = entries
            .chunks(size_of::<DiscoveryLogEntry>())
            .map(|c| DiscoveryLogEntry::read_from_bytes(c).unwrap())
            .collect();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].subtype, e[0].portid.get()), (subtype::CURRENT_DISCOVERY, 0));
        // The loopback port (PORTID 1) is not listed to a TCP host.
        assert_eq!((e[1].subtype, e[1].portid.get()), (subtype::CURRENT_DISCOVERY, 2));
        assert_eq!(&e[1].traddr[..8], b"10.0.0.2");
        assert_eq!(e[2].subtype, subtype::DISCOVERY_REFERRAL);
        assert_eq!(&e[2].trsvcid[..4], b"8009");
        // A loopback host sees every port.
        let (page, _) = build_log(&Fixed, "nqn.2014-08.org.nvmexpress:uuid:host", TransportType::Loop);
        let (hdr, _) = DiscoveryLogHeader::read_from_prefix(&page).unwrap();
        assert_eq!(hdr.numrec.get(), 4);
    }
}

//! The Discovery Log Page (NVMe-oF 1.1 section 5.3), filtered by the requesting host's access.

use crate::spec::discovery::{subtype, treq, DiscoveryLogEntry, DiscoveryLogHeader};
use crate::spec::fabrics::DISCOVERY_NQN;
use crate::spec::put_str;
use crate::target::TargetShared;
use zerocopy::{FromZeros, IntoBytes};

fn entry(addr: &crate::transport::TransportAddr, nqn: &str, kind: u8, portid: u16) -> DiscoveryLogEntry {
    let mut e = DiscoveryLogEntry::new_zeroed();
    e.trtype = addr.trtype.trtype();
    e.adrfam = addr.adrfam();
    e.subtype = kind;
    e.treq = treq::SECURE_CHANNEL_NOT_REQUIRED;
    e.portid.set(portid);
    e.cntlid.set(0xffff);
    e.asqsz.set(crate::ctrlr::MAX_ADMIN_QUEUE_DEPTH);
    put_str(&mut e.trsvcid, &addr.trsvcid, b' ');
    put_str(&mut e.subnqn, nqn, 0);
    put_str(&mut e.traddr, &addr.traddr, b' ');
    // TSAS for TCP: SECTYPE 0 (no security); for RDMA the zeroes mean RDMA_QPTYPE/PRTYPE defaults.
    e
}

/// Build the whole log page for `hostnqn`: the discovery subsystem's own listeners, every NVM
/// subsystem listener the host may use, then the referrals (SUBTYPE 1 for another discovery
/// service, 2 for an NVM subsystem elsewhere, as SPDK; PORTID 0, as SPDK).
pub(crate) fn build_log(target: &TargetShared, hostnqn: &str) -> Vec<u8> {
    let listeners = target.listener_addrs();
    let mut entries = Vec::new();
    for (i, l) in listeners.iter().enumerate() {
        entries.push(entry(l, DISCOVERY_NQN, subtype::CURRENT_DISCOVERY, i as u16));
    }
    for sub in target.subsystems() {
        if sub.is_discovery() || !sub.host_allowed(hostnqn) {
            continue;
        }
        for addr in sub.listeners() {
            let portid = listeners.iter().position(|l| addr.matches(l) || l.matches(&addr)).unwrap_or(0) as u16;
            entries.push(entry(&addr, &sub.nqn, subtype::NVME, portid));
        }
    }
    for r in target.referrals() {
        let kind = if r.is_discovery() { subtype::DISCOVERY_REFERRAL } else { subtype::NVME };
        let mut e = entry(&r.addr, &r.subnqn, kind, 0);
        if r.secure_channel {
            e.treq = treq::SECURE_CHANNEL_REQUIRED;
        }
        entries.push(e);
    }
    let mut hdr = DiscoveryLogHeader::new_zeroed();
    hdr.genctr.set(target.discovery_genctr());
    hdr.numrec.set(entries.len() as u64);
    let mut page = Vec::with_capacity(1024 * (entries.len() + 1));
    page.extend_from_slice(hdr.as_bytes());
    for e in &entries {
        page.extend_from_slice(e.as_bytes());
    }
    page
}

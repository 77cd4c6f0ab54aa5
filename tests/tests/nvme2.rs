//! What NVMe Base 2.0 makes mandatory for an I/O and a discovery controller, read back over
//! NVMe/TCP: the version, Supported Log Pages, Firmware Slot Information, Commands Supported and
//! Effects, the I/O Command Set Identify structures, Get Features' Select field and the
//! temperature thresholds.

#![forbid(unsafe_code)]

use nvmf::host::{Controller, HostConfig};
use nvmf::spec::fabrics::DISCOVERY_NQN;
use nvmf::spec::{
    cmd_effects, cns, fid, lid, CommandSpecificStatus, CommandsSupportedEffects, Cqe, FirmwareSlotLog, GenericStatus,
    IdentifyController, IdentifyNamespaceIndependent, Sqe, SupportedLogPages,
};
use nvmf_tests::*;
use zerocopy::FromBytes;

fn connect(t: &TestTarget, nqn: &str) -> Controller {
    Controller::connect(t.addr, nqn, &HostConfig::default()).expect("connect")
}

/// An admin command, with a 4 KiB buffer for controller-to-host data (opcode bits 1:0 = 10b);
/// the completion and the data.
fn admin(c: &mut Controller, opcode: u8, nsid: u32, cdw10: u32, cdw11: u32) -> (Cqe, Vec<u8>) {
    let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cdw10.set(cdw10);
    sqe.cdw11.set(cdw11);
    let mut data = vec![0xeeu8; 4096];
    let cqe = if opcode & 3 == 2 { c.admin_raw(sqe, None, Some(&mut data)) } else { c.admin_raw(sqe, None, None) };
    (cqe.expect("admin command"), data)
}

const IDENTIFY: u8 = 0x06;
const GET_FEATURES: u8 = 0x0a;
const SET_FEATURES: u8 = 0x09;

fn supported_lids(c: &mut Controller) -> Vec<u8> {
    let raw = c.get_log_page(lid::SUPPORTED_LOG_PAGES, 0, 1024, 0).expect("supported log pages");
    let page = SupportedLogPages::read_from_bytes(&raw[..]).expect("size");
    (0..=255u8).filter(|&l| page.lid[l as usize].get() & 1 != 0).collect()
}

#[test]
fn version_is_2_0_in_vs_and_identify() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    assert_eq!(c.property_get(nvmf::spec::reg::VS, false).expect("VS"), 0x0002_0000);
    let id = c.identify_controller().expect("identify");
    assert_eq!(id.ver.get(), 0x0002_0000);
    assert_eq!(id.lpa & 0b110, 0b110, "LPA: effects log and extended data");
    assert_eq!(id.frmw, 0b11, "one read-only firmware slot");
    assert_eq!(id.wctemp.get(), 343);
    assert!(id.cctemp.get() > id.wctemp.get());
    assert_ne!(id.oncs.get() & 1 << 4, 0, "ONCS: Select field supported");
}

#[test]
fn supported_log_pages_lists_exactly_what_is_served() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    let lids = supported_lids(&mut c);
    assert_eq!(lids, vec![0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x80]);
    for l in 0..=255u8 {
        let r = c.get_log_page(l, 0xffff_ffff, 512, 0);
        if lids.contains(&l) {
            r.unwrap_or_else(|e| panic!("listed log page {l:#x} fails: {e}"));
        } else {
            let e = r.expect_err("unlisted log page");
            assert_eq!(e.status().expect("status").sc(), CommandSpecificStatus::INVALID_LOG_PAGE, "lid {l:#x}");
        }
    }
    // The discovery controller: Supported Log Pages, Error Information, Discovery.
    let mut d = connect(&t, DISCOVERY_NQN);
    assert_eq!(supported_lids(&mut d), vec![0x00, 0x01, 0x70]);
    let e = d.get_log_page(lid::FW_SLOT, 0, 512, 0).expect_err("no firmware log on discovery");
    assert_eq!(e.status().expect("status").sc(), CommandSpecificStatus::INVALID_LOG_PAGE);
}

#[test]
fn firmware_slot_log_matches_identify() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    let raw = c.get_log_page(lid::FW_SLOT, 0xffff_ffff, 512, 0).expect("firmware slot log");
    let log = FirmwareSlotLog::read_from_bytes(&raw[..]).expect("size");
    assert_eq!(log.afi & 7, 1, "slot 1 active");
    let id = c.identify_controller().expect("identify");
    assert_eq!(log.frs[0], id.fr, "slot 1 holds the running firmware revision");
    assert!(log.frs[1..].iter().all(|s| s == &[0; 8]));
}

#[test]
fn commands_supported_and_effects() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    let raw = c.get_log_page(lid::COMMANDS_SUPPORTED, 0, 4096, 0).expect("effects log");
    let log = CommandsSupportedEffects::read_from_bytes(&raw[..]).expect("size");
    let acs: Vec<usize> = (0..256).filter(|&o| log.acs[o].get() & cmd_effects::CSUPP != 0).collect();
    assert_eq!(acs, vec![0x02, 0x06, 0x08, 0x09, 0x0a, 0x0c, 0x18]);
    let iocs: Vec<(usize, u32)> = (0..256).map(|o| (o, log.iocs[o].get())).filter(|&(_, e)| e != 0).collect();
    let (s, lbcc) = (cmd_effects::CSUPP, cmd_effects::CSUPP | cmd_effects::LBCC);
    let expect = vec![
        (0x00, s),
        (0x01, lbcc),
        (0x02, s),
        (0x05, s),
        (0x08, lbcc),
        (0x09, lbcc),
        (0x0d, s),
        (0x0e, s),
        (0x11, s),
        (0x15, s),
    ];
    assert_eq!(iocs, expect, "NVM commands, then the reservation commands");
    // Every listed admin command is executed (none answers Invalid Opcode), an unlisted one is not.
    for op in [0x02u8, 0x06, 0x09, 0x0a, 0x18] {
        let (cqe, _) = admin(&mut c, op, 0, 0x01, 0);
        assert_ne!(cqe.status().sc(), GenericStatus::INVALID_OPCODE, "opcode {op:#x}");
    }
    let (cqe, _) = admin(&mut c, 0x10, 0, 0, 0);
    assert_eq!(cqe.status().sc(), GenericStatus::INVALID_OPCODE, "Firmware Commit is not listed");
}

#[test]
fn identify_io_command_set_structures() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    // CNS 05h / 06h for the NVM Command Set (CSI 0): zero-filled structures; another CSI fails.
    for cns_v in [cns::CSI_NAMESPACE, cns::CSI_CONTROLLER] {
        let (cqe, data) = admin(&mut c, IDENTIFY, 1, cns_v as u32, 0);
        assert!(cqe.is_success(), "CNS {cns_v:#x}");
        assert!(data.iter().all(|&b| b == 0), "CNS {cns_v:#x}: nothing to report");
        let (cqe, _) = admin(&mut c, IDENTIFY, 1, cns_v as u32, 2 << 24);
        assert_eq!(cqe.status().sc(), GenericStatus::INVALID_FIELD, "CNS {cns_v:#x} with the Zoned CSI");
    }
    // CNS 07h: the active namespace list for CSI 0, as CNS 02h.
    let (cqe, data) = admin(&mut c, IDENTIFY, 0, cns::CSI_ACTIVE_NS_LIST as u32, 0);
    assert!(cqe.is_success());
    assert_eq!(u32::from_le_bytes(data[..4].try_into().expect("4")), 1);
    assert_eq!(u32::from_le_bytes(data[4..8].try_into().expect("4")), 0);
    // CNS 08h: shared and ready; an inactive NSID is all zero; NSID 0 is invalid.
    let (cqe, data) = admin(&mut c, IDENTIFY, 1, cns::CS_INDEPENDENT_NAMESPACE as u32, 0);
    assert!(cqe.is_success());
    let id = IdentifyNamespaceIndependent::read_from_bytes(&data[..]).expect("size");
    assert_eq!((id.nmic, id.nstat), (1, 1));
    let (cqe, data) = admin(&mut c, IDENTIFY, 5, cns::CS_INDEPENDENT_NAMESPACE as u32, 0);
    assert!(cqe.is_success() && data.iter().all(|&b| b == 0), "inactive NSID");
    let (cqe, _) = admin(&mut c, IDENTIFY, 0, cns::CS_INDEPENDENT_NAMESPACE as u32, 0);
    assert_eq!(cqe.status().sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    // CNS 1Ch: one combination, the NVM Command Set.
    let (cqe, data) = admin(&mut c, IDENTIFY, 0, cns::IO_COMMAND_SET as u32, 0);
    assert!(cqe.is_success());
    assert_eq!(u64::from_le_bytes(data[..8].try_into().expect("8")), 1);
    assert!(data[8..].iter().all(|&b| b == 0));
    // The controller structure is still what CNS 01h returns.
    let (_, data) = admin(&mut c, IDENTIFY, 0, cns::CONTROLLER as u32, 0);
    assert_eq!(IdentifyController::read_from_bytes(&data[..]).expect("size").ver.get(), 0x0002_0000);
}

/// Get Features with SEL (CDW10 bits 10:8).
fn get_sel(c: &mut Controller, f: u8, sel: u32, cdw11: u32) -> Cqe {
    admin(c, GET_FEATURES, 0, f as u32 | sel << 8, cdw11).0
}

#[test]
fn get_features_select_current_default_saved_capabilities() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    c.set_features(fid::KEEP_ALIVE_TIMER, 30_000).expect("set kato");
    c.set_features(fid::ASYNC_EVENT_CONFIG, 1 << 8).expect("set aen config");
    for (f, current) in [(fid::KEEP_ALIVE_TIMER, 30_000), (fid::ASYNC_EVENT_CONFIG, 1 << 8)] {
        assert_eq!(get_sel(&mut c, f, 0, 0).dw0.get(), current, "current {f:#x}");
        assert_eq!(get_sel(&mut c, f, 1, 0).dw0.get(), 0, "default {f:#x}");
        assert_eq!(get_sel(&mut c, f, 2, 0).dw0.get(), 0, "saved = default {f:#x}: nothing is saveable");
        assert_eq!(get_sel(&mut c, f, 3, 0).dw0.get(), 1 << 2, "changeable, not saveable {f:#x}");
    }
    // Fixed features: not changeable.
    assert_eq!(get_sel(&mut c, fid::ARBITRATION, 3, 0).dw0.get(), 0);
    // Unsupported features and reserved SEL values fail.
    assert_eq!(get_sel(&mut c, 0x99, 3, 0).status().sc(), GenericStatus::INVALID_FIELD);
    assert_eq!(get_sel(&mut c, fid::KEEP_ALIVE_TIMER, 4, 0).status().sc(), GenericStatus::INVALID_FIELD);
    // Save is refused with the spec's status.
    let (cqe, _) = admin(&mut c, SET_FEATURES, 0, fid::KEEP_ALIVE_TIMER as u32 | 1 << 31, 10_000);
    assert_eq!(cqe.status().sc(), CommandSpecificStatus::FEATURE_ID_NOT_SAVEABLE);
    assert_eq!(c.get_features(fid::KEEP_ALIVE_TIMER, 0).expect("kato"), 30_000, "unchanged");
}

#[test]
fn temperature_threshold_defaults_to_wctemp_and_is_kept() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, NQN);
    const UNDER: u32 = 1 << 20;
    assert_eq!(c.get_features(fid::TEMP_THRESHOLD, 0).expect("over"), 343);
    assert_eq!(c.get_features(fid::TEMP_THRESHOLD, UNDER).expect("under"), 0);
    c.set_features(fid::TEMP_THRESHOLD, 350).expect("set over");
    c.set_features(fid::TEMP_THRESHOLD, UNDER | 273).expect("set under");
    assert_eq!(c.get_features(fid::TEMP_THRESHOLD, 0).expect("over"), 350);
    assert_eq!(c.get_features(fid::TEMP_THRESHOLD, UNDER).expect("under"), 273);
    assert_eq!(get_sel(&mut c, fid::TEMP_THRESHOLD, 1, 0).dw0.get(), 343, "default over threshold = WCTEMP");
    // A temperature sensor this controller does not have (TMPSEL 1).
    let e = c.get_features(fid::TEMP_THRESHOLD, 1 << 16).expect_err("sensor 1");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_FIELD);
    // Another controller keeps its own thresholds.
    let mut other = connect(&t, NQN);
    assert_eq!(other.get_features(fid::TEMP_THRESHOLD, 0).expect("over"), 343);
}

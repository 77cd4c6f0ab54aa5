//! Controller registers (NVMe Base 2.0, section 3.1.3, Figure 35) and the doorbell layout
//! (section 3.1.4).
//!
//! The PCIe driver reads and writes these through BAR0; the fabrics target exposes the same values
//! as properties (Property Get/Set at the same offsets). The newtypes below wrap the raw register
//! value and give named access to each field; they carry no memory layout of their own.

/// Register offsets from the start of BAR0 / the property space (Base 2.0 Figure 35).
pub mod reg {
    /// Controller Capabilities (8 bytes).
    pub const CAP: u32 = 0x00;
    /// Version (4 bytes).
    pub const VS: u32 = 0x08;
    /// Interrupt Mask Set (4 bytes, PCIe only).
    pub const INTMS: u32 = 0x0C;
    /// Interrupt Mask Clear (4 bytes, PCIe only).
    pub const INTMC: u32 = 0x10;
    /// Controller Configuration (4 bytes).
    pub const CC: u32 = 0x14;
    /// Controller Status (4 bytes).
    pub const CSTS: u32 = 0x1C;
    /// NVM Subsystem Reset (4 bytes, optional).
    pub const NSSR: u32 = 0x20;
    /// Admin Queue Attributes (4 bytes, PCIe only).
    pub const AQA: u32 = 0x24;
    /// Admin Submission Queue Base Address (8 bytes, PCIe only).
    pub const ASQ: u32 = 0x28;
    /// Admin Completion Queue Base Address (8 bytes, PCIe only).
    pub const ACQ: u32 = 0x30;
    /// Controller Memory Buffer Location (optional).
    pub const CMBLOC: u32 = 0x38;
    /// Controller Memory Buffer Size (optional).
    pub const CMBSZ: u32 = 0x3C;
    /// Boot Partition Information (optional).
    pub const BPINFO: u32 = 0x40;
    /// NVM Subsystem Shutdown (optional).
    pub const NSSD: u32 = 0x64;
    /// Controller Ready Timeouts (4 bytes).
    pub const CRTO: u32 = 0x68;
    /// First doorbell: Submission Queue 0 Tail Doorbell (section 3.1.4).
    pub const DOORBELL_BASE: u32 = 0x1000;
}

/// Value written to NSSR to start an NVM Subsystem Reset ("NVMe" in ASCII, Base 2.0 Figure 46).
pub const NSSR_RESET_VALUE: u32 = 0x4E56_4D65;

/// Byte offset of a doorbell register (Base 2.0 section 3.1.4):
/// `0x1000 + (2 * qid + is_cq) * (4 << CAP.DSTRD)`.
///
/// `is_cq == false` gives the Submission Queue `qid` Tail Doorbell, `true` the Completion Queue
/// `qid` Head Doorbell.
pub const fn doorbell_offset(qid: u16, is_cq: bool, dstrd: u8) -> usize {
    reg::DOORBELL_BASE as usize + (2 * qid as usize + is_cq as usize) * (4usize << dstrd)
}

/// Generates `get`, `set_*` and `with_*` accessors for a field of `width` bits at bit `lo`.
macro_rules! reg_fields {
    ($ty:ident($raw:ty) {
        $( $(#[$m:meta])* $get:ident, $set:ident, $with:ident : $vt:tt @ $lo:literal, $width:literal; )*
    }) => {
        impl $ty {
            $(
                $(#[$m])*
                #[inline]
                pub const fn $get(&self) -> $vt {
                    reg_fields!(@get $vt, (self.0 >> $lo) & (((1 as $raw) << $width) - 1))
                }
                #[doc = concat!("Set the field read by [`", stringify!($ty), "::", stringify!($get), "`].")]
                #[inline]
                pub fn $set(&mut self, v: $vt) {
                    *self = self.$with(v);
                }
                #[doc = concat!("Builder form of [`", stringify!($ty), "::", stringify!($set), "`].")]
                #[inline]
                #[must_use]
                pub const fn $with(self, v: $vt) -> Self {
                    let mask: $raw = ((((1 as $raw) << $width) - 1) << $lo) as $raw;
                    Self((self.0 & !mask) | (((v as $raw) << $lo) & mask))
                }
            )*
        }
    };
    (@get bool, $e:expr) => { $e != 0 };
    (@get $vt:ty, $e:expr) => { $e as $vt };
}

/// Controller Capabilities, CAP (offset 0x00, Base 2.0 section 3.1.3.1, Figure 36).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Cap(pub u64);

reg_fields!(Cap(u64) {
    /// Maximum Queue Entries Supported (MQES, bits 15:0), 0's based: 0x3F means 64 entries.
    mqes, set_mqes, with_mqes: u16 @ 0, 16;
    /// Contiguous Queues Required (CQR, bit 16).
    cqr, set_cqr, with_cqr: bool @ 16, 1;
    /// Arbitration Mechanism Supported (AMS, bits 18:17): bit 0 weighted round robin, bit 1 vendor.
    ams, set_ams, with_ams: u8 @ 17, 2;
    /// Timeout (TO, bits 31:24) in 500 ms units: worst case time to wait for CSTS.RDY to change.
    to, set_to, with_to: u8 @ 24, 8;
    /// Doorbell Stride (DSTRD, bits 35:32): stride is `4 << DSTRD` bytes.
    dstrd, set_dstrd, with_dstrd: u8 @ 32, 4;
    /// NVM Subsystem Reset Supported (NSSRS, bit 36).
    nssrs, set_nssrs, with_nssrs: bool @ 36, 1;
    /// Command Sets Supported (CSS, bits 44:37), see [`cap_css`].
    css, set_css, with_css: u8 @ 37, 8;
    /// Boot Partition Support (BPS, bit 45).
    bps, set_bps, with_bps: bool @ 45, 1;
    /// Controller Power Scope (CPS, bits 47:46).
    cps, set_cps, with_cps: u8 @ 46, 2;
    /// Memory Page Size Minimum (MPSMIN, bits 51:48): `2 ^ (12 + MPSMIN)` bytes.
    mpsmin, set_mpsmin, with_mpsmin: u8 @ 48, 4;
    /// Memory Page Size Maximum (MPSMAX, bits 55:52): `2 ^ (12 + MPSMAX)` bytes.
    mpsmax, set_mpsmax, with_mpsmax: u8 @ 52, 4;
    /// Persistent Memory Region Supported (PMRS, bit 56).
    pmrs, set_pmrs, with_pmrs: bool @ 56, 1;
    /// Controller Memory Buffer Supported (CMBS, bit 57).
    cmbs, set_cmbs, with_cmbs: bool @ 57, 1;
    /// NVM Subsystem Shutdown Supported (NSSS, bit 58).
    nsss, set_nsss, with_nsss: bool @ 58, 1;
    /// Controller Ready Modes Supported (CRMS, bits 60:59).
    crms, set_crms, with_crms: u8 @ 59, 2;
});

/// Bits of [`Cap::css`] (CAP.CSS, Base 2.0 Figure 36).
pub mod cap_css {
    /// NVM Command Set (CAP bit 37).
    pub const NVM: u8 = 1 << 0;
    /// One or more I/O Command Sets, selected with CC.CSS = 110b (CAP bit 43).
    pub const IO_COMMAND_SETS: u8 = 1 << 6;
    /// No I/O Command Set: admin only (CAP bit 44).
    pub const NO_IO: u8 = 1 << 7;
}

impl Cap {
    /// CAP for a controller with `mqes` (0's based max queue entries), ready timeout `to`
    /// (500 ms units), doorbell stride 0, the NVM command set and 4 KiB minimum/maximum page size.
    /// Refine with the `with_*` builders.
    pub const fn new(mqes: u16, to: u8) -> Self {
        Cap(0).with_mqes(mqes).with_to(to).with_css(cap_css::NVM).with_cqr(true)
    }
    /// Maximum queue entries, converted from 0's based.
    pub const fn max_queue_entries(&self) -> u32 {
        self.mqes() as u32 + 1
    }
    /// Doorbell stride in bytes.
    pub const fn doorbell_stride(&self) -> usize {
        4usize << self.dstrd()
    }
    /// Minimum memory page size in bytes.
    pub const fn min_page_size(&self) -> usize {
        1usize << (12 + self.mpsmin())
    }
    /// Maximum memory page size in bytes.
    pub const fn max_page_size(&self) -> usize {
        1usize << (12 + self.mpsmax())
    }
    /// Worst case ready timeout in milliseconds.
    pub const fn timeout_ms(&self) -> u32 {
        self.to() as u32 * 500
    }
}

/// Version, VS (offset 0x08, Base 2.0 section 3.1.3.2, Figure 37). Also reported in Identify
/// Controller VER.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Vs(pub u32);

impl Vs {
    pub const V1_2: Vs = Vs::new(1, 2, 0);
    pub const V1_3: Vs = Vs::new(1, 3, 0);
    pub const V1_4: Vs = Vs::new(1, 4, 0);
    pub const V2_0: Vs = Vs::new(2, 0, 0);

    pub const fn new(major: u16, minor: u8, tertiary: u8) -> Self {
        Vs((major as u32) << 16 | (minor as u32) << 8 | tertiary as u32)
    }
    /// Major Version Number (MJR, bits 31:16).
    pub const fn major(&self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// Minor Version Number (MNR, bits 15:8).
    pub const fn minor(&self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Tertiary Version Number (TER, bits 7:0).
    pub const fn tertiary(&self) -> u8 {
        self.0 as u8
    }
}

impl core::fmt::Display for Vs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.tertiary())
    }
}

/// Controller Configuration, CC (offset 0x14, Base 2.0 section 3.1.3.5, Figure 41).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Cc(pub u32);

reg_fields!(Cc(u32) {
    /// Enable (EN, bit 0).
    en, set_en, with_en: bool @ 0, 1;
    /// I/O Command Set Selected (CSS, bits 6:4), see [`cc_css`].
    css, set_css, with_css: u8 @ 4, 3;
    /// Memory Page Size (MPS, bits 10:7): `2 ^ (12 + MPS)` bytes.
    mps, set_mps, with_mps: u8 @ 7, 4;
    /// Arbitration Mechanism Selected (AMS, bits 13:11): 0 round robin.
    ams, set_ams, with_ams: u8 @ 11, 3;
    /// Shutdown Notification (SHN, bits 15:14), see [`shn`].
    shn, set_shn, with_shn: u8 @ 14, 2;
    /// I/O Submission Queue Entry Size (IOSQES, bits 19:16): `2 ^ n` bytes, 6 for 64-byte SQEs.
    iosqes, set_iosqes, with_iosqes: u8 @ 16, 4;
    /// I/O Completion Queue Entry Size (IOCQES, bits 23:20): `2 ^ n` bytes, 4 for 16-byte CQEs.
    iocqes, set_iocqes, with_iocqes: u8 @ 20, 4;
    /// Controller Ready Independent of Media Enable (CRIME, bit 24).
    crime, set_crime, with_crime: bool @ 24, 1;
});

impl Cc {
    /// The usual host setting: NVM command set, 4 KiB pages, round robin, 64-byte SQEs and
    /// 16-byte CQEs, enabled.
    pub const fn enabled_nvm() -> Self {
        Cc(0).with_css(cc_css::NVM).with_mps(0).with_iosqes(6).with_iocqes(4).with_en(true)
    }
    /// Memory page size in bytes.
    pub const fn page_size(&self) -> usize {
        1usize << (12 + self.mps())
    }
}

/// Values of [`Cc::css`] (CC.CSS, Base 2.0 Figure 41).
pub mod cc_css {
    /// NVM Command Set.
    pub const NVM: u8 = 0b000;
    /// All supported I/O Command Sets (requires CAP.CSS bit 6).
    pub const ALL_IO: u8 = 0b110;
    /// Admin Command Set only.
    pub const ADMIN_ONLY: u8 = 0b111;
}

/// Shutdown Notification values of [`Cc::shn`] (CC.SHN, Base 2.0 Figure 41).
pub mod shn {
    pub const NONE: u8 = 0b00;
    pub const NORMAL: u8 = 0b01;
    pub const ABRUPT: u8 = 0b10;
}

/// Shutdown Status values of [`Csts::shst`] (CSTS.SHST, Base 2.0 Figure 42).
pub mod shst {
    /// Normal operation, no shutdown requested.
    pub const NORMAL: u8 = 0b00;
    /// Shutdown processing occurring.
    pub const OCCURRING: u8 = 0b01;
    /// Shutdown processing complete.
    pub const COMPLETE: u8 = 0b10;
}

/// Controller Status, CSTS (offset 0x1C, Base 2.0 section 3.1.3.6, Figure 42).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Csts(pub u32);

reg_fields!(Csts(u32) {
    /// Ready (RDY, bit 0).
    rdy, set_rdy, with_rdy: bool @ 0, 1;
    /// Controller Fatal Status (CFS, bit 1).
    cfs, set_cfs, with_cfs: bool @ 1, 1;
    /// Shutdown Status (SHST, bits 3:2), see [`shst`].
    shst, set_shst, with_shst: u8 @ 2, 2;
    /// NVM Subsystem Reset Occurred (NSSRO, bit 4, RW1C).
    nssro, set_nssro, with_nssro: bool @ 4, 1;
    /// Processing Paused (PP, bit 5).
    pp, set_pp, with_pp: bool @ 5, 1;
    /// Shutdown Type (ST, bit 6): the shutdown reported in SHST is a subsystem shutdown.
    st, set_st, with_st: bool @ 6, 1;
});

/// Admin Queue Attributes, AQA (offset 0x24, Base 2.0 section 3.1.3.8, Figure 44).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Aqa(pub u32);

reg_fields!(Aqa(u32) {
    /// Admin Submission Queue Size (ASQS, bits 11:0), 0's based.
    asqs, set_asqs, with_asqs: u16 @ 0, 12;
    /// Admin Completion Queue Size (ACQS, bits 27:16), 0's based.
    acqs, set_acqs, with_acqs: u16 @ 16, 12;
});

impl Aqa {
    /// AQA for admin queues of `sq_entries` and `cq_entries` entries (1's based, 2..=4096).
    pub const fn new(sq_entries: u16, cq_entries: u16) -> Self {
        Aqa(0).with_asqs(sq_entries - 1).with_acqs(cq_entries - 1)
    }
}

macro_rules! raw_conversions {
    ($($ty:ident($raw:ty)),*) => {$(
        impl From<$raw> for $ty {
            fn from(v: $raw) -> Self { $ty(v) }
        }
        impl From<$ty> for $raw {
            fn from(v: $ty) -> Self { v.0 }
        }
    )*};
}
raw_conversions!(Cap(u64), Vs(u32), Cc(u32), Csts(u32), Aqa(u32));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_offsets() {
        assert_eq!(reg::CAP, 0x00);
        assert_eq!(reg::VS, 0x08);
        assert_eq!(reg::INTMS, 0x0C);
        assert_eq!(reg::INTMC, 0x10);
        assert_eq!(reg::CC, 0x14);
        assert_eq!(reg::CSTS, 0x1C);
        assert_eq!(reg::NSSR, 0x20);
        assert_eq!(reg::AQA, 0x24);
        assert_eq!(reg::ASQ, 0x28);
        assert_eq!(reg::ACQ, 0x30);
        assert_eq!(reg::DOORBELL_BASE, 0x1000);
    }

    #[test]
    fn cap_bit_positions() {
        assert_eq!(Cap(0).with_mqes(0xffff).0, 0xffff);
        assert_eq!(Cap(0).with_cqr(true).0, 1 << 16);
        assert_eq!(Cap(0).with_ams(0b11).0, 0b11 << 17);
        assert_eq!(Cap(0).with_to(0xff).0, 0xff << 24);
        assert_eq!(Cap(0).with_dstrd(0xf).0, 0xf << 32);
        assert_eq!(Cap(0).with_nssrs(true).0, 1 << 36);
        assert_eq!(Cap(0).with_css(cap_css::NVM).0, 1 << 37);
        assert_eq!(Cap(0).with_css(cap_css::NO_IO).0, 1 << 44);
        assert_eq!(Cap(0).with_bps(true).0, 1 << 45);
        assert_eq!(Cap(0).with_mpsmin(0xf).0, 0xf << 48);
        assert_eq!(Cap(0).with_mpsmax(0xf).0, 0xf << 52);
        assert_eq!(Cap(0).with_pmrs(true).0, 1 << 56);
        assert_eq!(Cap(0).with_cmbs(true).0, 1 << 57);
        // Values do not spill into neighbouring fields.
        assert_eq!(Cap(0).with_dstrd(0xff).0, 0xf << 32);

        // A QEMU-like CAP: MQES 2047, CQR, TO 15, DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4.
        let raw = 0x0040_0020_0f01_07ffu64;
        let cap = Cap(raw);
        assert_eq!(cap.mqes(), 0x7ff);
        assert_eq!(cap.max_queue_entries(), 2048);
        assert!(cap.cqr());
        assert_eq!(cap.to(), 0x0f);
        assert_eq!(cap.timeout_ms(), 7500);
        assert_eq!(cap.dstrd(), 0);
        assert_eq!(cap.css(), cap_css::NVM);
        assert_eq!(cap.mpsmin(), 0);
        assert_eq!(cap.mpsmax(), 4);
        assert_eq!(cap.min_page_size(), 4096);
        assert_eq!(Cap::new(0x7ff, 0x0f).with_mpsmax(4).0, raw);

        let mut c = cap;
        c.set_to(1);
        assert_eq!(c.to(), 1);
        assert_eq!(c.mqes(), 0x7ff);
    }

    #[test]
    fn cc_bit_positions() {
        assert_eq!(Cc(0).with_en(true).0, 1);
        assert_eq!(Cc(0).with_css(0b111).0, 0b111 << 4);
        assert_eq!(Cc(0).with_mps(0xf).0, 0xf << 7);
        assert_eq!(Cc(0).with_ams(0b111).0, 0b111 << 11);
        assert_eq!(Cc(0).with_shn(shn::NORMAL).0, 1 << 14);
        assert_eq!(Cc(0).with_shn(shn::ABRUPT).0, 2 << 14);
        assert_eq!(Cc(0).with_iosqes(6).0, 6 << 16);
        assert_eq!(Cc(0).with_iocqes(4).0, 4 << 20);
        assert_eq!(Cc(0).with_crime(true).0, 1 << 24);
        // Linux host: EN, IOSQES 6, IOCQES 4.
        assert_eq!(Cc::enabled_nvm().0, 0x0046_0001);
        let cc = Cc(0x0046_4001);
        assert!(cc.en());
        assert_eq!(cc.shn(), shn::NORMAL);
        assert_eq!(cc.iosqes(), 6);
        assert_eq!(cc.iocqes(), 4);
        assert_eq!(cc.page_size(), 4096);
    }

    #[test]
    fn csts_bit_positions() {
        assert_eq!(Csts(0).with_rdy(true).0, 1);
        assert_eq!(Csts(0).with_cfs(true).0, 2);
        assert_eq!(Csts(0).with_shst(shst::COMPLETE).0, 0b1000);
        assert_eq!(Csts(0).with_shst(shst::OCCURRING).0, 0b0100);
        assert_eq!(Csts(0).with_nssro(true).0, 1 << 4);
        assert_eq!(Csts(0).with_pp(true).0, 1 << 5);
        assert_eq!(Csts(0).with_st(true).0, 1 << 6);
        let c = Csts(0b1001);
        assert!(c.rdy());
        assert!(!c.cfs());
        assert_eq!(c.shst(), shst::COMPLETE);
    }

    #[test]
    fn aqa_and_vs() {
        assert_eq!(Aqa::new(32, 32).0, 0x001f_001f);
        assert_eq!(Aqa(0).with_acqs(0xfff).0, 0x0fff_0000);
        assert_eq!(Aqa(0x001f_003f).asqs(), 0x3f);
        assert_eq!(Vs::V1_3.0, 0x0001_0300);
        assert_eq!(Vs::V1_4.0, 0x0001_0400);
        assert_eq!(Vs::V2_0.0, 0x0002_0000);
        let v = Vs(0x0001_0402);
        assert_eq!((v.major(), v.minor(), v.tertiary()), (1, 4, 2));
        assert_eq!(v.to_string(), "1.4.2");
        assert!(Vs::V1_3 < Vs::V2_0);
    }

    #[test]
    fn doorbells() {
        assert_eq!(doorbell_offset(0, false, 0), 0x1000);
        assert_eq!(doorbell_offset(0, true, 0), 0x1004);
        assert_eq!(doorbell_offset(1, false, 0), 0x1008);
        assert_eq!(doorbell_offset(1, true, 0), 0x100c);
        assert_eq!(doorbell_offset(1, true, 2), 0x1000 + 3 * 16);
        assert_eq!(doorbell_offset(3, false, 1), 0x1000 + 6 * 8);
        assert_eq!(Cap(0).with_dstrd(2).doorbell_stride(), 16);
    }
}

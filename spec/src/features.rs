//! Get/Set Features (NVMe Base 2.0 sections 5.15 and 5.27): feature identifiers (Figure 317),
//! command fields, Number of Queues (Figure 322), Asynchronous Event Configuration (Figure 327)
//! and the Asynchronous Event Request completion (section 5.2, Figures 150-155).

/// Feature Identifiers (FID, Base 2.0 Figure 317).
pub mod fid {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MGMT: u8 = 0x02;
    pub const LBA_RANGE_TYPE: u8 = 0x03;
    pub const TEMP_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const INTERRUPT_VECTOR_CONFIG: u8 = 0x09;
    pub const WRITE_ATOMICITY: u8 = 0x0a;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
    pub const AUTONOMOUS_POWER_STATE: u8 = 0x0c;
    pub const HOST_MEMORY_BUFFER: u8 = 0x0d;
    pub const TIMESTAMP: u8 = 0x0e;
    pub const KEEP_ALIVE_TIMER: u8 = 0x0f;
    pub const HOST_CONTROLLED_THERMAL_MGMT: u8 = 0x10;
    pub const NON_OPERATIONAL_POWER_STATE: u8 = 0x11;
    pub const HOST_BEHAVIOR_SUPPORT: u8 = 0x16;
    pub const SANITIZE_CONFIG: u8 = 0x17;
    pub const SOFTWARE_PROGRESS_MARKER: u8 = 0x80;
    pub const HOST_IDENTIFIER: u8 = 0x81;
    pub const RESERVATION_NOTIFICATION_MASK: u8 = 0x82;
    pub const RESERVATION_PERSISTENCE: u8 = 0x83;
    pub const NS_WRITE_PROTECTION_CONFIG: u8 = 0x84;
}

/// Select values of Get Features CDW10 bits 10:8 (SEL, Base 2.0 Figure 313).
pub mod sel {
    pub const CURRENT: u8 = 0b000;
    pub const DEFAULT: u8 = 0b001;
    pub const SAVED: u8 = 0b010;
    pub const SUPPORTED_CAPABILITIES: u8 = 0b011;
}

/// Feature Identifier from Get/Set Features CDW10 (bits 7:0).
pub const fn cdw10_fid(cdw10: u32) -> u8 {
    cdw10 as u8
}

/// Select (SEL) from Get Features CDW10 (bits 10:8).
pub const fn cdw10_sel(cdw10: u32) -> u8 {
    ((cdw10 >> 8) & 0x7) as u8
}

/// Save (SV) from Set Features CDW10 (bit 31).
pub const fn cdw10_save(cdw10: u32) -> bool {
    cdw10 & (1 << 31) != 0
}

/// Number of Queues (FID 0x07; Base 2.0 Figure 322): Set Features CDW11 and the completion DW0
/// share the layout, both counts 0's based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumberOfQueues {
    /// Number of I/O Submission Queues (bits 15:0: NSQR requested / NSQA allocated), 1's based.
    pub sq: u32,
    /// Number of I/O Completion Queues (bits 31:16: NCQR requested / NCQA allocated), 1's based.
    pub cq: u32,
}

impl NumberOfQueues {
    /// Decode CDW11 (request) or completion DW0 (allocation).
    pub const fn from_dw(dw: u32) -> Self {
        NumberOfQueues { sq: (dw & 0xffff) + 1, cq: (dw >> 16) + 1 }
    }
    /// Encode, clamping each count to 1..=65535 (0xFFFF is not a valid 0's based request).
    pub fn to_dw(&self) -> u32 {
        let sq = self.sq.clamp(1, 0xffff) - 1;
        let cq = self.cq.clamp(1, 0xffff) - 1;
        sq | cq << 16
    }
}

/// Asynchronous Event Configuration bits (FID 0x0B; Base 2.0 Figure 327, NVMe-oF discovery bit).
pub mod async_event_config {
    /// SMART / Health Critical Warnings (bits 7:0, same bits as the SMART critical warning).
    pub const SMART_MASK: u32 = 0xff;
    /// Namespace Attribute Notices (bit 8).
    pub const NS_ATTR_NOTICES: u32 = 1 << 8;
    /// Firmware Activation Notices (bit 9).
    pub const FW_ACTIVATION_NOTICES: u32 = 1 << 9;
    /// Telemetry Log Notices (bit 10).
    pub const TELEMETRY_LOG_NOTICES: u32 = 1 << 10;
    /// Asymmetric Namespace Access Change Notices (bit 11).
    pub const ANA_CHANGE_NOTICES: u32 = 1 << 11;
    /// Predictable Latency Event Aggregate Log Change Notices (bit 12).
    pub const PLEA_NOTICES: u32 = 1 << 12;
    /// LBA Status Information Notices (bit 13).
    pub const LBA_STATUS_NOTICES: u32 = 1 << 13;
    /// Endurance Group Event Aggregate Log Change Notices (bit 14).
    pub const EGEA_NOTICES: u32 = 1 << 14;
    /// Normal NVM Subsystem Shutdown Notices (bit 15).
    pub const NORMAL_SUBSYSTEM_SHUTDOWN_NOTICES: u32 = 1 << 15;
    /// Discovery Log Page Change Notices (bit 31, discovery controllers).
    pub const DISCOVERY_LOG_CHANGE_NOTICES: u32 = 1 << 31;
}

/// Asynchronous Event Types (Base 2.0 Figure 151, completion DW0 bits 2:0).
pub mod async_event_type {
    pub const ERROR: u8 = 0;
    pub const SMART: u8 = 1;
    pub const NOTICE: u8 = 2;
    pub const IMMEDIATE: u8 = 3;
    pub const IO_COMMAND_SET: u8 = 6;
    pub const VENDOR: u8 = 7;
}

/// Asynchronous Event Information for [`async_event_type::NOTICE`] (Base 2.0 Figure 154).
pub mod async_event_notice {
    /// Namespace Attribute Changed: read the Changed Namespace List (LID 0x04).
    pub const NS_ATTR_CHANGED: u8 = 0x00;
    /// Firmware Activation Starting (LID 0x03).
    pub const FW_ACTIVATION_STARTING: u8 = 0x01;
    /// Telemetry Log Changed (LID 0x08).
    pub const TELEMETRY_LOG_CHANGED: u8 = 0x02;
    /// Asymmetric Namespace Access Change (LID 0x0C).
    pub const ANA_CHANGE: u8 = 0x03;
    /// Predictable Latency Event Aggregate Log Change.
    pub const PLEA_CHANGE: u8 = 0x04;
    /// LBA Status Information Alert.
    pub const LBA_STATUS_ALERT: u8 = 0x05;
    /// Endurance Group Event Aggregate Log Page Change.
    pub const EGEA_CHANGE: u8 = 0x06;
    /// Normal NVM Subsystem Shutdown.
    pub const NORMAL_SUBSYSTEM_SHUTDOWN: u8 = 0x07;
    /// Discovery Log Page Change (NVMe-oF, LID 0x70).
    pub const DISCOVERY_LOG_CHANGE: u8 = 0xF0;
}

/// An Asynchronous Event Request completion DW0 (Base 2.0 Figure 151): event type bits 2:0,
/// event information bits 15:8, log page identifier bits 23:16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsyncEvent {
    /// Asynchronous Event Type, see [`async_event_type`].
    pub event_type: u8,
    /// Asynchronous Event Information, e.g. [`async_event_notice`].
    pub info: u8,
    /// Log page the host reads to clear the event.
    pub log_page: u8,
}

impl AsyncEvent {
    pub const fn new(event_type: u8, info: u8, log_page: u8) -> Self {
        AsyncEvent { event_type, info, log_page }
    }
    /// Namespace attribute changed notice; the host reads the Changed Namespace List.
    pub const fn ns_attr_changed() -> Self {
        Self::new(async_event_type::NOTICE, async_event_notice::NS_ATTR_CHANGED, super::log_page::lid::CHANGED_NS_LIST)
    }
    /// Discovery log page change notice (discovery controllers).
    pub const fn discovery_log_changed() -> Self {
        Self::new(async_event_type::NOTICE, async_event_notice::DISCOVERY_LOG_CHANGE, super::log_page::lid::DISCOVERY)
    }
    /// Completion DW0.
    pub const fn to_dw0(&self) -> u32 {
        async_event_dw0(self.event_type, self.info, self.log_page)
    }
    /// Decode completion DW0.
    pub const fn from_dw0(dw0: u32) -> Self {
        AsyncEvent { event_type: (dw0 & 0x7) as u8, info: (dw0 >> 8) as u8, log_page: (dw0 >> 16) as u8 }
    }
}

/// Asynchronous Event Request completion DW0 from its parts (Base 2.0 Figure 151).
pub const fn async_event_dw0(event_type: u8, info: u8, log_page: u8) -> u32 {
    (event_type as u32 & 0x7) | (info as u32) << 8 | (log_page as u32) << 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_event_dw0_layout() {
        // Linux: NVME_AER_NOTICE_NS_CHANGED = 0x0002, log page 0x04 -> 0x0004_0002.
        assert_eq!(AsyncEvent::ns_attr_changed().to_dw0(), 0x0004_0002);
        assert_eq!(AsyncEvent::discovery_log_changed().to_dw0(), 0x0070_f002);
        assert_eq!(async_event_dw0(async_event_type::SMART, 0x01, 0x02), 0x0002_0101);
        assert_eq!(AsyncEvent::from_dw0(0x0070_f002), AsyncEvent::discovery_log_changed());
        // The type is three bits.
        assert_eq!(async_event_dw0(0xff, 0, 0), 7);
    }

    #[test]
    fn feature_fields() {
        assert_eq!(fid::NUMBER_OF_QUEUES, 0x07);
        assert_eq!(fid::KEEP_ALIVE_TIMER, 0x0f);
        assert_eq!(fid::HOST_IDENTIFIER, 0x81);
        assert_eq!(cdw10_fid(0x8000_0007), fid::NUMBER_OF_QUEUES);
        assert!(cdw10_save(0x8000_0007));
        assert_eq!(cdw10_sel(0x0000_0306), sel::SUPPORTED_CAPABILITIES);
        let q = NumberOfQueues::from_dw(0x0003_0007);
        assert_eq!((q.sq, q.cq), (8, 4));
        assert_eq!(q.to_dw(), 0x0003_0007);
        assert_eq!(NumberOfQueues { sq: 0, cq: 1 << 20 }.to_dw(), 0xfffe_0000);
        assert_eq!(async_event_config::NS_ATTR_NOTICES, 0x100);
        assert_eq!(async_event_config::DISCOVERY_LOG_CHANGE_NOTICES, 0x8000_0000);
    }
}

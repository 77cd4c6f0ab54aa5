//! Persist Through Power Loss: a namespace's registrants and reservation in a JSON file, the
//! format SPDK's target writes for `nvmf_subsystem_add_ns --ptpl-file` (so a file moves between
//! the two targets):
//!
//! `{"ptpl": true, "rtype": 1, "crkey": 10, "bdev_uuid": "…", "holder_uuid": "…",
//!   "registrants": [{"rkey": 10, "host_uuid": "…"}]}`
//!
//! With PTPL off the file is empty (as SPDK leaves it). Each write goes to a temporary file
//! beside it, is fsynced, renamed over it and the directory fsynced, so a crash leaves the old
//! or the new state, never a torn one. Writes run as deferred work (off the poll group), and
//! a write older than the last one written is dropped, so two commands racing from two poll
//! groups cannot leave the older state on disk.

use super::{HostId, Registrant, ReservationState, MAX_REGISTRANTS};
use crate::spec::reservation::ReservationType;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Serialize, Deserialize, Default)]
struct FileRegistrant {
    rkey: u64,
    host_uuid: String,
}

#[derive(Serialize, Deserialize, Default)]
struct FileState {
    #[serde(default)]
    ptpl: bool,
    #[serde(default)]
    rtype: u32,
    #[serde(default)]
    crkey: u64,
    bdev_uuid: String,
    #[serde(default)]
    holder_uuid: String,
    registrants: Vec<FileRegistrant>,
}

/// Errors loading a PTPL file.
#[derive(Debug, thiserror::Error)]
pub enum PtplError {
    #[error("PTPL file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("PTPL file {0}: {1}")]
    Format(PathBuf, String),
}

/// A namespace's PTPL file.
#[derive(Debug)]
pub struct PtplFile {
    path: PathBuf,
    /// The namespace UUID the file belongs to (SPDK's `bdev_uuid`).
    ns_uuid: [u8; 16],
    /// Sequence number of the newest state written.
    written: Mutex<u64>,
}

/// Lower-case 8-4-4-4-12 UUID text of 16 bytes in order (SPDK's `spdk_uuid_fmt_lower`).
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The bytes of UUID text (hyphens optional).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

impl PtplFile {
    pub fn new(path: impl Into<PathBuf>, ns_uuid: [u8; 16]) -> Self {
        PtplFile { path: path.into(), ns_uuid, written: Mutex::new(0) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state in the file: default when it does not exist, is empty or has PTPL off.
    pub fn load(&self) -> Result<ReservationState, PtplError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReservationState::default()),
            Err(e) => return Err(PtplError::Io(self.path.clone(), e)),
        };
        if text.trim().is_empty() {
            return Ok(ReservationState::default());
        }
        let bad = |m: String| PtplError::Format(self.path.clone(), m);
        let f: FileState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !f.ptpl {
            return Ok(ReservationState::default());
        }
        if f.registrants.len() > MAX_REGISTRANTS {
            return Err(bad(format!("{} registrants, at most {MAX_REGISTRANTS}", f.registrants.len())));
        }
        if parse_uuid(&f.bdev_uuid) != Some(self.ns_uuid) {
            return Err(bad(format!("bdev_uuid {} is not the namespace's {}", f.bdev_uuid, uuid_text(&self.ns_uuid))));
        }
        let mut st = ReservationState { ptpl_activated: true, ..Default::default() };
        for r in &f.registrants {
            let hostid = parse_uuid(&r.host_uuid).ok_or_else(|| bad(format!("host_uuid {}", r.host_uuid)))?;
            if r.rkey == 0 || st.registrants.iter().any(|x| x.hostid == hostid) {
                return Err(bad(format!("registrant {} with key {}", r.host_uuid, r.rkey)));
            }
            st.registrants.push(Registrant { hostid, rkey: r.rkey, hostnqn: 0 });
        }
        if f.rtype != 0 {
            let t = u8::try_from(f.rtype).ok().and_then(ReservationType::from_u8);
            let t = t.ok_or_else(|| bad(format!("rtype {}", f.rtype)))?;
            let holder: Option<HostId> = if t.all_registrants() {
                st.registrants.first().map(|r| r.hostid)
            } else {
                parse_uuid(&f.holder_uuid)
                    .filter(|h| st.registrants.iter().any(|r| &r.hostid == h && r.rkey == f.crkey))
            };
            let holder = holder.ok_or_else(|| bad("the holder is not a registrant with key crkey".into()))?;
            st.reservation = Some((t, holder));
        }
        Ok(st)
    }

    /// The file's contents for `st` (empty with PTPL off).
    pub fn render(&self, st: &ReservationState) -> Vec<u8> {
        if !st.ptpl_activated {
            return Vec::new();
        }
        let f = FileState {
            ptpl: true,
            rtype: st.reservation.map_or(0, |(t, _)| t as u32),
            crkey: st.holder_key(),
            bdev_uuid: uuid_text(&self.ns_uuid),
            holder_uuid: st.reservation.map(|(_, h)| uuid_text(&h)).unwrap_or_default(),
            registrants: st
                .registrants
                .iter()
                .map(|r| FileRegistrant { rkey: r.rkey, host_uuid: uuid_text(&r.hostid) })
                .collect(),
        };
        serde_json::to_vec_pretty(&f).unwrap_or_default()
    }

    /// Write `contents` (state number `seq`) durably, unless a newer state was written already.
    pub fn store(&self, seq: u64, contents: &[u8]) -> std::io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if seq <= *written {
            return Ok(());
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
        *written = seq;
        Ok(())
    }
}

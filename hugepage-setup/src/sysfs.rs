//! File access under a root directory: every absolute path (`/sys/...`, `/proc/...`, `/dev/...`)
//! is resolved below [`Sysfs::root`], so a fake tree in a temporary directory can stand in for
//! the real system.

use crate::{Error, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file system the commands look at and write to.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is the real `/`.
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `abs` (an absolute path such as `/sys/bus/pci`) below the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        let rel = abs.strip_prefix("/").unwrap_or(abs);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Contents of a file.
    pub fn read(&self, abs: impl AsRef<Path>) -> Result<String> {
        let p = self.path(abs);
        fs::read_to_string(&p).map_err(|source| Error::Io { path: p, source })
    }

    /// Contents of a file with surrounding whitespace removed; `None` when it does not exist.
    pub fn read_opt(&self, abs: impl AsRef<Path>) -> Result<Option<String>> {
        let p = self.path(abs);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path: p, source }),
        }
    }

    /// A file holding one unsigned number.
    pub fn read_u64(&self, abs: impl AsRef<Path>) -> Result<u64> {
        let abs = abs.as_ref();
        let s = self.read(abs)?;
        s.trim().parse().map_err(|_| Error::Parse { path: self.path(abs), what: "a number", content: s })
    }

    /// Like [`Sysfs::read_u64`], `None` when the file does not exist.
    pub fn read_u64_opt(&self, abs: impl AsRef<Path>) -> Result<Option<u64>> {
        let abs = abs.as_ref();
        match self.read_opt(abs)? {
            None => Ok(None),
            Some(s) => {
                s.parse().map(Some).map_err(|_| Error::Parse { path: self.path(abs), what: "a number", content: s })
            }
        }
    }

    /// Write `value` to an existing file (sysfs attributes are never created by writing).
    pub fn write(&self, abs: impl AsRef<Path>, value: &str) -> Result<()> {
        let p = self.path(abs);
        let r =
            fs::OpenOptions::new().write(true).truncate(true).open(&p).and_then(|mut f| f.write_all(value.as_bytes()));
        r.map_err(|source| Error::Io { path: p, source })
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        // symlink_metadata: a link counts even when its target is not part of a fake tree.
        fs::symlink_metadata(self.path(abs)).is_ok()
    }

    pub fn is_dir(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).is_dir()
    }

    /// Names of the entries of a directory, sorted; empty when it does not exist.
    pub fn list(&self, abs: impl AsRef<Path>) -> Result<Vec<String>> {
        let p = self.path(abs);
        let rd = match fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { path: p, source }),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|source| Error::Io { path: p.clone(), source })?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Last component of a symlink's target (`driver` -> `nvme`, `iommu_group` -> `12`);
    /// `None` when there is no such link.
    pub fn link_name(&self, abs: impl AsRef<Path>) -> Result<Option<String>> {
        let p = self.path(abs);
        match fs::read_link(&p) {
            Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput) => Ok(None),
            Err(source) => Err(Error::Io { path: p, source }),
        }
    }

    pub fn create_dir_all(&self, abs: impl AsRef<Path>) -> Result<()> {
        let p = self.path(abs);
        fs::create_dir_all(&p).map_err(|source| Error::Io { path: p, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTree;

    #[test]
    fn paths_hang_off_the_root() {
        let s = Sysfs::new("/tmp/x");
        assert_eq!(s.path("/sys/bus/pci"), Path::new("/tmp/x/sys/bus/pci"));
        assert_eq!(s.path("/"), Path::new("/tmp/x"));
        assert!(!s.is_real_root());
        assert!(Sysfs::new("/").is_real_root());
        assert_eq!(Sysfs::new("/").path("/proc/mounts"), Path::new("/proc/mounts"));
    }

    #[test]
    fn read_write_list_links() {
        let t = FakeTree::new();
        t.file("/sys/a/value", "42\n");
        t.file("/sys/a/text", "  hello \n");
        t.symlink("/sys/a/driver", "../../bus/pci/drivers/nvme");
        let s = t.sysfs();
        assert_eq!(s.read_u64("/sys/a/value").unwrap(), 42);
        assert_eq!(s.read_opt("/sys/a/text").unwrap().as_deref(), Some("hello"));
        assert_eq!(s.read_opt("/sys/a/missing").unwrap(), None);
        assert_eq!(s.read_u64_opt("/sys/a/missing").unwrap(), None);
        assert!(matches!(s.read_u64("/sys/a/text"), Err(Error::Parse { .. })));
        assert_eq!(s.link_name("/sys/a/driver").unwrap().as_deref(), Some("nvme"));
        assert_eq!(s.link_name("/sys/a/none").unwrap(), None);
        // A regular file is not a link.
        assert_eq!(s.link_name("/sys/a/value").unwrap(), None);
        assert!(s.exists("/sys/a/driver"));
        assert_eq!(s.list("/sys/a").unwrap(), vec!["driver", "text", "value"]);
        assert!(s.list("/sys/nothing").unwrap().is_empty());

        s.write("/sys/a/value", "7").unwrap();
        assert_eq!(t.read("/sys/a/value"), "7");
        // Writing never creates a file.
        assert!(matches!(s.write("/sys/a/new", "1"), Err(Error::Io { .. })));
        assert!(!s.exists("/sys/a/new"));
    }
}

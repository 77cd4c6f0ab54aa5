//! The RAM disk behind an emulated namespace.

/// A namespace's blocks in memory.
pub struct RamDisk {
    pub block_size: u32,
    pub blocks: u64,
    data: Vec<u8>,
}

impl RamDisk {
    pub fn new(block_size: u32, blocks: u64) -> Self {
        RamDisk { block_size, blocks, data: vec![0; (block_size as u64 * blocks) as usize] }
    }
    /// Whether `nlb` blocks at `slba` lie inside the namespace.
    pub fn in_range(&self, slba: u64, nlb: u64) -> bool {
        slba.checked_add(nlb).is_some_and(|end| end <= self.blocks)
    }
    fn span(&self, slba: u64, nlb: u64) -> std::ops::Range<usize> {
        let bs = self.block_size as usize;
        slba as usize * bs..(slba + nlb) as usize * bs
    }
    pub fn blocks_mut(&mut self, slba: u64, nlb: u64) -> &mut [u8] {
        let r = self.span(slba, nlb);
        &mut self.data[r]
    }
    pub fn blocks(&self, slba: u64, nlb: u64) -> &[u8] {
        &self.data[self.span(slba, nlb)]
    }
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some(end) = (offset as usize).checked_add(buf.len()).filter(|&e| e <= self.data.len()) else {
            return false;
        };
        buf.copy_from_slice(&self.data[offset as usize..end]);
        true
    }
}

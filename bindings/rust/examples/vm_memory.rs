//! What a rust-vmm user does with `vm_memory::GuestMemoryMmap`, on
//! gmtrack's `Space`: guest RAM in real mmap'd host memory, guest addresses
//! translated to host slices, guest memory read and written through the
//! translation (a write that crosses two regions is split, as
//! `GuestMemory::write_slice` does), and a dirty bitmap collected through
//! harvest while a vCPU thread writes (a live-migration round).
//!
//!     GMTRACK_LIB_DIR=../../build/release cargo run --offline --example vm_memory
//!
//! Checks everything it prints; exits non-zero on a mismatch.
use gmtrack::{GfnCache, RcuThread, ReadGuard, SlotFlags, Space, PAGE_SHIFT, PAGE_SIZE};
use std::collections::BTreeSet;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

// mmap without the libc crate (std links libc anyway). Linux values,
// the same on x86_64 and aarch64.
extern "C" {
    fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
}
const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_PRIVATE: c_int = 0x02;
const MAP_ANONYMOUS: c_int = 0x20;
const MAP_NORESERVE: c_int = 0x4000;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One region of guest RAM: `size` bytes at guest-physical `gpa`, backed
/// by an anonymous mapping (GuestRegionMmap).
struct Region {
    gpa: u64,
    size: u64,
    host: *mut u8,
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: mapped by GuestMemory::new with this size.
        unsafe { munmap(self.host as *mut c_void, self.size as usize) };
    }
}

/// GuestMemoryMmap on a gmtrack Space: the space translates, the regions
/// own the memory. Shared between the VMM thread and vCPU threads.
struct GuestMemory {
    space: Space,
    regions: Vec<Region>,
}

// SAFETY: the regions' memory is shared guest RAM, accessed with copies;
// the space is Sync.
unsafe impl Send for GuestMemory {}
unsafe impl Sync for GuestMemory {}

#[derive(Debug, PartialEq)]
enum MemError {
    InvalidGuestAddress(u64),
}

impl GuestMemory {
    /// Maps each (gpa, size) and registers it as a dirty-logged memslot.
    fn new(layout: &[(u64, u64)]) -> GuestMemory {
        let space = Space::new().expect("space");
        let mut regions = Vec::new();
        for (id, &(gpa, size)) in layout.iter().enumerate() {
            // SAFETY: a fresh anonymous private mapping.
            let host = unsafe {
                mmap(std::ptr::null_mut(), size as usize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            };
            assert!(host as isize != -1, "mmap of {size} bytes failed");
            space
                .slot_add(id as u32, gpa >> PAGE_SHIFT, size >> PAGE_SHIFT, host as u64, SlotFlags::DIRTY_LOG)
                .expect("slot_add");
            regions.push(Region { gpa, size, host: host as *mut u8 });
        }
        GuestMemory { space, regions }
    }

    /// The host address of `gpa` (GuestMemory::get_host_address).
    fn get_host_address(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, gpa: u64) -> Option<*mut u8> {
        self.space.gpa_to_hva(g, cache, gpa).map(|h| h as *mut u8)
    }

    /// The host bytes of `[gpa, gpa + len)` if they lie in one region
    /// (GuestMemory::get_slice), as a raw slice valid for the read section
    /// and the memory's lifetime.
    fn get_slice(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, gpa: u64, len: u64) -> Option<(*mut u8, usize)> {
        let slot = self.space.gfn_to_slot(g, cache, gpa >> PAGE_SHIFT)?;
        let end = gpa.checked_add(len)?;
        if len == 0 || end - 1 > (slot.last_gfn() << PAGE_SHIFT) | (PAGE_SIZE - 1) {
            return None;
        }
        let hva = slot.gfn_to_hva(gpa >> PAGE_SHIFT)? + (gpa & (PAGE_SIZE - 1));
        Some((hva as *mut u8, len as usize))
    }

    /// Copies `buf` to guest memory at `gpa`, region by region, marking
    /// every page written dirty (GuestMemory::write_slice with a bitmap).
    fn write_slice(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, buf: &[u8], gpa: u64) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = gpa + done as u64;
            let slot = self.space.gfn_to_slot(g, cache, at >> PAGE_SHIFT).ok_or(MemError::InvalidGuestAddress(at))?;
            let slot_end = (slot.last_gfn() + 1) << PAGE_SHIFT; // first gpa past the slot
            let n = (buf.len() - done).min((slot_end - at) as usize);
            let hva = slot.gfn_to_hva(at >> PAGE_SHIFT).unwrap() + (at & (PAGE_SIZE - 1));
            // SAFETY: [hva, hva + n) lies in the slot's mapping.
            unsafe { std::ptr::copy_nonoverlapping(buf[done..].as_ptr(), hva as *mut u8, n) };
            for gfn in at >> PAGE_SHIFT..=(at + n as u64 - 1) >> PAGE_SHIFT {
                slot.mark_dirty(gfn).expect("dirty log");
            }
            done += n;
        }
        Ok(())
    }

    /// Copies guest memory at `gpa` into `buf` (GuestMemory::read_slice).
    fn read_slice(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, buf: &mut [u8], gpa: u64) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = gpa + done as u64;
            let slot = self.space.gfn_to_slot(g, cache, at >> PAGE_SHIFT).ok_or(MemError::InvalidGuestAddress(at))?;
            let slot_end = (slot.last_gfn() + 1) << PAGE_SHIFT;
            let n = (buf.len() - done).min((slot_end - at) as usize);
            let hva = slot.gfn_to_hva(at >> PAGE_SHIFT).unwrap() + (at & (PAGE_SIZE - 1));
            // SAFETY: as write_slice.
            unsafe { std::ptr::copy_nonoverlapping(hva as *const u8, buf[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }

    fn write_obj<T: Copy>(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, val: T, gpa: u64) -> Result<(), MemError> {
        // SAFETY: T is Copy plain data viewed as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(&val as *const T as *const u8, std::mem::size_of::<T>()) };
        self.write_slice(g, cache, bytes, gpa)
    }

    fn read_obj<T: Copy + Default>(&self, g: &ReadGuard<'_>, cache: &mut GfnCache, gpa: u64) -> Result<T, MemError> {
        let mut val = T::default();
        // SAFETY: as write_obj; every bit pattern of the integer types used is valid.
        let bytes = unsafe { std::slice::from_raw_parts_mut(&mut val as *mut T as *mut u8, std::mem::size_of::<T>()) };
        self.read_slice(g, cache, bytes, gpa)?;
        Ok(val)
    }

    /// One migration round: every region's dirty bitmap (bit i = page i of
    /// the region), harvested and cleared.
    fn dirty_bitmaps(&self, g: &ReadGuard<'_>) -> Vec<Vec<u64>> {
        (0..self.regions.len() as u32)
            .map(|id| self.space.id_to_slot(g, id).unwrap().harvest_dirty_bitmap().unwrap())
            .collect()
    }
}

fn main() {
    let rcu = RcuThread::register();
    // An x86-like layout: 512 MiB below the PCI hole as two regions (so a
    // write can cross from one mapping into the next), 256 MiB above 4 GiB.
    let mem = Arc::new(GuestMemory::new(&[(0, 256 * MIB), (256 * MIB, 256 * MIB), (4 * GIB, 256 * MIB)]));
    let mut cache = GfnCache::new();
    let mut failures = 0;
    macro_rules! expect {
        ($c:expr) => {
            if !$c {
                eprintln!("FAILED: {}", stringify!($c));
                failures += 1;
            }
        };
    }

    {
        let g = rcu.read();
        // address translation: gpa -> host address -> the region's mapping
        for (i, r) in mem.regions.iter().enumerate() {
            let gpa = r.gpa + 0x1234;
            let host = mem.get_host_address(&g, &mut cache, gpa).unwrap();
            println!("gpa {gpa:#011x} -> hva {host:p} (region {i}, mapped at {:p})", r.host);
            expect!(host == r.host.wrapping_add(0x1234));
        }
        expect!(mem.get_host_address(&g, &mut cache, 3 * GIB).is_none()); // the hole
        expect!(mem.get_slice(&g, &mut cache, 256 * MIB - 8, 16).is_none()); // crosses regions
        let (p, n) = mem.get_slice(&g, &mut cache, 0x10_0000, 4096).unwrap();
        // SAFETY: the slice lies in region 0.
        unsafe { std::slice::from_raw_parts_mut(p, n) }.fill(0x5a);
        // a write through a raw host slice bypasses the dirty log: mark it
        mem.space.gfn_to_slot(&g, &mut cache, 0x10_0000 >> PAGE_SHIFT).unwrap().mark_dirty(0x100).unwrap();
        expect!(mem.read_obj::<u64>(&g, &mut cache, 0x10_0000 + 8).unwrap() == 0x5a5a_5a5a_5a5a_5a5a);

        // a "kernel image" written across the boundary of regions 0 and 1
        let image: Vec<u8> = (0..3 * MIB).map(|i| (i * 7 % 251) as u8).collect();
        let load = 256 * MIB - MIB;
        mem.write_slice(&g, &mut cache, &image, load).unwrap();
        let mut back = vec![0u8; image.len()];
        mem.read_slice(&g, &mut cache, &mut back, load).unwrap();
        expect!(back == image);
        // the bytes really are in the two mappings, split at the boundary
        // SAFETY: offsets inside the regions' mappings.
        unsafe {
            expect!(*mem.regions[0].host.add((256 * MIB - 1) as usize) == image[(MIB - 1) as usize]);
            expect!(*mem.regions[1].host == image[MIB as usize]);
        }
        mem.write_obj(&g, &mut cache, 0xdead_beef_u32, 4 * GIB + 0x100).unwrap();
        expect!(mem.read_obj::<u32>(&g, &mut cache, 4 * GIB + 0x100).unwrap() == 0xdead_beef);
        expect!(mem.write_obj(&g, &mut cache, 1u8, 3 * GIB) == Err(MemError::InvalidGuestAddress(3 * GIB)));
        println!("wrote and read back a {} MiB image across two regions at gpa {load:#x}", image.len() as u64 / MIB);
    }

    // Migration: round 0 takes what the loads above dirtied; then a vCPU
    // thread writes while the VMM harvests, as a pre-copy round would.
    let g = rcu.read();
    let round0 = mem.dirty_bitmaps(&g);
    let pages0: u64 = round0.iter().flatten().map(|w| w.count_ones() as u64).sum();
    drop(g);
    expect!(pages0 == 1 + 768 + 1); // one page, the image's 768, one u32
    println!("round 0: {pages0} dirty pages");

    let vcpu = {
        let mem = mem.clone();
        std::thread::spawn(move || {
            let rcu = RcuThread::register();
            let mut cache = GfnCache::new();
            let mut written = BTreeSet::new();
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for i in 0..20000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let r = &mem.regions[(x % 3) as usize];
                let gpa = r.gpa + (((x >> 8) % r.size) & !7);
                let g = rcu.read();
                mem.write_obj(&g, &mut cache, i, gpa).unwrap();
                written.insert(gpa >> PAGE_SHIFT);
            }
            written
        })
    };
    let mut harvested = BTreeSet::new();
    let mut rounds = 0;
    loop {
        let finished = vcpu.is_finished();
        let g = rcu.read();
        for (r, bits) in mem.regions.iter().zip(mem.dirty_bitmaps(&g)) {
            for (w, &word) in bits.iter().enumerate() {
                let mut word = word;
                while word != 0 {
                    harvested.insert((r.gpa >> PAGE_SHIFT) + w as u64 * 64 + word.trailing_zeros() as u64);
                    word &= word - 1;
                }
            }
        }
        drop(g);
        rounds += 1;
        if finished {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let written = vcpu.join().unwrap();
    println!(
        "vCPU wrote {} distinct pages; {rounds} harvest rounds collected {} dirty pages",
        written.len(),
        harvested.len()
    );
    expect!(harvested == written); // nothing lost, nothing invented

    let st = mem.space.stats();
    println!(
        "space: {} slots, {} guest pages, {} bytes of metadata ({} in dirty logs), gmtrack {}",
        st.slots,
        st.guest_pages,
        st.bytes_total,
        st.bytes_dirty,
        gmtrack::version()
    );
    drop(rcu);
    if failures > 0 {
        eprintln!("vm_memory: {failures} checks failed");
        std::process::exit(1);
    }
    println!("vm_memory: all checks passed");
}

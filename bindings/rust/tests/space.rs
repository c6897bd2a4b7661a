//! Space end to end: slots and batches, gfn -> hva (cached and not) checked
//! against a model, a vCPU reader thread translating while the writer
//! hotplugs and moves slots, dirty marking and harvest, attributes, write
//! protection, I/O dispatch, errors.
mod common;
use common::{scale, Rng};
use gmtrack::{
    CountingAllocator, Error, GfnCache, IoKind, RcuThread, SlotFlags, Space, SpaceConfig, PAGE_SHIFT,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const GIB: u64 = 1 << 18; // frames
const RAM: u64 = 0x7f00_0000_0000;

#[test]
fn slots_batches_and_translation() {
    let rcu = RcuThread::register();
    let counting = CountingAllocator::new();
    let s = Space::with_config(SpaceConfig { allocator: Some(counting.clone()), ..Default::default() }).unwrap();
    s.slot_add(0, 0, 2 * GIB, RAM, SlotFlags::NONE).unwrap();
    s.slot_add(1, 4 * GIB, GIB, RAM + ((2 * GIB) << PAGE_SHIFT), SlotFlags::DIRTY_LOG).unwrap();
    assert_eq!(s.slot_count(), 2);
    let gen0 = s.generation();

    // errors leave the layout alone
    assert_eq!(s.slot_add(2, GIB, 16, 0x1000_0000, SlotFlags::NONE), Err(Error::Exists), "overlap");
    assert_eq!(s.slot_add(0, 8 * GIB, 16, 0x1000_0000, SlotFlags::NONE), Err(Error::Exists), "id in use");
    assert_eq!(s.slot_add(2, 8 * GIB, 0, 0x1000_0000, SlotFlags::NONE), Err(Error::Invalid), "npages 0");
    assert_eq!(s.slot_add(2, 8 * GIB, 16, 0x1000_0001, SlotFlags::NONE), Err(Error::Invalid), "unaligned hva");
    assert_eq!(s.slot_remove(9), Err(Error::NotFound));
    assert_eq!(s.generation(), gen0);

    let mut cache = GfnCache::new();
    {
        let g = rcu.read();
        for gfn in [0, 1, GIB, 2 * GIB - 1] {
            assert_eq!(s.gfn_to_hva(&g, &mut cache, gfn), Some(RAM + (gfn << PAGE_SHIFT)));
            assert_eq!(s.gfn_to_hva_uncached(&g, gfn), Some(RAM + (gfn << PAGE_SHIFT)));
        }
        assert_eq!(s.gfn_to_hva(&g, &mut cache, 2 * GIB), None, "the hole");
        assert_eq!(s.gpa_to_hva(&g, &mut cache, 0x1234), Some(RAM + 0x1234));
        let slot = s.gfn_to_slot(&g, &mut cache, 4 * GIB + 5).unwrap();
        assert_eq!((slot.id(), slot.base_gfn(), slot.npages()), (1, 4 * GIB, GIB));
        assert!(slot.flags().contains(SlotFlags::DIRTY_LOG));
        assert_eq!(slot.gfn_to_hva(4 * GIB + 5), Some(RAM + ((2 * GIB + 5) << PAGE_SHIFT)));
        assert_eq!(s.id_to_slot(&g, 0).unwrap().npages(), 2 * GIB);
        assert!(s.id_to_slot(&g, 7).is_none());
        // hva -> gfns: a range straddling both slots' host memory
        let hits = s.hva_to_gfns(&g, RAM + ((2 * GIB - 1) << PAGE_SHIFT)..=RAM + ((2 * GIB + 1) << PAGE_SHIFT)).unwrap();
        let got: Vec<(u32, u64, u64)> = hits.iter().map(|h| (h.slot.id(), h.first_gfn, h.last_gfn)).collect();
        assert_eq!(got, vec![(0, 2 * GIB - 1, 2 * GIB - 1), (1, 4 * GIB, 4 * GIB + 1)]);
    }

    // a batch: move RAM's top half and add a DIMM at once
    let mut b = s.batch();
    b.resize(0, GIB).unwrap();
    b.add(2, GIB, GIB, RAM + (GIB << PAGE_SHIFT), SlotFlags::NONE).unwrap();
    b.commit().unwrap();
    assert_eq!(s.generation(), gen0 + 1);
    assert_eq!(s.slot_count(), 3);
    // a failing batch changes nothing; a dropped one neither
    let mut b = s.batch();
    b.remove(2).unwrap();
    b.add(3, 0, 1, RAM, SlotFlags::NONE).unwrap(); // overlaps slot 0
    assert_eq!(b.commit(), Err(Error::Exists));
    {
        let mut b = s.batch();
        b.remove(0).unwrap();
    } // dropped: aborted
    assert_eq!(s.slot_count(), 3);
    assert_eq!(s.generation(), gen0 + 1);
    {
        let g = rcu.read();
        // the cache saw the old generation: it must not answer from it
        assert_eq!(s.gfn_to_slot(&g, &mut cache, GIB + 3).unwrap().id(), 2);
        assert_eq!(s.gfn_to_hva(&g, &mut cache, GIB + 3), Some(RAM + ((GIB + 3) << PAGE_SHIFT)));
    }
    // the same cache used with another space resets itself
    let other = Space::new().unwrap();
    other.slot_add(0, 0, 16, 0x4000_0000, SlotFlags::NONE).unwrap();
    {
        let g = rcu.read();
        assert_eq!(other.gfn_to_hva(&g, &mut cache, 3), Some(0x4000_3000));
        assert_eq!(s.gfn_to_hva(&g, &mut cache, 3), Some(RAM + 0x3000));
    }
    drop(other);
    s.validate().unwrap();
    let st = s.stats();
    assert_eq!(st.slots, 3);
    assert_eq!(st.guest_pages, 3 * GIB);
    drop(s);
    assert_eq!(counting.bytes(), 0, "bytes left after drop");
}

#[test]
fn dirty_marking_and_harvest() {
    let rcu = RcuThread::register();
    let s = Arc::new(Space::new().unwrap());
    let base = 0x10_0000;
    let n = 1 << 20; // 4 GiB slot
    s.slot_add(5, base, n, RAM, SlotFlags::DIRTY_LOG).unwrap();
    s.slot_add(6, 0, 256, RAM + (n << PAGE_SHIFT), SlotFlags::NONE).unwrap();
    let mut rng = Rng::new(7);
    let mut want = std::collections::BTreeSet::new();
    // two vCPU threads mark, plus the main thread
    let marks: Vec<u64> = (0..scale(5000)).map(|_| base + rng.below(n)).collect();
    let threads: Vec<_> = marks
        .chunks(marks.len().div_ceil(2))
        .map(|part| {
            let (s, part) = (s.clone(), part.to_vec());
            std::thread::spawn(move || {
                let rcu = RcuThread::register();
                let mut cache = GfnCache::new();
                for gfn in part {
                    let g = rcu.read();
                    let slot = s.gfn_to_slot(&g, &mut cache, gfn).unwrap();
                    slot.mark_dirty(gfn).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    want.extend(marks.iter().copied());
    let g = rcu.read();
    let slot = s.id_to_slot(&g, 5).unwrap();
    // import a KVM-style bitmap too: frames base+64*3+{0,5,63}
    let words = [0, 0, 0, (1 << 0) | (1 << 5) | (1 << 63)];
    assert_eq!(slot.mark_dirty_bitmap(base, &words).unwrap(), 3);
    want.extend([base + 192, base + 197, base + 255]);
    assert_eq!(slot.mark_dirty(base + n), Err(Error::NotFound), "outside the slot");
    assert_eq!(s.id_to_slot(&g, 6).unwrap().mark_dirty(3), Err(Error::NotFound), "slot not logging");
    assert_eq!(s.id_to_slot(&g, 6).unwrap().harvest_dirty(|_, _| {}), Err(Error::NotFound));

    let mut got = Vec::new();
    let mut last_end = 0;
    let total = slot
        .harvest_dirty(|first, count| {
            assert!(first >= last_end, "runs ascending and disjoint");
            last_end = first + count;
            got.extend(first..first + count);
        })
        .unwrap();
    assert_eq!(got, want.iter().copied().collect::<Vec<_>>());
    assert_eq!(total, want.len() as u64);
    assert_eq!(slot.harvest_dirty(|_, _| panic!("harvested twice")).unwrap(), 0, "harvest clears");
    // bitmap form
    slot.mark_dirty(base + 1).unwrap();
    slot.mark_dirty(base + 64).unwrap();
    let bits = slot.harvest_dirty_bitmap().unwrap();
    assert_eq!(bits.len() as u64, n / 64);
    assert_eq!((bits[0], bits[1]), (2, 1));
    assert!(bits[2..].iter().all(|&w| w == 0));
    // a panic in the closure comes back to the caller, after the harvest
    slot.mark_dirty(base + 9).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.harvest_dirty(|_, _| panic!("boom"))));
    assert!(r.is_err());
}

#[test]
fn attributes_protection_and_io() {
    let rcu = RcuThread::register();
    let s = Space::new().unwrap();
    s.attr_set(0..=(1 << 28) - 1, 1).unwrap();
    s.attr_set(0x1000..=0x1fff, 2).unwrap();
    s.protect(0x10..=0x1f).unwrap();
    s.protect(0x18..=0x18).unwrap();
    assert_eq!(s.unprotect(0x30..=0x30), Err(Error::Invalid), "not protected");
    {
        let g = rcu.read();
        assert_eq!(s.attr_get(&g, 0x1234), 2);
        assert_eq!(s.attr_get(&g, 0x2000), 1);
        assert!(s.attr_all(&g, 0x1000..=0x1fff, 2));
        assert!(!s.attr_all(&g, 0x0fff..=0x1fff, 2));
        assert_eq!(s.protect_count(&g, 0x18), 2);
        assert_eq!(s.protect_count(&g, 0x20), 0);
    }
    s.unprotect(0x10..=0x1f).unwrap();

    // a UART on PIO 0x3f8..0x3ff and a 4 KiB MMIO device
    let uart_writes = Arc::new(AtomicU64::new(0));
    let w = uart_writes.clone();
    s.io_add(IoKind::Pio, 0x3f8..=0x3ff, move |addr: u64, data: &mut [u8], is_write: bool| {
        if is_write {
            w.fetch_add(data[0] as u64, Ordering::Relaxed);
        } else {
            data[0] = (addr - 0x3f8) as u8; // register number
        }
    })
    .unwrap();
    s.io_add(IoKind::Mmio, 0xfee0_0000..=0xfee0_0fff, |_: u64, data: &mut [u8], _: bool| data.fill(0xab)).unwrap();
    assert_eq!(s.io_add(IoKind::Pio, 0x3fc..=0x400, |_: u64, _: &mut [u8], _: bool| {}).err(), Some(Error::Exists));
    #[allow(clippy::reversed_empty_ranges)]
    {
        assert_eq!(s.io_add(IoKind::Pio, 9..=8, |_: u64, _: &mut [u8], _: bool| {}).err(), Some(Error::Invalid));
    }
    {
        let g = rcu.read();
        let io = s.io_find(&g, IoKind::Pio, 0x3fd).unwrap();
        assert_eq!((io.first, io.last), (0x3f8, 0x3ff));
        let mut b = [0u8];
        io.dispatch(0x3fd, &mut b, false);
        assert_eq!(b[0], 5);
        io.dispatch(0x3f8, &mut [7], true);
        io.handler().access(0x3f8, &mut [3], true);
        assert_eq!(uart_writes.load(Ordering::Relaxed), 10);
        assert!(s.io_find(&g, IoKind::Mmio, 0x3fd).is_none(), "PIO and MMIO are apart");
        let mut d = [0u8; 4];
        s.io_find(&g, IoKind::Mmio, 0xfee0_0020).unwrap().dispatch(0xfee0_0020, &mut d, false);
        assert_eq!(d, [0xab; 4]);
        // removal inside a read section defers the handler's drop
        s.io_remove(IoKind::Mmio, 0xfee0_0000).unwrap();
        assert!(s.io_find(&g, IoKind::Mmio, 0xfee0_0020).is_none());
    }
    s.io_remove(IoKind::Pio, 0x3f8).unwrap();
    assert_eq!(s.io_remove(IoKind::Pio, 0x3f8), Err(Error::NotFound));
    s.validate().unwrap();
}

#[test]
fn vcpu_reader_while_the_writer_hotplugs() {
    // vCPU threads translate RAM (never changed) and a DIMM that the
    // writer plugs, moves and unplugs; RAM must always translate, the DIMM
    // either not at all or to its hva for the place it was at.
    let rcu = RcuThread::register();
    let s = Arc::new(Space::new().unwrap());
    s.slot_add(0, 0, 2 * GIB, RAM, SlotFlags::DIRTY_LOG).unwrap();
    let dimm_hva = RAM + ((8 * GIB) << PAGE_SHIFT);
    let stop = Arc::new(AtomicBool::new(false));
    let vcpus: Vec<_> = (0..2u64)
        .map(|id| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let rcu = RcuThread::register();
                let mut cache = GfnCache::new();
                let mut rng = Rng::new(100 + id);
                let (mut hits, mut n) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) || n < 20000 {
                    let g = rcu.read();
                    let gfn = rng.below(2 * GIB);
                    assert_eq!(s.gfn_to_hva(&g, &mut cache, gfn), Some(RAM + (gfn << PAGE_SHIFT)), "RAM gfn {gfn:#x}");
                    // the DIMM lives at 4 GiB or 6 GiB, 1 GiB long
                    let off = rng.below(GIB);
                    for base in [4 * GIB, 6 * GIB] {
                        if let Some(hva) = s.gfn_to_hva(&g, &mut cache, base + off) {
                            assert_eq!(hva, dimm_hva + (off << PAGE_SHIFT));
                            hits += 1;
                        }
                    }
                    if n % 64 == 0 {
                        let slot = s.gfn_to_slot(&g, &mut cache, gfn).unwrap();
                        slot.mark_dirty(gfn).unwrap();
                    }
                    n += 1;
                }
                (n, hits)
            })
        })
        .collect();
    for round in 0..scale(300) {
        s.slot_add(1, 4 * GIB, GIB, dimm_hva, SlotFlags::NONE).unwrap();
        s.slot_move(1, 6 * GIB).unwrap();
        if round % 2 == 0 {
            let mut b = s.batch();
            b.move_to(1, 4 * GIB).unwrap().set_flags(1, SlotFlags::DIRTY_LOG).unwrap();
            b.commit().unwrap();
        }
        s.slot_remove(1).unwrap();
    }
    s.slot_add(1, 4 * GIB, GIB, dimm_hva, SlotFlags::NONE).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let mut total_hits = 0;
    for v in vcpus {
        let (n, hits) = v.join().unwrap();
        assert!(n >= 20000);
        total_hits += hits;
    }
    assert!(total_hits > 0, "the readers never saw the DIMM");
    let g = rcu.read();
    let dirty = s.id_to_slot(&g, 0).unwrap().harvest_dirty(|_, _| {}).unwrap();
    assert!(dirty > 0);
    drop(g);
    s.validate().unwrap();
}

#[test]
#[should_panic(expected = "not registered with RCU")]
fn a_writer_on_an_unregistered_thread_panics() {
    let s = Space::new().unwrap();
    let _ = s.slot_add(0, 0, 16, 0x1000_0000, SlotFlags::NONE);
}

#[test]
#[should_panic(expected = "already registered")]
fn registering_twice_panics() {
    let _a = RcuThread::register();
    let _b = RcuThread::register();
}

#[test]
#[should_panic(expected = "inside an RCU read section")]
fn dropping_inside_a_read_section_panics() {
    let rcu = RcuThread::register();
    let s = Space::new().unwrap();
    let _g = rcu.read();
    drop(s);
}

#[test]
fn drop_on_an_unregistered_thread_and_try_register() {
    let s = {
        let _rcu = RcuThread::register();
        let s = Space::new().unwrap();
        s.slot_add(0, 0, 16, 0x1000_0000, SlotFlags::NONE).unwrap();
        s
    };
    assert!(!RcuThread::is_registered());
    drop(s); // registers for the destroy, then unregisters
    let rcu = RcuThread::try_register().unwrap();
    assert!(RcuThread::try_register().is_none());
    {
        let _g1 = rcu.read();
        let _g2 = rcu.read(); // sections nest
    }
    rcu.synchronize();
    rcu.barrier();
}

#[test]
#[should_panic(expected = "already holds the lock")]
fn a_writer_call_inside_an_open_batch_panics_instead_of_deadlocking() {
    let _rcu = RcuThread::register();
    let s = Space::new().unwrap();
    let mut b = s.batch();
    b.add(0, 0, 16, 0x1000_0000, SlotFlags::NONE).unwrap();
    let _ = s.slot_add(1, 16, 16, 0x2000_0000, SlotFlags::NONE);
}

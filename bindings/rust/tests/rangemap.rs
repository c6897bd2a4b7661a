//! RangeMap against a per-index std BTreeMap model.
mod common;
use common::{scale, Rng};
use gmtrack::{CountingAllocator, Error, Range, RangeIterFlags, RangeMap, RangeMapOptions, RcuThread, Update};
use std::collections::BTreeMap;

const UNIVERSE: u64 = 3000;

/// The model's ranges: maximal runs of consecutive indices with one value
/// (what a coalescing map stores).
fn runs(model: &BTreeMap<u64, u64>) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for (&i, &v) in model {
        match out.last_mut() {
            Some(r) if r.last + 1 == i && r.value == v => r.last = i,
            _ => out.push(Range { first: i, last: i, value: v }),
        }
    }
    out
}

fn check_against(map: &RangeMap, rcu: &RcuThread, model: &BTreeMap<u64, u64>, coalesce: bool) {
    let g = rcu.read();
    for i in 0..UNIVERSE + 2 {
        let got = map.load(&g, i);
        assert_eq!(got.map(|r| r.value), model.get(&i).copied(), "load({i})");
        if let Some(r) = got {
            assert!(r.first <= i && i <= r.last);
        } else {
            let (a, b) = map.gap_at(&g, i).unwrap();
            assert!(a <= i && i <= b);
            assert!((a..=b.min(UNIVERSE + 2)).all(|j| !model.contains_key(&j)), "gap [{a}, {b}] holds a stored index");
        }
        assert_eq!(map.contains(&g, i), model.contains_key(&i));
    }
    let all: Vec<Range> = map.iter(&g, 0..=u64::MAX).collect();
    if coalesce {
        assert_eq!(all, runs(model), "iteration differs from the model's runs");
        assert_eq!(map.count(), all.len() as u64);
    }
    // Every stored range is a union of model indices of its value.
    for r in &all {
        assert!((r.first..=r.last).all(|j| model.get(&j) == Some(&r.value)));
    }
    let mut rev: Vec<Range> = map.iter_with(&g, 0..=u64::MAX, RangeIterFlags::REVERSE).collect();
    rev.reverse();
    assert_eq!(rev, all, "reverse iteration");
    map.validate().unwrap();
}

fn differential(coalesce: bool, seed: u64) {
    let rcu = RcuThread::register();
    let counting = CountingAllocator::new();
    let map = RangeMap::with_options(RangeMapOptions { coalesce, allocator: Some(counting.clone()) }).unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng::new(seed);
    for step in 0..scale(3000) {
        let a = rng.below(UNIVERSE);
        let span = if rng.below(4) == 0 { 400 } else { 20 };
        let b = (a + rng.below(span)).min(UNIVERSE - 1);
        let v = rng.below(4);
        match rng.below(10) {
            0..=4 => {
                map.store(a..=b, v).unwrap();
                (a..=b).for_each(|i| {
                    model.insert(i, v);
                });
            }
            5 | 6 => {
                let free = (a..=b).all(|i| !model.contains_key(&i));
                match map.insert(a..=b, v) {
                    Ok(()) => {
                        assert!(free, "insert over stored indices succeeded");
                        (a..=b).for_each(|i| {
                            model.insert(i, v);
                        });
                    }
                    Err(Error::Exists) => assert!(!free, "insert into a gap refused"),
                    Err(e) => panic!("insert: {e}"),
                }
            }
            7 | 8 => {
                map.remove(a..=b).unwrap();
                (a..=b).for_each(|i| {
                    model.remove(&i);
                });
            }
            _ => {
                // update: bump odd values, clear value 3, fill gaps with 1
                map.update(a..=b, true, |piece, present| {
                    if !present {
                        Update::Set(1)
                    } else if piece.value == 3 {
                        Update::Clear
                    } else if piece.value % 2 == 1 {
                        Update::Set(piece.value + 1)
                    } else {
                        Update::Keep
                    }
                })
                .unwrap();
                for i in a..=b {
                    match model.get(&i).copied() {
                        None => {
                            model.insert(i, 1);
                        }
                        Some(3) => {
                            model.remove(&i);
                        }
                        Some(v) if v % 2 == 1 => {
                            model.insert(i, v + 1);
                        }
                        _ => {}
                    }
                }
            }
        }
        if step % 250 == 0 {
            check_against(&map, &rcu, &model, coalesce);
        }
    }
    check_against(&map, &rcu, &model, coalesce);
    {
        let g = rcu.read();
        // next/prev against the model
        for _ in 0..500 {
            let i = rng.below(UNIVERSE + 10);
            let want_next = model.range(i..).next().map(|(&k, &v)| (k, v));
            match map.next(&g, i) {
                Some(r) => {
                    let (k, v) = want_next.expect("next found a range the model lacks");
                    assert!(r.first <= k.max(i) && r.last >= k.max(i) && r.value == v, "next({i})");
                }
                None => assert!(want_next.is_none()),
            }
            let want_prev = model.range(..=i).next_back().map(|(&k, &v)| (k, v));
            match map.prev(&g, i) {
                Some(r) => {
                    let (k, v) = want_prev.expect("prev found a range the model lacks");
                    assert!(r.first <= k && r.last >= k && r.value == v, "prev({i})");
                }
                None => assert!(want_prev.is_none()),
            }
        }
        // clipped iteration of a window sums to the model's indices in it
        let (a, b) = (500, 1500);
        let n: u64 = map.iter_with(&g, a..=b, RangeIterFlags::CLIP).map(|r| r.last - r.first + 1).sum();
        assert_eq!(n, model.range(a..=b).count() as u64);
        let gaps: u64 = map.iter_with(&g, a..=b, RangeIterFlags::CLIP | RangeIterFlags::GAPS).map(|r| r.last - r.first + 1).sum();
        assert_eq!(n + gaps, b - a + 1);
    }
    assert!(counting.bytes() > 0);
    drop(map);
    assert_eq!(counting.bytes(), 0, "bytes left after drop");
}

#[test]
fn differential_coalescing() {
    differential(true, 1);
}

#[test]
fn differential_non_coalescing() {
    differential(false, 2);
}

#[test]
fn edges_gaps_and_errors() {
    let rcu = RcuThread::register();
    let map = RangeMap::new().unwrap();
    map.store(0..=u64::MAX, 7).unwrap();
    map.store(u64::MAX..=u64::MAX, 8).unwrap();
    map.remove(0x1000..=0x1fff).unwrap();
    {
        let g = rcu.read();
        assert_eq!(map.load(&g, u64::MAX), Some(Range { first: u64::MAX, last: u64::MAX, value: 8 }));
        assert_eq!(map.gap_at(&g, 0x1234), Some((0x1000, 0x1fff)));
        assert_eq!(map.find_gap(&g, 0x100, 0x100, 0..=u64::MAX), Ok(0x1000));
        assert_eq!(map.find_gap(&g, 0x2000, 1, 0..=u64::MAX), Err(Error::NoSpace));
        assert_eq!(map.find_gap(&g, 0, 1, 0..=u64::MAX), Err(Error::Invalid));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..=4;
        assert_eq!(map.iter(&g, reversed).count(), 0, "a reversed range yields nothing");
        let ms = [&map];
        assert_eq!(RangeMap::contains_many(&g, &ms, 0x1000), 0);
        assert_eq!(RangeMap::contains_many(&g, &ms, 0x2000), 1);
    }
    #[allow(clippy::reversed_empty_ranges)]
    {
        assert_eq!(map.store(5..=4, 1), Err(Error::Invalid));
    }
    assert_eq!(map.insert(0..=0, 1), Err(Error::Exists));
    assert_eq!(map.count(), 3);
    let st = map.stats();
    assert_eq!(st.ranges, 3);
    // A panic in an update closure leaves the map unchanged and comes back.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        map.update(0..=100, false, |_, _| panic!("boom")).unwrap();
    }));
    assert!(r.is_err());
    assert_eq!(map.count(), 3);
    map.validate().unwrap();
}

#[test]
fn concurrent_readers_see_old_or_new() {
    // A reader thread loads while the writer flips [0, 2^20) between two
    // values range by range: each index is always 1 or 2, never a gap.
    let rcu = RcuThread::register();
    let map = std::sync::Arc::new(RangeMap::new().unwrap());
    map.store(0..=(1 << 20) - 1, 1).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (map, stop) = (map.clone(), stop.clone());
        std::thread::spawn(move || {
            let rcu = RcuThread::register();
            let mut rng = Rng::new(9);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 1000 {
                let g = rcu.read();
                let i = rng.below(1 << 20);
                let v = map.load(&g, i).expect("index fell into a gap").value;
                assert!(v == 1 || v == 2);
                n += 1;
            }
            n
        })
    };
    let mut rng = Rng::new(10);
    for _ in 0..scale(20000) {
        let a = rng.below(1 << 20);
        let b = (a + rng.below(4096)).min((1 << 20) - 1);
        map.store(a..=b, 1 + rng.below(2)).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() >= 1000);
    map.validate().unwrap();
    drop(rcu);
}

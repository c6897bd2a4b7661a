//! PageMap against std BTreeMap<u64, usize>.
mod common;
use common::{scale, Rng};
use gmtrack::{CountingAllocator, Error, PageMap, RcuThread};
use std::collections::BTreeMap;

/// Keys of every shape the map's nodes care about: dense runs, clusters,
/// sparse 64-bit keys, and the extremes.
fn key(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => rng.below(4096),                       // dense
        1 => 0x10_0000 + rng.below(64) * 4096 + rng.below(8), // clusters
        2 => rng.next(),                            // sparse
        3 => u64::MAX - rng.below(70),              // top
        _ => rng.below(1 << 30),
    }
}

fn check(map: &PageMap, rcu: &RcuThread, model: &BTreeMap<u64, usize>, rng: &mut Rng) {
    let g = rcu.read();
    assert_eq!(map.count(), model.len() as u64);
    for (&k, &v) in model {
        assert_eq!(map.load(&g, k), Some(v), "load({k:#x})");
    }
    let all: Vec<(u64, usize)> = map.iter(&g, 0..=u64::MAX, false).collect();
    let want: Vec<(u64, usize)> = model.iter().map(|(&k, &v)| (k, v)).collect();
    assert_eq!(all, want, "iteration");
    let mut rev: Vec<(u64, usize)> = map.iter(&g, 0..=u64::MAX, true).collect();
    rev.reverse();
    assert_eq!(rev, want, "reverse iteration");
    for _ in 0..300 {
        let k = key(rng);
        assert_eq!(map.load(&g, k), model.get(&k).copied());
        assert_eq!(map.next(&g, k), model.range(k..).next().map(|(&a, &b)| (a, b)), "next({k:#x})");
        assert_eq!(map.prev(&g, k), model.range(..=k).next_back().map(|(&a, &b)| (a, b)), "prev({k:#x})");
        let (a, b) = (k, k.saturating_add(rng.below(1 << 20)));
        let reverse = rng.below(2) == 1;
        let got: Vec<(u64, usize)> = map.iter(&g, a..=b, reverse).collect();
        let mut want: Vec<(u64, usize)> = model.range(a..=b).map(|(&x, &y)| (x, y)).collect();
        if reverse {
            want.reverse();
        }
        assert_eq!(got, want, "iter [{a:#x}, {b:#x}] reverse {reverse}");
    }
    let keys: Vec<u64> = (0..200).map(|_| key(rng)).collect();
    let mut vals = vec![0usize; keys.len()];
    let found = map.load_many(&g, &keys, &mut vals);
    let mut want_found = 0;
    for (k, v) in keys.iter().zip(&vals) {
        assert_eq!(model.get(k).copied().unwrap_or(0), *v, "load_many({k:#x})");
        want_found += model.contains_key(k) as u64;
    }
    assert_eq!(found, want_found);
    map.validate().unwrap();
}

#[test]
fn differential_against_btreemap() {
    let rcu = RcuThread::register();
    let counting = CountingAllocator::new();
    let map = PageMap::with_allocator(&counting).unwrap();
    let mut model: BTreeMap<u64, usize> = BTreeMap::new();
    let mut rng = Rng::new(3);
    for step in 0..scale(60000) {
        let k = key(&mut rng);
        let v = 1 + rng.below(1 << 40) as usize;
        match rng.below(8) {
            0..=2 => match map.insert(k, v) {
                Ok(()) => assert!(model.insert(k, v).is_none(), "insert of a present key succeeded"),
                Err(Error::Exists) => assert!(model.contains_key(&k)),
                Err(e) => panic!("insert: {e}"),
            },
            3 | 4 => assert_eq!(map.store(k, v).unwrap(), model.insert(k, v)),
            _ => {
                // remove a present key most of the time
                let k = if rng.below(4) != 0 && !model.is_empty() {
                    let pick = rng.next();
                    model.range(pick..).next().or_else(|| model.iter().next_back()).map(|(&k, _)| k).unwrap()
                } else {
                    k
                };
                assert_eq!(map.remove(k).unwrap(), model.remove(&k));
            }
        }
        if step % 10000 == 0 {
            check(&map, &rcu, &model, &mut rng);
        }
    }
    check(&map, &rcu, &model, &mut rng);
    assert_eq!(map.insert(1, 0), Err(Error::Invalid), "value 0 (NULL) is refused");
    let st = map.stats();
    assert_eq!(st.entries, model.len() as u64);
    // drain
    for &k in model.keys() {
        map.remove(k).unwrap();
    }
    assert_eq!(map.count(), 0);
    drop(map);
    assert_eq!(counting.bytes(), 0, "bytes left after drop");
}

//! ITree overlap queries against a naive list of intervals.
mod common;
use common::{scale, Rng};
use gmtrack::{CountingAllocator, Error, ITree, ITreeEntry, RcuThread};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn naive(model: &[ITreeEntry], a: u64, b: u64) -> Vec<ITreeEntry> {
    let mut v: Vec<ITreeEntry> = model.iter().copied().filter(|e| e.first <= b && e.last >= a).collect();
    v.sort();
    v
}

#[test]
fn overlap_queries_against_a_list() {
    let rcu = RcuThread::register();
    let counting = CountingAllocator::new();
    let t = ITree::with_allocator(&counting).unwrap();
    let mut model: Vec<ITreeEntry> = Vec::new();
    let mut rng = Rng::new(4);
    const SPACE: u64 = 1 << 24;
    for step in 0..scale(6000) {
        if model.is_empty() || rng.below(3) != 0 {
            let first = rng.below(SPACE);
            let len = if rng.below(10) == 0 { rng.below(SPACE / 8) } else { rng.below(4096) };
            let e = ITreeEntry { first, last: first + len, item: 1 + rng.below(4) as usize };
            match t.insert(e.first..=e.last, e.item) {
                Ok(()) => model.push(e),
                Err(Error::Exists) => assert!(model.contains(&e)),
                Err(err) => panic!("insert: {err}"),
            }
        } else {
            let i = rng.below(model.len() as u64) as usize;
            let e = model.swap_remove(i);
            t.remove(e.first..=e.last, e.item).unwrap();
            assert_eq!(t.remove(e.first..=e.last, e.item), Err(Error::NotFound), "removed twice");
        }
        if step % 500 == 0 {
            let g = rcu.read();
            for _ in 0..100 {
                let a = rng.below(SPACE + 10);
                let b = if rng.below(3) == 0 { a } else { a + rng.below(1 << 16) };
                let want = naive(&model, a, b);
                let got: Vec<ITreeEntry> = t.iter(&g, a..=b, false).collect();
                assert_eq!(got, want, "overlaps of [{a}, {b}]");
                let mut rev: Vec<ITreeEntry> = t.iter(&g, a..=b, true).collect();
                rev.reverse();
                assert_eq!(rev, want, "reverse overlaps of [{a}, {b}]");
                let items = t.overlapping(&g, a..=b).unwrap();
                assert_eq!(items, want.iter().map(|e| e.item).collect::<Vec<_>>());
                let mut two = [0usize; 2];
                assert_eq!(t.fill(&g, a..=b, &mut two).unwrap(), want.len() as u64);
            }
            assert_eq!(t.count(), model.len() as u64);
            t.validate().unwrap();
        }
    }
    #[allow(clippy::reversed_empty_ranges)]
    {
        let g = rcu.read();
        assert_eq!(t.fill(&g, 5..=4, &mut []), Err(Error::Invalid));
        assert_eq!(t.insert(5..=4, 1), Err(Error::Invalid));
    }
    assert_eq!(t.stats().entries, model.len() as u64);
    drop(t);
    assert_eq!(counting.bytes(), 0);
}

#[test]
fn readers_never_miss_a_stable_entry() {
    // Entries at multiples of 1000 stay; the writer churns others around
    // them; a reader's stabbing query must always find the stable one.
    let rcu = RcuThread::register();
    let t = Arc::new(ITree::new().unwrap());
    for i in 0..500u64 {
        t.insert(i * 1000..=i * 1000 + 10, 1_000_000 + i as usize).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            let rcu = RcuThread::register();
            let mut rng = Rng::new(5);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 2000 {
                let i = rng.below(500);
                let g = rcu.read();
                let found = t.iter(&g, i * 1000 + 5..=i * 1000 + 5, false).any(|e| e.item == 1_000_000 + i as usize);
                assert!(found, "stable entry {i} missed");
                n += 1;
            }
        })
    };
    let mut rng = Rng::new(6);
    let mut churn = Vec::new();
    for _ in 0..scale(30000) {
        if churn.len() < 2000 && rng.below(2) == 0 {
            let a = rng.below(500_000);
            let e = (a, a + rng.below(3000), 1 + rng.below(1000) as usize);
            if t.insert(e.0..=e.1, e.2).is_ok() {
                churn.push(e);
            }
        } else if let Some(e) = churn.pop() {
            t.remove(e.0..=e.1, e.2).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    t.validate().unwrap();
    drop(rcu);
}

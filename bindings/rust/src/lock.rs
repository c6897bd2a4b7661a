//! The writer lock each structure serializes its writers with: a mutex that
//! panics with a clear message, instead of deadlocking, when the thread
//! holding it asks again (a writer call while a `Batch` of the same space is
//! open, or from inside an update or harvest closure).

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
thread_local! {
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

fn this_thread() -> u64 {
    THREAD.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

pub(crate) struct WriterLock<T> {
    m: Mutex<T>,
    owner: AtomicU64,
}

pub(crate) struct WriterGuard<'a, T> {
    g: MutexGuard<'a, T>,
    owner: &'a AtomicU64,
}

impl<T> WriterLock<T> {
    pub(crate) fn new(v: T) -> Self {
        WriterLock { m: Mutex::new(v), owner: AtomicU64::new(0) }
    }

    #[track_caller]
    pub(crate) fn lock(&self, what: &str) -> WriterGuard<'_, T> {
        let me = this_thread();
        if self.owner.load(Ordering::Relaxed) == me {
            panic!(
                "gmtrack: {what} called while this thread already holds the lock it needs \
                 (a Batch of the same space still open, or a call from inside an update or \
                 harvest closure): that would deadlock"
            );
        }
        let g = self.m.lock().unwrap_or_else(|e| e.into_inner());
        self.owner.store(me, Ordering::Relaxed);
        WriterGuard { g, owner: &self.owner }
    }
}

impl<T> Drop for WriterGuard<'_, T> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Relaxed); // before the mutex is released
    }
}

impl<T> Deref for WriterGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.g
    }
}

impl<T> DerefMut for WriterGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.g
    }
}

//! RCU thread registration and read sections (rcu.h) as guard types.

use crate::sys;
use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    /// Whether this thread is registered (by an RcuThread, or by C code the
    /// caller vouched for with RcuThread::assume_registered).
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// ReadGuards alive on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

pub(crate) fn is_registered() -> bool {
    REGISTERED.with(|r| r.get())
}

pub(crate) fn in_read_section() -> bool {
    DEPTH.with(|d| d.get()) > 0
}

/// Panics unless the calling thread has an RcuThread (writer calls).
#[track_caller]
pub(crate) fn assert_registered(what: &str) {
    if !is_registered() {
        panic!(
            "gmtrack: {what} called on a thread not registered with RCU: \
             create a gmtrack::RcuThread on this thread first (RcuThread::register())"
        );
    }
}

/// Runs a structure's destroy (which waits for a grace period) from a
/// registered thread outside any read section: registers the thread for the
/// call if it is not. Panics (or, if already panicking, leaks the structure)
/// when the thread is inside a read section: the wait would never end.
pub(crate) fn destroy_outside_read_section(what: &str, destroy: impl FnOnce()) {
    if in_read_section() {
        if std::thread::panicking() {
            return; // leak rather than deadlock while unwinding
        }
        panic!(
            "gmtrack: {what} dropped inside an RCU read section of the same thread: \
             its destroy waits for a grace period, which would never end; drop the ReadGuard first"
        );
    }
    if is_registered() {
        destroy();
    } else {
        // SAFETY: the thread is not registered (with this crate's knowledge:
        // a thread registered by C code must say so, assume_registered).
        unsafe { sys::gm_rcu_register_thread() };
        destroy();
        unsafe { sys::gm_rcu_unregister_thread() };
    }
}

/// The calling thread's RCU registration (`gm_rcu_register_thread` /
/// `gm_rcu_unregister_thread`). Make one on every thread that reads or
/// writes a gmtrack structure; reads need a [`ReadGuard`] from it.
///
/// `RcuThread` is neither `Send` nor `Sync`: it stays on the thread it
/// registered, so a guard cannot be taken on another thread.
///
/// ```compile_fail,E0277
/// let rcu = gmtrack::RcuThread::register();
/// std::thread::spawn(move || drop(rcu)); // RcuThread is !Send
/// ```
#[derive(Debug)]
pub struct RcuThread {
    adopted: bool,
    _not_send: PhantomData<*const ()>,
}

impl RcuThread {
    /// Registers the calling thread.
    ///
    /// # Panics
    /// If the thread already has an `RcuThread` (liburcu aborts on a
    /// second registration).
    #[track_caller]
    pub fn register() -> RcuThread {
        if is_registered() {
            panic!("gmtrack: this thread is already registered with RCU (one RcuThread per thread)");
        }
        // SAFETY: not registered yet (checked above).
        unsafe { sys::gm_rcu_register_thread() };
        REGISTERED.with(|r| r.set(true));
        RcuThread { adopted: false, _not_send: PhantomData }
    }

    /// Registers the calling thread unless it already has an `RcuThread`
    /// (`None` then).
    pub fn try_register() -> Option<RcuThread> {
        if is_registered() {
            None
        } else {
            Some(RcuThread::register())
        }
    }

    /// An `RcuThread` for a thread that C code already registered with
    /// liburcu's memb flavour (gm_rcu_register_thread or
    /// urcu_memb_register_thread); dropping it does not unregister.
    ///
    /// # Safety
    /// The calling thread must be registered and stay registered while the
    /// returned value lives.
    pub unsafe fn assume_registered() -> RcuThread {
        if is_registered() {
            panic!("gmtrack: this thread already has an RcuThread");
        }
        REGISTERED.with(|r| r.set(true));
        RcuThread { adopted: true, _not_send: PhantomData }
    }

    /// Whether the calling thread has an `RcuThread`.
    pub fn is_registered() -> bool {
        is_registered()
    }

    /// Enters a read section (`gm_rcu_read_lock`): wait-free, nests. What a
    /// read returns by reference lives no longer than the guard.
    #[inline]
    pub fn read(&self) -> ReadGuard<'_> {
        DEPTH.with(|d| d.set(d.get() + 1));
        // SAFETY: registered thread (self exists on it).
        unsafe { sys::rcu_read_lock() };
        ReadGuard { _thread: PhantomData }
    }

    /// Waits until every read section begun before the call has ended
    /// (`gm_rcu_synchronize`).
    ///
    /// # Panics
    /// Inside a read section of this thread (it would wait forever).
    pub fn synchronize(&self) {
        assert!(!in_read_section(), "gmtrack: RcuThread::synchronize inside a read section would never return");
        // SAFETY: registered, outside a read section.
        unsafe { sys::gm_rcu_synchronize() };
    }

    /// Waits until every deferred free queued so far has run
    /// (`gm_rcu_barrier`).
    ///
    /// # Panics
    /// Inside a read section of this thread.
    pub fn barrier(&self) {
        assert!(!in_read_section(), "gmtrack: RcuThread::barrier inside a read section would never return");
        // SAFETY: registered, outside a read section.
        unsafe { sys::gm_rcu_barrier() };
    }
}

impl Drop for RcuThread {
    fn drop(&mut self) {
        // No ReadGuard can be alive: each borrows this RcuThread.
        REGISTERED.with(|r| r.set(false));
        if !self.adopted {
            // SAFETY: registered by register(), outside any read section.
            unsafe { sys::gm_rcu_unregister_thread() };
        }
    }
}

/// An RCU read section (`gm_rcu_read_lock` .. `gm_rcu_read_unlock`),
/// borrowed from the thread's [`RcuThread`]. Neither `Send` nor `Sync`.
///
/// ```compile_fail,E0277
/// let rcu = gmtrack::RcuThread::register();
/// let g = rcu.read();
/// std::thread::spawn(move || drop(g)); // ReadGuard is !Send
/// ```
///
/// A reference a read returns cannot outlive its guard:
///
/// ```compile_fail,E0597
/// use gmtrack::{RcuThread, Space, GfnCache};
/// let rcu = RcuThread::register();
/// let space = Space::new().unwrap();
/// let mut cache = GfnCache::new();
/// let slot = {
///     let g = rcu.read();
///     space.gfn_to_slot(&g, &mut cache, 0).unwrap()
/// }; // the guard ends here: `slot` would outlive it
/// println!("{}", slot.id());
/// ```
#[derive(Debug)]
#[must_use = "a read section ends when its guard is dropped"]
pub struct ReadGuard<'t> {
    _thread: PhantomData<&'t RcuThread>,
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: paired with the lock taken in RcuThread::read.
        unsafe { sys::rcu_read_unlock() };
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

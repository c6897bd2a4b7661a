/*
 * vmm/dirty.c — KVM dirty bitmap / dirty ring -> gm_space (see dirty.h).
 * The bitmap of a slot comes from KVM into one scratch buffer (grown to
 * the largest slot's bitmap) and goes into the slot's gm_space log with
 * one gm_space_dirty_import; ring entries are grouped by slot and go in
 * with gm_space_dirty_import_gfns, and are handed back to KVM (flag
 * RESET) only once gm_space holds them.
 */
#define _GNU_SOURCE
#include "dirty.h"

#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

uint64_t gmvm_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static _Thread_local uint64_t *scratch;
static _Thread_local size_t scratch_words;

void gmvm_dirty_release(void)
{
	free(scratch);
	scratch = NULL;
	scratch_words = 0;
}

static uint64_t *scratch_get(uint64_t npages)
{
	size_t words = (size_t)((npages + 63) / 64);
	if (words > scratch_words) {
		uint64_t *p = realloc(scratch, words * 8);
		if (!p)
			return NULL;
		scratch = p;
		scratch_words = words;
	}
	return scratch;
}

/* The flat walk rust-vmm's users do: every bit of the bitmap in turn
 * (Firecracker's dump_dirty: for each word, for j in 0..64). */
static uint64_t flat_walk(const uint64_t *bm, uint64_t npages)
{
	uint64_t found = 0, run = 0;
	for (uint64_t i = 0; i < (npages + 63) / 64; i++) {
		uint64_t w = ((volatile const uint64_t *)bm)[i];
		for (unsigned j = 0; j < 64; j++) {
			if ((w >> j) & 1) {
				found++;
				run++;
			} else if (run) {
				run = 0;
			}
		}
	}
	return found;
}

static int sync_bitmap(struct gmvm_vm *vm, struct gmvm_dirty_stats *st, bool flat, char *err,
		       size_t errlen)
{
	struct gm_space_slot_iter it;
	const struct gm_space_slot *sl;
	gm_space_slot_iter_init(&it, vm->mem.space, 0, UINT64_MAX, 0);
	while (gm_space_slot_iter_next(&it, &sl) == 0) {
		if (!(sl->flags & GM_SPACE_SLOT_DIRTY_LOG))
			continue;
		uint64_t *bm = scratch_get(sl->npages);
		if (!bm) {
			snprintf(err, errlen, "no memory for a %llu-page dirty bitmap",
				 (unsigned long long)sl->npages);
			return -ENOMEM;
		}
		uint64_t t0 = gmvm_now_ns();
		int rc = gmvm_kvm_get_dirty(&vm->kvm, sl->id, sl->npages, bm, true);
		uint64_t t1 = gmvm_now_ns();
		if (rc) {
			snprintf(err, errlen, "KVM_GET_DIRTY_LOG slot %u: %s", sl->id, strerror(-rc));
			return rc;
		}
		rc = gm_space_dirty_import(vm->mem.space, sl, sl->base_gfn, bm, sl->npages);
		uint64_t t2 = gmvm_now_ns();
		if (rc) {
			snprintf(err, errlen, "gm_space_dirty_import slot %u: %s", sl->id, strerror(-rc));
			return rc;
		}
		st->kvm_ns += t1 - t0;
		st->import_ns += t2 - t1;
		st->bitmap_bits += sl->npages;
		if (flat) {
			uint64_t t3 = gmvm_now_ns();
			st->flat_pages += flat_walk(bm, sl->npages);
			st->flat_ns += gmvm_now_ns() - t3;
		}
	}
	return 0;
}

/* Imports gfns[0..n) (all of slot id): 0, or the import's error. */
static int ring_import(struct gmvm_vm *vm, uint32_t id, const uint64_t *gfns, size_t n,
		       uint64_t *import_ns)
{
	int rc = 0;
	uint64_t t0 = gmvm_now_ns();
	gm_rcu_read_lock();
	const struct gm_space_slot *sl = gm_space_id_to_slot(vm->mem.space, id);
	if (sl && n && (sl->flags & GM_SPACE_SLOT_DIRTY_LOG))
		rc = gm_space_dirty_import_gfns(vm->mem.space, sl, gfns, n);
	gm_rcu_read_unlock();
	if (import_ns)
		*import_ns += gmvm_now_ns() - t0;
	return rc;
}

/* Reads the vCPU's ring from where the last collect stopped: entries of
 * one slot at a time become gfns (the slot's base from gm_space; an
 * offset past a slot that shrank, or a slot that is gone, is dropped: such
 * a slot is resent whole), go into gm_space, and only then are handed
 * back to KVM (flag RESET). Returns the entries collected. */
static long ring_collect(struct gmvm_vm *vm, struct gmvm_vcpu *v, uint64_t *import_ns)
{
	if (!v->k.ring)
		return 0;
	enum { BATCH = 1024 };
	uint64_t gfns[BATCH];
	size_t n = 0;
	long total = 0;
	pthread_mutex_lock(&v->ring_lock);
	uint32_t start = v->k.ring_next, i = start, cur = UINT32_MAX;
	uint64_t base = 0, npages = 0;
	for (;;) {
		struct kvm_dirty_gfn *e = &v->k.ring[i % v->k.ring_entries];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		bool dirty = (flags & KVM_DIRTY_GFN_F_MASK) == KVM_DIRTY_GFN_F_DIRTY;
		if (i != start && (!dirty || e->slot != cur || i - start == BATCH)) {
			if (ring_import(vm, cur, gfns, n, import_ns))
				break; /* kept in the ring: the next collect retries */
			for (uint32_t j = start; j != i; j++)
				__atomic_store_n(&v->k.ring[j % v->k.ring_entries].flags,
						 KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			total += i - start;
			start = i;
			n = 0;
		}
		if (!dirty)
			break;
		if (e->slot != cur) {
			cur = e->slot;
			gm_rcu_read_lock();
			const struct gm_space_slot *sl = gm_space_id_to_slot(vm->mem.space, cur);
			base = sl ? sl->base_gfn : 0;
			npages = sl ? sl->npages : 0;
			gm_rcu_read_unlock();
		}
		if (e->offset < npages)
			gfns[n++] = base + e->offset;
		i++;
	}
	v->k.ring_next = start;
	pthread_mutex_unlock(&v->ring_lock);
	return total;
}

long gmvm_ring_collect(struct gmvm_vm *vm, struct gmvm_vcpu *v)
{
	return ring_collect(vm, v, NULL);
}

static int sync_ring(struct gmvm_vm *vm, struct gmvm_dirty_stats *st, char *err, size_t errlen)
{
	uint64_t t0 = gmvm_now_ns(), imp = 0;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		st->entries += (uint64_t)ring_collect(vm, &vm->vcpu[i], &imp);
	uint64_t t1 = gmvm_now_ns();
	st->import_ns += imp;
	int rc = ioctl(vm->kvm.vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	uint64_t t2 = gmvm_now_ns();
	if (rc < 0) {
		snprintf(err, errlen, "KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
		return -errno;
	}
	st->ring_ns += t1 - t0 - imp; /* reading and handing back entries */
	st->kvm_ns += t2 - t1;
	return 0;
}

int gmvm_dirty_sync(struct gmvm_vm *vm, struct gmvm_dirty_stats *st, bool flat,
		    char *err, size_t errlen)
{
	if (vm->kvm.ring_entries)
		return sync_ring(vm, st, err, errlen);
	return sync_bitmap(vm, st, flat, err, errlen);
}

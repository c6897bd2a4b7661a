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
	gm_space_slot_iter_init(&it, vm->mem.space, 0, UINT64_MAX);
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

/* Imports the gfns of ring entries [from, to) (all of slot id) and hands
 * them back to KVM; entries of a slot that is gone, or offsets past a
 * slot that shrank (it is resent whole), are dropped. */
static int ring_flush(struct gmvm_vm *vm, struct gmvm_vcpu *v, uint32_t id, uint32_t from,
		      uint32_t to, uint64_t *gfns)
{
	size_t n = 0;
	int rc = 0;
	gm_rcu_read_lock();
	const struct gm_space_slot *sl = gm_space_id_to_slot(vm->mem.space, id);
	for (uint32_t i = from; sl && i != to; i++) {
		uint64_t off = v->k.ring[i % v->k.ring_entries].offset;
		if (off < sl->npages)
			gfns[n++] = sl->base_gfn + off;
	}
	if (sl && n && (sl->flags & GM_SPACE_SLOT_DIRTY_LOG))
		rc = gm_space_dirty_import_gfns(vm->mem.space, sl, gfns, n);
	gm_rcu_read_unlock();
	if (rc)
		return rc;
	for (uint32_t i = from; i != to; i++)
		__atomic_store_n(&v->k.ring[i % v->k.ring_entries].flags, KVM_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
	return 0;
}

long gmvm_ring_collect(struct gmvm_vm *vm, struct gmvm_vcpu *v)
{
	if (!v->k.ring)
		return 0;
	enum { BATCH = 512 };
	uint64_t gfns[BATCH];
	long total = 0;
	pthread_mutex_lock(&v->ring_lock);
	uint32_t start = v->k.ring_next, i = start, cur = UINT32_MAX;
	for (;;) {
		struct kvm_dirty_gfn *e = &v->k.ring[i % v->k.ring_entries];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		bool dirty = (flags & KVM_DIRTY_GFN_F_MASK) == KVM_DIRTY_GFN_F_DIRTY;
		uint32_t id = dirty ? e->slot : UINT32_MAX;
		if (i != start && (!dirty || id != cur || i - start == BATCH)) {
			if (ring_flush(vm, v, cur, start, i, gfns))
				break; /* kept in the ring: the next collect retries */
			total += i - start;
			start = i;
		}
		if (!dirty)
			break;
		cur = id;
		i++;
	}
	v->k.ring_next = start;
	pthread_mutex_unlock(&v->ring_lock);
	return total;
}

static int sync_ring(struct gmvm_vm *vm, struct gmvm_dirty_stats *st, char *err, size_t errlen)
{
	uint64_t t0 = gmvm_now_ns();
	for (unsigned i = 0; i < vm->nvcpus; i++)
		st->entries += (uint64_t)gmvm_ring_collect(vm, &vm->vcpu[i]);
	uint64_t t1 = gmvm_now_ns();
	int rc = ioctl(vm->kvm.vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	uint64_t t2 = gmvm_now_ns();
	if (rc < 0) {
		snprintf(err, errlen, "KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
		return -errno;
	}
	st->ring_ns += t1 - t0;
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

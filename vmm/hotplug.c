/*
 * vmm/hotplug.c — memory hotplug under load (see hotplug.h). The control
 * thread owns GMVM_HOTPLUG_SLOTS slot ids, each with a 16 MiB gpa window
 * in the hotplug area and a quarter of the pool mapping as backing (ids i
 * and i + 4 share one: shared hva ranges), and keeps a model of them. It
 * loops over random operations:
 *   add / remove (then an RCU grace period and a discard of the backing),
 *   resize (virtio-mem style), move (PCI-BAR style) — each a gmvm_mem
 *   batch, gm_space mirrored to KVM;
 *   DMA fills at random places in and around its slots through the
 *   device path (gm_space checks): the outcome must match the model
 *   (performed inside a slot, refused outside) and the bytes must land;
 *   discards (MADV_DONTNEED or a memfd hole) of part of a backing range:
 *   gm_space_hva_fill names the slots it backs, their dirty state over
 *   those gfns is dropped (harvested and thrown away).
 * A disagreement with the model stops the thread with an error.
 */
#define _GNU_SOURCE
#include "hotplug.h"

#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define WINDOW (16ull << 20)
#define MAX_SLOT_BYTES (8ull << 20)
#define AREAS 4

struct hslot {
	bool present;
	uint64_t gpa, bytes;
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t area_hva(struct gmvm_hotplug *h, unsigned i)
{
	struct gmvm_ram *pool = &h->vm->region[REGION_POOL];
	return (uintptr_t)pool->hva + (uint64_t)(i % AREAS) * (pool->bytes / AREAS);
}

static int set_error(struct gmvm_hotplug *h, int rc, const char *fmt, unsigned long long a,
		     unsigned long long b)
{
	h->error = rc;
	snprintf(h->msg, sizeof(h->msg), fmt, a, b);
	return rc;
}

static int apply(struct gmvm_hotplug *h, struct gmvm_change *c)
{
	char why[200];
	int rc = gmvm_mem_apply(&h->vm->mem, c, 1, why, sizeof(why));
	if (rc) {
		h->refused++;
		h->error = rc;
		snprintf(h->msg, sizeof(h->msg), "a valid change was refused: %s", why);
		return rc;
	}
	h->changes++;
	return 0;
}

/* Throws away the host memory of [hva, hva + bytes) of the pool. */
static void discard_backing(struct gmvm_hotplug *h, uint64_t hva, uint64_t bytes)
{
	struct gmvm_ram *pool = &h->vm->region[REGION_POOL];
	if (pool->memfd >= 0)
		fallocate(pool->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(hva - (uintptr_t)pool->hva), (off_t)bytes);
	else
		madvise((void *)(uintptr_t)hva, bytes, MADV_DONTNEED);
}

static int drop_run(void *ctx, uint64_t first, uint64_t count)
{
	(void)first;
	*(uint64_t *)ctx += count;
	return 0;
}

/* A balloon-style discard: the slots backed by the range lose the pages
 * and their dirty state. */
static int do_discard(struct gmvm_hotplug *h, unsigned i, const struct hslot *s)
{
	uint64_t off = (rnd(&h->seed) % (s->bytes >> 12)) << 12;
	uint64_t bytes = ((rnd(&h->seed) % 16) + 1) << 12;
	if (off + bytes > s->bytes)
		bytes = s->bytes - off;
	uint64_t hva = area_hva(h, i) + off;
	struct gmvm_mem *m = &h->vm->mem;
	struct gm_space_hva_hit hits[2 * GMVM_HOTPLUG_SLOTS];
	pthread_mutex_lock(&m->lock);
	discard_backing(h, hva, bytes);
	long n = gm_space_hva_fill(m->space, hva, hva + bytes - 1, hits, 2 * GMVM_HOTPLUG_SLOTS);
	if (n < 1 || n > 2 * GMVM_HOTPLUG_SLOTS) {
		pthread_mutex_unlock(&m->lock);
		return set_error(h, -EIO, "discard of hva 0x%llx: gm_space_hva_fill found %lld slots",
				 (unsigned long long)hva, (unsigned long long)n);
	}
	for (long k = 0; k < n; k++) {
		const struct gm_space_hva_hit *x = &hits[k];
		if (x->slot->flags & GM_SPACE_SLOT_DIRTY_LOG)
			gm_space_dirty_harvest(m->space, x->slot, x->first_gfn, x->last_gfn,
						     drop_run, &h->discarded_dirty);
		if (h->on_discard)
			h->on_discard(h->on_discard_ctx, x->first_gfn, x->last_gfn - x->first_gfn + 1);
	}
	pthread_mutex_unlock(&m->lock);
	h->discards++;
	return 0;
}

/* A DMA fill at a random place in or around slot i: done iff the model
 * says it lies inside the slot. */
static int do_dma(struct gmvm_hotplug *h, struct gm_space_cache *c, unsigned i,
		  const struct hslot *s)
{
	uint64_t win = GMVM_HOTPLUG_GPA + i * WINDOW;
	uint64_t gpa = win + rnd(&h->seed) % (MAX_SLOT_BYTES + 8192);
	uint64_t len = 1 + rnd(&h->seed) % 16384;
	bool inside = s->present && gpa >= s->gpa && gpa + len <= s->gpa + s->bytes;
	uint8_t byte = (uint8_t)rnd(&h->seed);
	char why[200];
	int rc = gmvm_dma_fill(h->vm->mem.space, c, gpa, len, byte, why, sizeof(why));
	if ((rc == 0) != inside)
		return set_error(h, -EIO, rc ? "DMA to gpa 0x%llx inside slot refused (%lld)"
					     : "DMA to gpa 0x%llx outside any slot performed (%lld)",
				 (unsigned long long)gpa, (unsigned long long)rc);
	if (rc) {
		h->dma_refused++;
		return 0;
	}
	const uint8_t *p = (const uint8_t *)(uintptr_t)(area_hva(h, i) + (gpa - s->gpa));
	for (uint64_t k = 0; k < len; k++)
		if (p[k] != byte)
			return set_error(h, -EIO, "DMA to gpa 0x%llx: byte %llu did not land",
					 (unsigned long long)gpa, (unsigned long long)k);
	h->dma_ok++;
	return 0;
}

static uint64_t rand_bytes(struct gmvm_hotplug *h)
{
	return ((rnd(&h->seed) % (MAX_SLOT_BYTES >> 12)) + 1) << 12;
}

static int step(struct gmvm_hotplug *h, struct hslot *sl, struct gm_space_cache *c)
{
	unsigned i = (unsigned)(rnd(&h->seed) % GMVM_HOTPLUG_SLOTS);
	struct hslot *s = &sl[i];
	uint32_t id = GMVM_HOTPLUG_ID + i;
	uint32_t fl = h->vm->cfg.dirty_log ? GM_SPACE_SLOT_DIRTY_LOG : 0;
	uint64_t win = GMVM_HOTPLUG_GPA + i * WINDOW;
	unsigned op = (unsigned)(rnd(&h->seed) % 8);
	if (!s->present) {
		if (op >= 3)
			return do_dma(h, c, i, s);
		uint64_t bytes = rand_bytes(h);
		uint64_t gpa = win + (((rnd(&h->seed) % ((WINDOW - bytes) >> 12))) << 12);
		struct gmvm_change ch = {GMVM_ADD, id, gpa, bytes, area_hva(h, i), fl};
		if (apply(h, &ch))
			return h->error;
		*s = (struct hslot){true, gpa, bytes};
		return 0;
	}
	switch (op) {
	case 0: { /* remove: after a grace period no DMA can be in it: discard */
		struct gmvm_change ch = {.kind = GMVM_DELETE, .id = id};
		if (apply(h, &ch))
			return h->error;
		s->present = false;
		gm_rcu_synchronize();
		return 0;
	}
	case 1: { /* resize, within its window */
		uint64_t bytes = rand_bytes(h);
		if (s->gpa + bytes > win + WINDOW)
			bytes = win + WINDOW - s->gpa;
		struct gmvm_change ch = {.kind = GMVM_RESIZE, .id = id, .bytes = bytes};
		if (apply(h, &ch))
			return h->error;
		s->bytes = bytes;
		return 0;
	}
	case 2: { /* move, within its window */
		uint64_t gpa = win + ((rnd(&h->seed) % (((WINDOW - s->bytes) >> 12) + 1)) << 12);
		struct gmvm_change ch = {.kind = GMVM_MOVE, .id = id, .gpa = gpa};
		if (apply(h, &ch))
			return h->error;
		s->gpa = gpa;
		return 0;
	}
	case 3:
		return do_discard(h, i, s);
	default:
		return do_dma(h, c, i, s);
	}
}

static void *hotplug_thread(void *arg)
{
	struct gmvm_hotplug *h = arg;
	struct hslot sl[GMVM_HOTPLUG_SLOTS];
	struct gm_space_cache cache;
	memset(sl, 0, sizeof(sl));
	gm_space_cache_init(&cache);
	gm_rcu_register_thread();
	uint64_t n = 0;
	while (!atomic_load(&h->stop) && !h->error) {
		if (step(h, sl, &cache))
			break;
		if (++n % 64 == 0) {
			const char *reason = NULL;
			pthread_mutex_lock(&h->vm->mem.lock);
			int rc = gm_space_validate(h->vm->mem.space, &reason);
			pthread_mutex_unlock(&h->vm->mem.lock);
			if (rc) {
				h->error = rc;
				snprintf(h->msg, sizeof(h->msg), "gm_space_validate: %s", reason);
				break;
			}
		}
		struct timespec ts = {0, 200000}; /* 5000 operations a second at most */
		nanosleep(&ts, NULL);
	}
	gm_rcu_unregister_thread();
	return NULL;
}

int gmvm_hotplug_start(struct gmvm_hotplug *h, struct gmvm_vm *vm,
		       void (*on_discard)(void *ctx, uint64_t first_gfn, uint64_t count),
		       void *on_discard_ctx, char *err, size_t errlen)
{
	memset(h, 0, sizeof(*h));
	h->vm = vm;
	h->on_discard = on_discard;
	h->on_discard_ctx = on_discard_ctx;
	h->seed = vm->cfg.seed * 0x9e3779b97f4a7c15ull | 1;
	if (!vm->region[REGION_POOL].hva) {
		snprintf(err, errlen, "no hotplug pool mapped");
		return -EINVAL;
	}
	if (((GMVM_HOTPLUG_GPA + GMVM_HOTPLUG_SLOTS * WINDOW) >> 12) > vm->mem.max_gfn) {
		snprintf(err, errlen, "KVM's last gfn 0x%llx is below the hotplug window",
			 (unsigned long long)vm->mem.max_gfn);
		return -ERANGE;
	}
	int rc = pthread_create(&h->thread, NULL, hotplug_thread, h);
	if (rc) {
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		return -rc;
	}
	h->started = true;
	return 0;
}

int gmvm_hotplug_stop(struct gmvm_hotplug *h, char *msg, size_t msglen)
{
	if (h->started) {
		atomic_store(&h->stop, true);
		pthread_join(h->thread, NULL);
		h->started = false;
	}
	if (h->error) {
		snprintf(msg, msglen, "%s", h->msg);
		return h->error;
	}
	snprintf(msg, msglen,
		 "%llu slot changes, %llu DMAs done and %llu refused as the model said, %llu discards (%llu dirty frames dropped)",
		 (unsigned long long)h->changes, (unsigned long long)h->dma_ok,
		 (unsigned long long)h->dma_refused, (unsigned long long)h->discards,
		 (unsigned long long)h->discarded_dirty);
	return 0;
}

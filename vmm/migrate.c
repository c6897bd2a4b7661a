/*
 * vmm/migrate.c — live migration between two VMs of one process (see
 * migrate.h). Each round, under the source's memory lock (so hotplug
 * batches land between rounds, never inside one):
 *   1. the destination's slots are brought to the source's layout; a slot
 *      that is new or changed since the last round (gmvm_mem's change_seq
 *      of its id moved: a new gm_space slot object, whose log starts
 *      empty) is marked dirty whole, so it is sent whole;
 *   2. KVM's dirty state goes into gm_space (vmm/dirty.c);
 *   3. each slot's log is harvested with gm_space_dirty_harvest
 *      into a batch of runs (a full batch stops the harvest midway, the
 *      rest stays dirty), then each run is copied to the destination's
 *      memory (found through the destination's gm_space); a send that
 *      fails puts its run back with gm_space_dirty_restore, and the slot
 *      is harvested again.
 * Pages never written are zero on both sides (slots log from creation,
 * host writes are marked too), so the first round sends only what was
 * written. Then: pause, a last round, the byte-for-byte comparison of all
 * slots, devices, irqchip, clock and vCPU state, destination start.
 */
#define _GNU_SOURCE
#include "migrate.h"

#include "hotplug.h"

#include <stdatomic.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void gmvm_migrate_opts_default(struct gmvm_migrate_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_rounds = 8;
	o->stop_pages = 64;
	o->min_round_ms = 20;
	o->verify = true;
	o->flat_walk = true;
}

/* ---- the destination's layout follows the source's ------------------------- */

struct rec {
	uint32_t id;
	uint32_t seq;                    /* the source's change_seq of the id */
	struct gm_space_slot shape;
	bool seen;
};

struct mig {
	struct gmvm_vm *src, *dst;
	const struct gmvm_migrate_opts *o;
	struct gmvm_migrate_stats *st;
	struct rec *recs;
	size_t nrecs, cap;
	struct gm_space_cache dst_cache;
	/* the send in progress */
	struct gmvm_round_stats *rs;
	unsigned round, sends;
	bool fail_pending;
	bool stopped;             /* the stop-and-copy round */
	char *err;
	size_t errlen;
};

static struct rec *rec_find(struct mig *m, uint32_t id)
{
	for (size_t i = 0; i < m->nrecs; i++)
		if (m->recs[i].id == id)
			return &m->recs[i];
	return NULL;
}

static struct rec *rec_add(struct mig *m, uint32_t id)
{
	if (m->nrecs == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct rec *p = realloc(m->recs, cap * sizeof(*p));
		if (!p)
			return NULL;
		m->recs = p;
		m->cap = cap;
	}
	struct rec *r = &m->recs[m->nrecs++];
	memset(r, 0, sizeof(*r));
	r->id = id;
	return r;
}

static bool same_shape(const struct gm_space_slot *a, const struct gm_space_slot *b)
{
	return a->base_gfn == b->base_gfn && a->npages == b->npages && a->hva == b->hva &&
	       a->flags == b->flags;
}

/* Mirrors one source slot on the destination (replacing what the id had). */
static int mirror_slot(struct mig *m, struct rec *r, const struct gm_space_slot *sl, bool had)
{
	uint64_t dhva = gmvm_vm_peer_hva(m->dst, m->src, sl->hva);
	if (!dhva)
		return fail(m->err, m->errlen, -EFAULT, "slot %u: hva 0x%llx has no destination memory",
			    sl->id, (unsigned long long)sl->hva);
	struct gmvm_change ch[2];
	size_t n = 0;
	if (had)
		ch[n++] = (struct gmvm_change){.kind = GMVM_DELETE, .id = sl->id};
	ch[n++] = (struct gmvm_change){GMVM_ADD, sl->id, sl->base_gfn << 12, sl->npages << 12, dhva,
				       sl->flags & GM_SPACE_SLOT_READONLY};
	char why[300];
	int rc = gmvm_mem_apply(&m->dst->mem, ch, n, why, sizeof(why));
	if (rc)
		return fail(m->err, m->errlen, rc, "destination slot %u: %s", sl->id, why);
	r->shape = *sl;
	r->seq = m->src->mem.change_seq[sl->id];
	return 0;
}

/* True if the destination already holds slot sl (same gfns, peer hva). */
static bool dst_has_same(struct mig *m, const struct gm_space_slot *sl)
{
	const struct gm_space_slot *d = gm_space_id_to_slot(m->dst->mem.space, sl->id);
	return d && d->base_gfn == sl->base_gfn && d->npages == sl->npages &&
	       d->hva == gmvm_vm_peer_hva(m->dst, m->src, sl->hva);
}

static int sync_layout(struct mig *m)
{
	struct gm_space *s = m->src->mem.space;
	struct gm_space_slot_iter it;
	const struct gm_space_slot *sl;
	for (size_t i = 0; i < m->nrecs; i++)
		m->recs[i].seen = false;
	gm_space_slot_iter_init(&it, s, 0, UINT64_MAX, 0);
	while (gm_space_slot_iter_next(&it, &sl) == 0) {
		struct rec *r = rec_find(m, sl->id);
		bool known = r != NULL;
		if (!r && !(r = rec_add(m, sl->id)))
			return fail(m->err, m->errlen, -ENOMEM, "out of memory");
		r->seen = true;
		if (known && r->seq == m->src->mem.change_seq[sl->id] && same_shape(&r->shape, sl))
			continue;
		/* first sight of a slot the destination was created with: its
		 * log covers everything written since its creation */
		if (!known && dst_has_same(m, sl) && (sl->flags & GM_SPACE_SLOT_DIRTY_LOG)) {
			r->shape = *sl;
			r->seq = m->src->mem.change_seq[sl->id];
			continue;
		}
		bool had = gm_space_id_to_slot(m->dst->mem.space, sl->id) != NULL;
		int rc = mirror_slot(m, r, sl, had);
		if (rc)
			return rc;
		m->st->layout_changes++;
		if (sl->flags & GM_SPACE_SLOT_DIRTY_LOG) {
			if ((rc = gm_space_dirty_restore(s, sl, sl->base_gfn, sl->npages)))
				return fail(m->err, m->errlen, rc, "marking slot %u for a full send: %s",
					    sl->id, strerror(-rc));
			m->st->resent_slots++;
		}
	}
	for (size_t i = 0; i < m->nrecs;) {
		if (m->recs[i].seen) {
			i++;
			continue;
		}
		struct gmvm_change del = {.kind = GMVM_DELETE, .id = m->recs[i].id};
		char why[300];
		int rc = gmvm_mem_apply(&m->dst->mem, &del, 1, why, sizeof(why));
		if (rc)
			return fail(m->err, m->errlen, rc, "destination slot %u: %s", del.id, why);
		m->recs[i] = m->recs[--m->nrecs];
		m->st->layout_changes++;
	}
	return 0;
}

/* ---- sending ---------------------------------------------------------------- */

/* A harvest fills a batch of runs (stopping midway, the rest still dirty,
 * when the batch is full); then the batch is sent. A send that fails puts
 * its run back (gm_space_dirty_restore) and the slot is harvested again:
 * no dirty page is lost. Only the harvest calls count as gm_space time. */
#define BATCH_RUNS 1024

struct batch {
	uint64_t first[BATCH_RUNS], count[BATCH_RUNS];
	unsigned n;
};

static int collect_run(void *ctx, uint64_t first_gfn, uint64_t count)
{
	struct batch *b = ctx;
	if (b->n == BATCH_RUNS)
		return -ENOSPC; /* stays dirty: the next harvest starts here */
	b->first[b->n] = first_gfn;
	b->count[b->n++] = count;
	return 0;
}

/* Sends one run; -EIO when the (test) failure hits this send. */
static int send_run(struct mig *m, const struct gm_space_slot *sl, uint64_t first_gfn,
		    uint64_t count)
{
	m->sends++;
	if (m->fail_pending && m->sends == m->o->fail_send) {
		m->fail_pending = false;
		m->st->failed_sends++;
		return -EIO; /* the "network" dropped this one */
	}
	uint64_t dhva;
	if (gm_space_gfn_to_hva(m->dst->mem.space, &m->dst_cache, first_gfn, &dhva))
		return -EFAULT;
	const uint8_t *from = (const uint8_t *)(uintptr_t)(sl->hva + ((first_gfn - sl->base_gfn) << 12));
	memcpy((void *)(uintptr_t)dhva, from, count << 12);
	m->rs->pages += count;
	m->rs->runs++;
	return 0;
}

static int send_slot(struct mig *m, const struct gm_space_slot *sl)
{
	static _Thread_local struct batch b;
	uint64_t from = sl->base_gfn, last = sl->base_gfn + sl->npages - 1;
	unsigned failures = 0;
	for (;;) {
		b.n = 0;
		uint64_t t0 = gmvm_now_ns();
		long n = gm_space_dirty_harvest(m->src->mem.space, sl, from, last, collect_run, &b);
		uint64_t t1 = gmvm_now_ns();
		m->rs->harvest_ns += t1 - t0;
		if (n < 0 && n != -ENOSPC)
			return fail(m->err, m->errlen, (int)n, "harvesting slot %u: %s", sl->id,
				    strerror((int)-n));
		bool failed = false;
		for (unsigned i = 0; i < b.n; i++) {
			int rc = send_run(m, sl, b.first[i], b.count[i]);
			if (rc == -EIO) { /* put it back: the harvest below sends it again */
				t0 = gmvm_now_ns();
				rc = gm_space_dirty_restore(m->src->mem.space, sl, b.first[i], b.count[i]);
				m->rs->harvest_ns += gmvm_now_ns() - t0;
				failed = true;
				if (++failures > 8)
					return fail(m->err, m->errlen, -EIO, "sending slot %u failed 8 times",
						    sl->id);
			}
			if (rc)
				return fail(m->err, m->errlen, rc, "sending slot %u: %s", sl->id,
					    strerror(-rc));
		}
		m->rs->copy_ns += gmvm_now_ns() - t1;
		if (failed) {
			from = sl->base_gfn; /* again from the start: the restored run */
			continue;
		}
		if (n != -ENOSPC)
			return 0;
		from = b.first[b.n - 1] + b.count[b.n - 1]; /* after the last run taken */
	}
}

static int one_round(struct mig *m, struct gmvm_round_stats *rs, unsigned round)
{
	uint64_t t0 = gmvm_now_ns();
	memset(rs, 0, sizeof(*rs));
	m->rs = rs;
	m->round = round;
	m->sends = 0;
	m->fail_pending = m->o->fail_armed && round == m->o->fail_round;
	pthread_mutex_lock(&m->src->mem.lock);
	gm_rcu_read_lock();
	int rc = sync_layout(m);
	/* the flat walk is a measurement: not while the guest is stopped */
	bool flat = m->o->flat_walk && !m->stopped;
	if (!rc)
		rc = gmvm_dirty_sync(m->src, &rs->d, flat, m->err, m->errlen);
	struct gm_space_slot_iter it;
	const struct gm_space_slot *sl;
	gm_space_slot_iter_init(&it, m->src->mem.space, 0, UINT64_MAX, 0);
	while (!rc && gm_space_slot_iter_next(&it, &sl) == 0)
		if (sl->flags & GM_SPACE_SLOT_DIRTY_LOG)
			rc = send_slot(m, sl);
	gm_rcu_read_unlock();
	pthread_mutex_unlock(&m->src->mem.lock);
	rs->ns = gmvm_now_ns() - t0;
	return rc;
}

/* ---- the switchover ---------------------------------------------------------- */

/* Compares n bytes; a large range only where either side has pages (a page
 * resident on neither is zero on both: anonymous or memfd, no swap). */
static bool same_bytes(const uint8_t *a, const uint8_t *b, uint64_t n, uint64_t *compared)
{
	if (n <= (1ull << 30)) {
		*compared += n;
		return memcmp(a, b, n) == 0;
	}
	enum { CHUNK = 1 << 18 }; /* pages per mincore call */
	static unsigned char va[CHUNK], vb[CHUNK];
	for (uint64_t off = 0; off < n; off += (uint64_t)CHUNK << 12) {
		uint64_t bytes = n - off < ((uint64_t)CHUNK << 12) ? n - off : (uint64_t)CHUNK << 12;
		if (mincore((void *)(a + off), bytes, va) || mincore((void *)(b + off), bytes, vb)) {
			*compared += bytes;
			if (memcmp(a + off, b + off, bytes))
				return false;
			continue;
		}
		for (uint64_t p = 0; p < bytes >> 12; p++) {
			if (!((va[p] | vb[p]) & 1))
				continue;
			*compared += 4096;
			if (memcmp(a + off + (p << 12), b + off + (p << 12), 4096))
				return false;
		}
	}
	return true;
}

static int verify(struct mig *m)
{
	struct gm_space_slot_iter it;
	const struct gm_space_slot *sl;
	m->st->identical = true;
	gm_rcu_read_lock();
	gm_space_slot_iter_init(&it, m->src->mem.space, 0, UINT64_MAX, 0);
	while (gm_space_slot_iter_next(&it, &sl) == 0) {
		uint64_t dhva;
		const struct gm_space_slot *d = gm_space_id_to_slot(m->dst->mem.space, sl->id);
		if (!d || d->base_gfn != sl->base_gfn || d->npages != sl->npages ||
		    gm_space_gfn_to_hva(m->dst->mem.space, NULL, sl->base_gfn, &dhva)) {
			m->st->identical = false;
			fail(m->err, m->errlen, -EIO, "destination has no slot %u like the source's", sl->id);
			break;
		}
		if (!same_bytes((const uint8_t *)(uintptr_t)sl->hva, (const uint8_t *)(uintptr_t)dhva,
				sl->npages << 12, &m->st->compared_bytes)) {
			m->st->identical = false;
			fail(m->err, m->errlen, -EIO,
			     "slot %u (gpa 0x%llx, %llu pages) differs between source and destination",
			     sl->id, (unsigned long long)(sl->base_gfn << 12),
			     (unsigned long long)sl->npages);
			break;
		}
	}
	gm_rcu_read_unlock();
	return m->st->identical ? 0 : -EIO;
}

static int move_vm_state(struct mig *m)
{
	struct gmvm_vm *s = m->src, *d = m->dst;
	for (int chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c = {.chip_id = (uint32_t)chip};
		if (ioctl(s->kvm.vm_fd, KVM_GET_IRQCHIP, &c) < 0 || ioctl(d->kvm.vm_fd, KVM_SET_IRQCHIP, &c) < 0)
			return fail(m->err, m->errlen, -errno, "irqchip %d: %s", chip, strerror(errno));
	}
	struct kvm_clock_data clk;
	memset(&clk, 0, sizeof(clk));
	if (ioctl(s->kvm.vm_fd, KVM_GET_CLOCK, &clk) < 0)
		return fail(m->err, m->errlen, -errno, "KVM_GET_CLOCK: %s", strerror(errno));
	clk.flags &= KVM_CLOCK_REALTIME;
	if (ioctl(d->kvm.vm_fd, KVM_SET_CLOCK, &clk) < 0)
		return fail(m->err, m->errlen, -errno, "KVM_SET_CLOCK: %s", strerror(errno));
	struct gmvm_vcpu_state *st = gmvm_vcpu_state_new();
	if (!st)
		return fail(m->err, m->errlen, -ENOMEM, "out of memory");
	int rc = 0;
	for (unsigned i = 0; i < s->nvcpus && !rc; i++) {
		rc = gmvm_vcpu_save(&s->vcpu[i], st, m->err, m->errlen);
		if (!rc)
			rc = gmvm_vcpu_load(&d->vcpu[i], st, m->err, m->errlen);
	}
	gmvm_vcpu_state_free(st);
	/* devices */
	pthread_mutex_lock(&s->dev.lock);
	pthread_mutex_lock(&d->dev.lock);
	memcpy(d->dev.bank, s->dev.bank, sizeof(d->dev.bank));
	atomic_store(&d->dev.done_count, atomic_load(&s->dev.done_count));
	pthread_mutex_unlock(&d->dev.lock);
	pthread_mutex_unlock(&s->dev.lock);
	gmvm_serial_flush(&s->serial);
	return rc;
}

static bool all_done(struct gmvm_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (!atomic_load(&vm->vcpu[i].finished))
			return false;
	return true;
}

int gmvm_migrate(struct gmvm_vm *src, struct gmvm_vm *dst, const struct gmvm_migrate_opts *o,
		 struct gmvm_migrate_stats *st, char *err, size_t errlen)
{
	struct mig m = {.src = src, .dst = dst, .o = o, .st = st, .err = err, .errlen = errlen};
	memset(st, 0, sizeof(*st));
	gm_space_cache_init(&m.dst_cache);
	uint64_t t0 = gmvm_now_ns();
	unsigned max = o->max_rounds < GMVM_MAX_ROUNDS ? o->max_rounds : GMVM_MAX_ROUNDS;
	int rc = 0;
	for (unsigned r = 0; r < max && !rc; r++) {
		rc = one_round(&m, &st->round[r], r);
		st->rounds = r + 1;
		st->pages_total += st->round[r].pages;
		if (rc)
			break;
		if (o->after_round)
			o->after_round(o->after_round_ctx, r);
		if ((r > 0 && st->round[r].pages <= o->stop_pages) || all_done(src))
			break;
		struct timespec ts = {0, (long)(o->min_round_ms * 1000000ull)};
		nanosleep(&ts, NULL);
	}
	if (rc) {
		free(m.recs);
		return rc;
	}
	if (o->quiesce)
		o->quiesce(o->quiesce_ctx);
	uint64_t tp = gmvm_now_ns();
	gmvm_vm_pause(src);
	m.stopped = true;
	struct gmvm_round_stats *last = &st->round[st->rounds];
	rc = one_round(&m, last, st->rounds);
	st->pages_total += last->pages;
	uint64_t tv = gmvm_now_ns();
	if (!rc && o->verify)
		rc = verify(&m);
	st->verify_ns = gmvm_now_ns() - tv;
	if (!rc)
		rc = move_vm_state(&m);
	gmvm_vm_stop(src);
	if (!rc)
		rc = gmvm_vm_start(dst, err, errlen);
	uint64_t te = gmvm_now_ns();
	st->downtime_ns = te - tp - st->verify_ns;
	st->total_ns = te - t0 - st->verify_ns;
	free(m.recs);
	return rc;
}

/* ---- gmvm --migrate ------------------------------------------------------------ */

static void print_stats(const struct gmvm_migrate_stats *st)
{
	printf("gmvm: migration: %u pre-copy rounds + stop-and-copy, %" PRIu64 " pages sent, total %.1f ms, downtime %.2f ms\n",
	       st->rounds, st->pages_total, st->total_ns / 1e6, st->downtime_ns / 1e6);
	for (unsigned r = 0; r <= st->rounds; r++) {
		const struct gmvm_round_stats *x = &st->round[r];
		printf("gmvm:   round %u%s: %" PRIu64 " pages in %" PRIu64 " runs, %.2f ms; KVM %.1f us, gm_space import %.1f us + harvest %.1f us, ring entries %.1f us, copy %.1f us, flat walk %.1f us\n",
		       r, r == st->rounds ? " (stop-and-copy)" : "", x->pages, x->runs, x->ns / 1e6,
		       x->d.kvm_ns / 1e3, x->d.import_ns / 1e3, x->harvest_ns / 1e3, x->d.ring_ns / 1e3,
		       x->copy_ns / 1e3, x->d.flat_ns / 1e3);
	}
	printf("gmvm: switchover: destination memory %s the source's (%" PRIu64 " bytes compared); %" PRIu64 " failed sends retried, %" PRIu64 " slots resent whole, %" PRIu64 " layout changes mirrored\n",
	       st->identical ? "byte-identical to" : "DIFFERS from", st->compared_bytes, st->failed_sends,
	       st->resent_slots, st->layout_changes);
}

/* A discard on the source (its dirty state dropped) is a discard on the
 * destination too: the pages read as zero on both sides. */
static void discard_on_dst(void *ctx, uint64_t first_gfn, uint64_t count)
{
	struct gmvm_vm *dst = ctx;
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	for (uint64_t g = first_gfn; g < first_gfn + count; g++) {
		uint64_t hva;
		if (gm_space_gfn_to_hva(dst->mem.space, &c, g, &hva) == 0)
			memset((void *)(uintptr_t)hva, 0, 4096);
	}
}

static void stop_hotplug(void *ctx)
{
	struct gmvm_hotplug *h = ctx;
	char msg[300];
	int rc = gmvm_hotplug_stop(h, msg, sizeof(msg));
	printf("gmvm: hotplug (stopped at the switchover): %s%s\n", rc ? "FAILED: " : "", msg);
	if (rc)
		h->error = rc;
}

int gmvm_migrate_main(const struct gmvm_config *cfg, const struct gmvm_migrate_opts *o,
		      bool hotplug)
{
	struct gmvm_vm *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct gmvm_hotplug *hp = calloc(1, sizeof(*hp));
	struct gmvm_migrate_opts opts = *o;
	struct gmvm_migrate_stats *st = calloc(1, sizeof(*st));
	char err[600];
	int rc = -ENOMEM, status = 1;
	if (!src || !dst || !hp || !st)
		goto out;
	if ((rc = gmvm_vm_create(src, cfg, false, err, sizeof(err))))
		goto report;
	struct gmvm_config dcfg = *cfg; /* the destination tracks nothing */
	dcfg.dirty_log = false;
	dcfg.ring_entries = 0;
	if ((rc = gmvm_vm_create(dst, &dcfg, true, err, sizeof(err))))
		goto report;
	if (hotplug) {
		if ((rc = gmvm_hotplug_start(hp, src, discard_on_dst, dst, err, sizeof(err))))
			goto report;
		opts.quiesce = stop_hotplug;
		opts.quiesce_ctx = hp;
	}
	if ((rc = gmvm_vm_start(src, err, sizeof(err))))
		goto report;
	rc = gmvm_migrate(src, dst, &opts, st, err, sizeof(err));
	if (hp->started)
		stop_hotplug(hp);
	print_stats(st);
	if (rc)
		goto report;
	if (hp->error) {
		rc = hp->error;
		snprintf(err, sizeof(err), "hotplug failed");
		goto report;
	}
	if ((rc = gmvm_vm_wait(dst, err, sizeof(err))))
		goto report;
	uint64_t sum;
	if ((rc = gmvm_vm_check(dst, &sum, err, sizeof(err))))
		goto report;
	printf("gmvm: checksum 0x%016" PRIx64 " ok (%u vCPUs, finished on the destination, guest and host agree)\n",
	       sum, dst->nvcpus);
	status = st->identical || !opts.verify ? 0 : 1;
	goto out;
report:
	fprintf(stderr, "gmvm: %s\n", err);
out:
	if (src)
		gmvm_vm_destroy(src);
	if (dst)
		gmvm_vm_destroy(dst);
	free(src);
	free(dst);
	free(hp);
	free(st);
	gmvm_dirty_release();
	return status;
}

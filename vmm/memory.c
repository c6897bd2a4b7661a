/*
 * vmm/memory.c — gm_space mirrored into KVM's memslots (see memory.h).
 *
 * A batch becomes a plan: for each slot id it touches, the slot before and
 * after (present or not, gfn, pages, hva, flags), computed in order over
 * an overlay of the batch's earlier changes on top of gm_space. Every
 * "after" is checked against KVM's rules and against every other slot
 * (gm_space's, through a gfn-range iteration, and the overlay's). Then one
 * or two KVM calls per plan step (a resize, or a change of hva, is a
 * delete and an add: KVM cannot resize a slot), undone in reverse order
 * if one fails, then one gm_space commit.
 */
#define _GNU_SOURCE
#include "memory.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define KVM_MAX_SLOT_PAGES ((1ull << 31) - 1) /* KVM_MEM_MAX_NR_PAGES */
#define SPACE_FLAGS (GM_SPACE_SLOT_READONLY | GM_SPACE_SLOT_DIRTY_LOG)

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

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

uint32_t gmvm_kvm_flags(uint32_t f)
{
	return ((f & GM_SPACE_SLOT_READONLY) ? KVM_MEM_READONLY : 0) |
	       ((f & GM_SPACE_SLOT_DIRTY_LOG) ? KVM_MEM_LOG_DIRTY_PAGES : 0);
}

int gmvm_mem_init(struct gmvm_mem *m, struct gmvm_kvm *kvm)
{
	memset(m, 0, sizeof(*m));
	m->kvm = kvm;
	m->max_slots = kvm ? kvm->max_slots : GM_SPACE_DEFAULT_MAX_SLOTS;
	m->max_gfn = kvm ? kvm->max_gfn : (1ull << 40) - 1;
	m->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	m->hva_limit = 0x7ffffffff000ull; /* x86-64 4-level TASK_SIZE_MAX */
	struct gm_space_config cfg = {.max_slots = m->max_slots};
	m->change_seq = calloc(m->max_slots, sizeof(*m->change_seq));
	if (!m->change_seq)
		return -ENOMEM;
	int rc = gm_space_create(&m->space, &cfg, 0, NULL);
	if (rc) {
		free(m->change_seq);
		m->change_seq = NULL;
		return rc;
	}
	pthread_mutex_init(&m->lock, NULL);
	return 0;
}

void gmvm_mem_destroy(struct gmvm_mem *m)
{
	if (!m->space)
		return;
	gm_space_destroy(m->space);
	pthread_mutex_destroy(&m->lock);
	free(m->change_seq);
	m->change_seq = NULL;
	m->space = NULL;
}

/* ---- the plan -------------------------------------------------------------- */

struct vslot {
	bool present;
	uint64_t gfn, npages, hva;
	uint32_t flags;
};

struct step {
	uint32_t id;
	struct vslot before, after;
	int kvm_done;            /* KVM calls made for this step (0..2) */
};

struct plan {
	struct step *v;
	size_t n;
};

static struct vslot space_slot(struct gmvm_mem *m, uint32_t id)
{
	const struct gm_space_slot *s = gm_space_id_to_slot(m->space, id);
	if (!s)
		return (struct vslot){0};
	return (struct vslot){true, s->base_gfn, s->npages, s->hva, s->flags};
}

static struct step *plan_step(struct gmvm_mem *m, struct plan *p, uint32_t id)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].id == id)
			return &p->v[i];
	struct step *st = &p->v[p->n++];
	st->id = id;
	st->before = st->after = space_slot(m, id);
	st->kvm_done = 0;
	return st;
}

static bool ranges_meet(uint64_t a, uint64_t an, uint64_t b, uint64_t bn)
{
	return a <= b + (bn - 1) && b <= a + (an - 1);
}

/* KVM's rules for one slot's shape (its range and flags). */
static int check_shape(struct gmvm_mem *m, uint32_t id, const struct vslot *s,
		       char *err, size_t errlen)
{
	uint64_t bytes = s->npages << 12, gpa = s->gfn << 12;
	if (s->flags & ~SPACE_FLAGS)
		return fail(err, errlen, -EINVAL, "slot %u: unknown flags 0x%x", id, s->flags);
	if (s->npages > KVM_MAX_SLOT_PAGES)
		return fail(err, errlen, -EINVAL,
			    "slot %u: %llu pages, KVM takes at most %llu per slot", id,
			    (unsigned long long)s->npages, KVM_MAX_SLOT_PAGES);
	if (s->gfn + s->npages - 1 > m->max_gfn || s->gfn + s->npages - 1 < s->gfn)
		return fail(err, errlen, -EINVAL,
			    "slot %u: gpa range 0x%llx+0x%llx past KVM's last gfn 0x%llx", id,
			    (unsigned long long)gpa, (unsigned long long)bytes,
			    (unsigned long long)m->max_gfn);
	if ((gpa | bytes | s->hva) & (m->page_size - 1))
		return fail(err, errlen, -EINVAL,
			    "slot %u: gpa 0x%llx, size 0x%llx, hva 0x%llx not all aligned to the host page (%llu)",
			    id, (unsigned long long)gpa, (unsigned long long)bytes,
			    (unsigned long long)s->hva, (unsigned long long)m->page_size);
	if (s->hva + bytes < s->hva || s->hva + bytes > m->hva_limit)
		return fail(err, errlen, -EINVAL,
			    "slot %u: hva range 0x%llx+0x%llx past user space", id,
			    (unsigned long long)s->hva, (unsigned long long)bytes);
	return 0;
}

/* s (slot id, after the plan's changes so far) meets no other slot. */
static int check_overlap(struct gmvm_mem *m, const struct plan *p, uint32_t id,
			 const struct vslot *s, char *err, size_t errlen)
{
	struct gm_space_slot_iter it;
	const struct gm_space_slot *o;
	gm_space_slot_iter_init(&it, m->space, s->gfn, s->gfn + s->npages - 1, 0);
	while (gm_space_slot_iter_next(&it, &o) == 0) {
		bool in_plan = false;
		for (size_t i = 0; i < p->n; i++)
			in_plan |= p->v[i].id == o->id;
		if (!in_plan && o->id != id)
			return fail(err, errlen, -EEXIST,
				    "slot %u: gfns 0x%llx..0x%llx overlap slot %u", id,
				    (unsigned long long)s->gfn,
				    (unsigned long long)(s->gfn + s->npages - 1), o->id);
	}
	for (size_t i = 0; i < p->n; i++) {
		const struct vslot *q = &p->v[i].after;
		if (p->v[i].id != id && q->present &&
		    ranges_meet(s->gfn, s->npages, q->gfn, q->npages))
			return fail(err, errlen, -EEXIST, "slot %u: gfns overlap slot %u", id,
				    p->v[i].id);
	}
	return 0;
}

/* The slot after change c, from the slot before (st->after so far). */
static int change_result(const struct gmvm_change *c, struct step *st,
			 struct vslot *out, char *err, size_t errlen)
{
	struct vslot cur = st->after;
	*out = cur;
	if (c->kind == GMVM_ADD) {
		if (cur.present)
			return fail(err, errlen, -EEXIST, "slot %u: already exists", c->id);
		if (!c->bytes)
			return fail(err, errlen, -EINVAL, "slot %u: size 0", c->id);
		if ((c->gpa | c->bytes) & 4095)
			return fail(err, errlen, -EINVAL,
				    "slot %u: gpa 0x%llx / size 0x%llx not page aligned", c->id,
				    (unsigned long long)c->gpa, (unsigned long long)c->bytes);
		*out = (struct vslot){true, c->gpa >> 12, c->bytes >> 12, c->hva, c->flags};
		return 0;
	}
	if (!cur.present)
		return fail(err, errlen, -ENOENT, "slot %u: no such slot", c->id);
	switch (c->kind) {
	case GMVM_DELETE:
		out->present = false;
		return 0;
	case GMVM_MOVE:
		if (c->gpa & 4095)
			return fail(err, errlen, -EINVAL, "slot %u: gpa 0x%llx not page aligned",
				    c->id, (unsigned long long)c->gpa);
		out->gfn = c->gpa >> 12;
		return 0;
	case GMVM_RESIZE:
		if (!c->bytes || (c->bytes & 4095))
			return fail(err, errlen, -EINVAL, "slot %u: new size 0x%llx not a page multiple",
				    c->id, (unsigned long long)c->bytes);
		out->npages = c->bytes >> 12;
		return 0;
	case GMVM_FLAGS:
		if ((c->flags ^ cur.flags) & GM_SPACE_SLOT_READONLY)
			return fail(err, errlen, -EINVAL,
				    "slot %u: KVM cannot make a slot read-only or writable in place", c->id);
		out->flags = c->flags;
		return 0;
	default:
		return fail(err, errlen, -EINVAL, "slot %u: unknown change", c->id);
	}
}

static int make_plan(struct gmvm_mem *m, const struct gmvm_change *v, size_t n,
		     struct plan *p, char *err, size_t errlen)
{
	p->n = 0;
	for (size_t i = 0; i < n; i++) {
		const struct gmvm_change *c = &v[i];
		if (c->id >= m->max_slots)
			return fail(err, errlen, -EINVAL, "slot id %u: KVM has ids 0..%u", c->id,
				    m->max_slots - 1);
		struct step *st = plan_step(m, p, c->id);
		struct vslot next;
		int rc = change_result(c, st, &next, err, errlen);
		if (!rc && next.present)
			rc = check_shape(m, c->id, &next, err, errlen);
		if (rc)
			return rc;
		st->after = next;
		if (next.present && (rc = check_overlap(m, p, c->id, &next, err, errlen)))
			return rc;
	}
	return 0;
}

int gmvm_mem_check(struct gmvm_mem *m, const struct gmvm_change *v, size_t n,
		   char *err, size_t errlen)
{
	if (!m || (!v && n))
		return -EINVAL;
	struct plan p = {calloc(n ? n : 1, sizeof(struct step)), 0};
	if (!p.v)
		return fail(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_lock(&m->lock);
	int rc = make_plan(m, v, n, &p, err, errlen);
	pthread_mutex_unlock(&m->lock);
	free(p.v);
	return rc;
}

/* ---- KVM calls -------------------------------------------------------------- */

static int kvm_put(struct gmvm_mem *m, uint32_t id, const struct vslot *s)
{
	return gmvm_kvm_set_slot(m->kvm, id, gmvm_kvm_flags(s->flags), s->gfn << 12,
				 s->npages << 12, s->hva);
}

static int kvm_drop(struct gmvm_mem *m, uint32_t id, const struct vslot *s)
{
	return gmvm_kvm_set_slot(m->kvm, id, gmvm_kvm_flags(s->flags), s->gfn << 12, 0, s->hva);
}

static bool kvm_in_place(const struct vslot *a, const struct vslot *b)
{
	return a->present && b->present && a->npages == b->npages && a->hva == b->hva;
}

/* Takes KVM from `from` to `to` for one id; counts the calls that took. */
static int kvm_transition(struct gmvm_mem *m, uint32_t id, const struct vslot *from,
			  const struct vslot *to, int *done)
{
	int rc;
	*done = 0;
	if (kvm_in_place(from, to)) {
		if (from->gfn == to->gfn && from->flags == to->flags)
			return 0;
		rc = kvm_put(m, id, to);
		*done = rc == 0;
		return rc;
	}
	if (from->present) {
		if ((rc = kvm_drop(m, id, from)))
			return rc;
		*done = 1;
	}
	if (to->present) {
		if ((rc = kvm_put(m, id, to)))
			return rc;
		*done = 2;
	}
	return 0;
}

/* Undoes a step's first `done` calls (a failed step's partial work too). */
static int kvm_undo(struct gmvm_mem *m, const struct step *st, int done)
{
	const struct vslot *from = &st->before, *to = &st->after;
	if (!done)
		return 0;
	if (kvm_in_place(from, to))
		return kvm_put(m, st->id, from);
	int rc = 0;
	if (done == 2 && to->present)
		rc |= kvm_drop(m, st->id, to);
	if (from->present)
		rc |= kvm_put(m, st->id, from);
	return rc;
}

static void kvm_undo_all(struct gmvm_mem *m, struct plan *p, size_t upto)
{
	for (size_t i = upto; i-- > 0;)
		if (kvm_undo(m, &p->v[i], p->v[i].kvm_done))
			fprintf(stderr, "gmvm: FATAL: undoing KVM slot %u failed: KVM and gm_space diverge\n",
				p->v[i].id);
}

static int kvm_apply(struct gmvm_mem *m, struct plan *p, char *err, size_t errlen)
{
	if (!m->kvm)
		return 0;
	for (size_t i = 0; i < p->n; i++) {
		struct step *st = &p->v[i];
		int rc = kvm_transition(m, st->id, &st->before, &st->after, &st->kvm_done);
		if (rc) {
			kvm_undo_all(m, p, i + 1);
			return fail(err, errlen, rc, "KVM refused slot %u: %s (batch undone)", st->id,
				    strerror(-rc));
		}
	}
	return 0;
}

/* ---- gm_space ------------------------------------------------------------ */

static int space_batch(struct gmvm_mem *m, const struct gmvm_change *v, size_t n)
{
	gm_space_batch_begin(m->space);
	for (size_t i = 0; i < n; i++) {
		const struct gmvm_change *c = &v[i];
		int rc;
		switch (c->kind) {
		case GMVM_ADD:
			rc = gm_space_batch_add(m->space, c->id, c->gpa >> 12, c->bytes >> 12, c->hva,
						c->flags);
			break;
		case GMVM_DELETE:
			rc = gm_space_batch_remove(m->space, c->id);
			break;
		case GMVM_MOVE:
			rc = gm_space_batch_move(m->space, c->id, c->gpa >> 12);
			break;
		case GMVM_RESIZE:
			rc = gm_space_batch_resize(m->space, c->id, c->bytes >> 12);
			break;
		default:
			rc = gm_space_batch_set_flags(m->space, c->id, c->flags);
			break;
		}
		if (rc) {
			gm_space_batch_begin(m->space); /* discard */
			return rc;
		}
	}
	return gm_space_batch_commit(m->space);
}

/* Marks (value GMVM_ATTR_REMOVING) or clears the old gfns of every slot
 * the plan removes, moves or resizes. */
static int mark_leaving(struct gmvm_mem *m, const struct plan *p, uint64_t value)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct vslot *b = &p->v[i].before, *a = &p->v[i].after;
		if (!b->present || (a->present && a->gfn == b->gfn && a->npages >= b->npages))
			continue;
		int rc = gm_space_attr_set(m->space, b->gfn, b->gfn + b->npages - 1, value);
		if (rc)
			return rc;
	}
	return 0;
}

int gmvm_mem_apply(struct gmvm_mem *m, const struct gmvm_change *v, size_t n,
		   char *err, size_t errlen)
{
	if (!m || (!v && n))
		return -EINVAL;
	if (!n)
		return 0;
	struct plan p = {calloc(n, sizeof(struct step)), 0};
	if (!p.v)
		return fail(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_lock(&m->lock);
	uint64_t t0 = now_ns();
	int rc = make_plan(m, v, n, &p, err, errlen);
	uint64_t t1 = now_ns(), t2 = t1, t3 = t1, t_attr = 0;
	if (rc)
		goto out;
	rc = mark_leaving(m, &p, GMVM_ATTR_REMOVING);
	if (rc) {
		mark_leaving(m, &p, 0);
		rc = fail(err, errlen, rc, "gm_space attributes: %s", strerror(-rc));
		goto out;
	}
	t2 = now_ns();
	t_attr = t2 - t1;
	rc = kvm_apply(m, &p, err, errlen);
	t3 = now_ns();
	if (rc) {
		mark_leaving(m, &p, 0);
		goto out;
	}
	uint64_t tc = now_ns();
	rc = space_batch(m, v, n);
	m->last_commit_ns = now_ns() - tc;
	if (rc) {
		kvm_undo_all(m, &p, p.n);
		rc = fail(err, errlen, rc, "gm_space refused the batch: %s (KVM undone)",
			  strerror(-rc));
	} else {
		for (size_t i = 0; i < p.n; i++)
			m->change_seq[p.v[i].id]++;
	}
	mark_leaving(m, &p, 0);
out:
	m->last_check_ns = t1 - t0;
	m->last_kvm_ns = t3 - t2;
	m->last_space_ns = rc ? 0 : now_ns() - t3 + t_attr;
	pthread_mutex_unlock(&m->lock);
	free(p.v);
	return rc;
}

/* ---- host memory ------------------------------------------------------------ */

int gmvm_ram_map(struct gmvm_ram *r, uint64_t bytes, bool memfd, bool noreserve)
{
	memset(r, 0, sizeof(*r));
	r->memfd = -1;
	if (!bytes || bytes > (1ull << 46))
		return -EINVAL;
	int fl = MAP_SHARED | (noreserve ? MAP_NORESERVE : 0);
	if (memfd) {
		r->memfd = memfd_create("gmvm-ram", MFD_CLOEXEC);
		if (r->memfd < 0)
			return -errno;
		if (ftruncate(r->memfd, (off_t)bytes)) {
			int rc = -errno;
			close(r->memfd);
			r->memfd = -1;
			return rc;
		}
	} else {
		fl = MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0);
	}
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, fl, r->memfd, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;
		if (r->memfd >= 0)
			close(r->memfd);
		r->memfd = -1;
		return rc;
	}
	r->hva = p;
	r->bytes = bytes;
	return 0;
}

void gmvm_ram_unmap(struct gmvm_ram *r)
{
	if (r->hva)
		munmap(r->hva, r->bytes);
	if (r->memfd >= 0)
		close(r->memfd);
	memset(r, 0, sizeof(*r));
	r->memfd = -1;
}

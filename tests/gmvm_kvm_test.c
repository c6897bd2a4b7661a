/*
 * tests/gmvm_kvm_test.c — gmvm's memory layer against the real KVM:
 *  - a differential on random slot changes: every change goes through
 *    gmvm's checks alone (gmvm_mem_check: no KVM call), then
 *    gmvm_mem_apply (checks, KVM, gm_space), and, as the raw ioctl KVM
 *    would get, to a second VM; all three must accept or all refuse (so
 *    gm_space never takes what KVM refuses, without relying on the
 *    rollback), and gm_space must then hold exactly what the raw VM holds;
 *  - rollback: a batch KVM refuses after gmvm's checks passed (the gfn
 *    limit is faked past KVM's) leaves KVM and gm_space as they were.
 * Without a usable /dev/kvm: "skipped: <reason>", exit 77.
 */
#include "harness.h"

#include "memory.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define NIDS 12
#define HOST_BYTES (64ull << 20)

static void reg(void)
{
	static _Thread_local bool done;
	if (!done) {
		gm_rcu_register_thread();
		done = true;
	}
}

struct raw_slot {
	bool present;
	uint64_t gpa, bytes, hva;
	uint32_t flags; /* KVM flags */
};

struct diff {
	struct gmvm_kvm k;
	struct gmvm_mem mem;
	int raw_vm;
	struct raw_slot raw[NIDS + 1];
	uint8_t *host;
};

static int raw_set(struct diff *d, uint32_t id, uint32_t flags, uint64_t gpa, uint64_t bytes,
		   uint64_t hva)
{
	struct kvm_userspace_memory_region r = {id, flags, gpa, bytes, hva};
	return ioctl(d->raw_vm, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static void diff_init(struct diff *d)
{
	const char *why;
	memset(d, 0, sizeof(*d));
	reg();
	CHECK_EQ(gmvm_kvm_open(&d->k, 0, false, &why), 0);
	CHECK_EQ(gmvm_mem_init(&d->mem, &d->k), 0);
	int kfd = open("/dev/kvm", O_RDWR);
	CHECK(kfd >= 0);
	d->raw_vm = ioctl(kfd, KVM_CREATE_VM, 0);
	close(kfd);
	CHECK(d->raw_vm >= 0);
	d->host = mmap(NULL, HOST_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(d->host != MAP_FAILED);
}

static void diff_destroy(struct diff *d)
{
	gmvm_mem_destroy(&d->mem);
	gmvm_kvm_close(&d->k);
	close(d->raw_vm);
	munmap(d->host, HOST_BYTES);
}

static uint64_t pick_gpa(struct gm_rng *r, uint64_t max_gfn)
{
	switch (gm_rng_below(r, 10)) {
	case 0: return gm_rng_below(r, 1ull << 40) & ~0xfffull;            /* anywhere */
	case 1: return ((max_gfn - gm_rng_below(r, 8)) << 12);             /* at KVM's limit */
	case 2: return gm_rng_below(r, 1ull << 26) | (1 + gm_rng_below(r, 4095)); /* misaligned */
	case 3: return ~0ull - (gm_rng_below(r, 4) << 12) - 0xfff;         /* wraps */
	case 4: return 0xfee00000ull + (gm_rng_below(r, 4) << 12);         /* x86's APIC page */
	default: return gm_rng_below(r, 1ull << 26) & ~0xfffull;           /* 64 MiB: overlaps */
	}
}

static uint64_t pick_bytes(struct gm_rng *r)
{
	switch (gm_rng_below(r, 12)) {
	case 0: return 0;
	case 1: return (1 + gm_rng_below(r, 64)) * 4096 + 1 + gm_rng_below(r, 4095);
	case 2: return 1ull << 43;                                         /* 2^31 pages */
	default: return (1 + gm_rng_below(r, 64)) * 4096;
	}
}

static uint64_t pick_hva(struct gm_rng *r, struct diff *d)
{
	switch (gm_rng_below(r, 14)) {
	case 0: return (uintptr_t)d->host + 8 + gm_rng_below(r, 4000);     /* misaligned */
	case 1: return 0x7ffffffff000ull - (gm_rng_below(r, 4) << 12);     /* top of user space */
	case 2: return ~0ull - 0xfff;                                      /* wraps */
	default: return (uintptr_t)d->host + (gm_rng_below(r, HOST_BYTES >> 12) << 12);
	}
}

static uint64_t n_accepted, n_refused;

/* One random change through both; they must agree. */
static void random_change(struct gm_rng *r, struct diff *d, uint64_t step)
{
	uint32_t id = (uint32_t)gm_rng_below(r, NIDS);
	if (gm_rng_chance(r, 1, 40))
		id = d->mem.max_slots + (uint32_t)gm_rng_below(r, 3); /* past KVM's ids */
	struct raw_slot *cur = id < NIDS ? &d->raw[id] : &d->raw[NIDS];
	struct gmvm_change c = {.id = id};
	struct raw_slot next = *cur;
	int kind = (int)gm_rng_below(r, 5);
	if (!cur->present && kind != 4 && gm_rng_chance(r, 3, 4))
		kind = 0;
	int raw_rc;
	switch (kind) {
	case 0: case 1: /* add */
		c.kind = GMVM_ADD;
		c.gpa = pick_gpa(r, d->mem.max_gfn);
		c.bytes = pick_bytes(r);
		c.hva = pick_hva(r, d);
		c.flags = gm_rng_chance(r, 1, 4) ? GM_SPACE_SLOT_DIRTY_LOG
			  : gm_rng_chance(r, 1, 6) ? GM_SPACE_SLOT_READONLY : 0;
		if (cur->present) { /* KVM would take it as a change of the slot: skip that case */
			c.kind = GMVM_DELETE;
			raw_rc = raw_set(d, id, cur->flags, cur->gpa, 0, cur->hva);
			next.present = false;
			break;
		}
		raw_rc = raw_set(d, id, gmvm_kvm_flags(c.flags), c.gpa, c.bytes, c.hva);
		next = (struct raw_slot){true, c.gpa, c.bytes, c.hva, gmvm_kvm_flags(c.flags)};
		break;
	case 2: /* delete */
		c.kind = GMVM_DELETE;
		raw_rc = cur->present ? raw_set(d, id, cur->flags, cur->gpa, 0, cur->hva)
				      : raw_set(d, id, 0, 0, 0, (uintptr_t)d->host);
		next.present = false;
		break;
	case 3: /* move */
		c.kind = GMVM_MOVE;
		c.gpa = pick_gpa(r, d->mem.max_gfn);
		raw_rc = cur->present ? raw_set(d, id, cur->flags, c.gpa, cur->bytes, cur->hva)
				      : raw_set(d, id, 0, c.gpa, 0, (uintptr_t)d->host);
		next.gpa = c.gpa;
		break;
	default: /* flags: dirty logging on/off, sometimes a read-only toggle */
		c.kind = GMVM_FLAGS;
		c.flags = (gm_rng_chance(r, 1, 2) ? GM_SPACE_SLOT_DIRTY_LOG : 0) |
			  (gm_rng_chance(r, 1, 5) ? GM_SPACE_SLOT_READONLY : 0);
		if (!cur->present) {
			raw_rc = raw_set(d, id, gmvm_kvm_flags(c.flags), 0, 0, (uintptr_t)d->host);
		} else {
			raw_rc = raw_set(d, id, gmvm_kvm_flags(c.flags), cur->gpa, cur->bytes, cur->hva);
			next.flags = gmvm_kvm_flags(c.flags);
		}
		break;
	}
	char err[300] = "";
	/* gmvm's own checks (no KVM call) already give KVM's verdict */
	int check_rc = gmvm_mem_check(&d->mem, &c, 1, err, sizeof(err));
	CHECK_MSG((check_rc == 0) == (raw_rc == 0),
		  "step %llu: change kind %d id %u gpa 0x%llx bytes 0x%llx hva 0x%llx flags %u: gmvm's checks %d (%s), KVM %d",
		  (unsigned long long)step, c.kind, id, (unsigned long long)c.gpa,
		  (unsigned long long)c.bytes, (unsigned long long)c.hva, c.flags, check_rc, err, raw_rc);
	int rc = gmvm_mem_apply(&d->mem, &c, 1, err, sizeof(err));
	CHECK_MSG((rc == 0) == (raw_rc == 0),
		  "step %llu: change kind %d id %u gpa 0x%llx bytes 0x%llx hva 0x%llx flags %u: gmvm %d (%s), KVM %d",
		  (unsigned long long)step, c.kind, id, (unsigned long long)c.gpa,
		  (unsigned long long)c.bytes, (unsigned long long)c.hva, c.flags, rc, err, raw_rc);
	if (rc == 0)
		*cur = next;
	if (rc == 0)
		n_accepted++;
	else
		n_refused++;
	/* gm_space holds what the raw VM holds */
	for (uint32_t i = 0; i < NIDS; i++) {
		const struct gm_space_slot *s = gm_space_id_to_slot(d->mem.space, i);
		CHECK_EQ(s != NULL, d->raw[i].present);
		if (s) {
			CHECK_EQ(s->base_gfn << 12, d->raw[i].gpa);
			CHECK_EQ(s->npages << 12, d->raw[i].bytes);
			CHECK_EQ(s->hva, d->raw[i].hva);
			CHECK_EQ(gmvm_kvm_flags(s->flags), d->raw[i].flags);
		}
	}
}

GM_TEST(gm_space_and_kvm_agree_on_random_slot_changes)
{
	struct gm_rng *r = gm_test_rng();
	struct diff d;
	diff_init(&d);
	uint64_t steps = gm_test_iters(3000);
	for (uint64_t i = 0; i < steps; i++) {
		random_change(r, &d, i);
		if (i % 100 == 0)
			CHECK_VALID(gm_space_validate(d.mem.space, &reason), reason);
	}
	gm_test_note("%llu changes accepted by both, %llu refused by both",
		     (unsigned long long)n_accepted, (unsigned long long)n_refused);
	CHECK(n_accepted > steps / 10 && n_refused > steps / 10);
	diff_destroy(&d);
}

GM_TEST(kvm_refusal_rolls_back_batch)
{
	struct diff d;
	diff_init(&d);
	uint64_t h = (uintptr_t)d.host;
	char err[300];
	struct gmvm_change setup = {GMVM_ADD, 1, 0x100000, 0x10000, h, GM_SPACE_SLOT_DIRTY_LOG};
	CHECK_EQ(gmvm_mem_apply(&d.mem, &setup, 1, err, sizeof(err)), 0);
	uint64_t gen = gm_space_generation(d.mem.space);
	uint64_t real_max = d.mem.max_gfn;
	d.mem.max_gfn = real_max + (1ull << 24); /* gmvm's check now lets a bad gfn through */
	struct gmvm_change batch[] = {
		{GMVM_ADD, 2, 0x200000, 0x4000, h + 0x10000, 0},
		{GMVM_MOVE, 1, 0x300000, 0, 0, 0},
		{GMVM_RESIZE, 2, 0, 0x8000, 0, 0},
		{GMVM_ADD, 3, (real_max + 1) << 12, 0x1000, h, 0}, /* KVM refuses this one */
	};
	int rc = gmvm_mem_apply(&d.mem, batch, 4, err, sizeof(err));
	CHECK_MSG(rc == -EINVAL, "rc %d: %s", rc, err);
	CHECK(strstr(err, "KVM refused slot 3") != NULL);
	d.mem.max_gfn = real_max;
	/* gm_space: untouched */
	CHECK_EQ(gm_space_generation(d.mem.space), gen);
	CHECK(gm_space_id_to_slot(d.mem.space, 2) == NULL);
	CHECK_EQ(gm_space_id_to_slot(d.mem.space, 1)->base_gfn, 0x100);
	/* KVM: slot 1 back at 0x100000 (a slot over it is refused), nothing at
	 * 0x200000 or 0x300000 (a slot there is taken) */
	struct gmvm_kvm *k = &d.k;
	CHECK_EQ(gmvm_kvm_set_slot(k, 9, 0, 0x100000, 0x1000, h), -EEXIST);
	CHECK_EQ(gmvm_kvm_set_slot(k, 9, 0, 0x200000, 0x8000, h), 0);
	CHECK_EQ(gmvm_kvm_set_slot(k, 9, 0, 0x200000, 0, h), 0);
	CHECK_EQ(gmvm_kvm_set_slot(k, 9, 0, 0x300000, 0x10000, h), 0);
	CHECK_EQ(gmvm_kvm_set_slot(k, 9, 0, 0x300000, 0, h), 0);
	/* and the same batch without the bad change goes through */
	CHECK_EQ(gmvm_mem_apply(&d.mem, batch, 3, err, sizeof(err)), 0);
	CHECK_EQ(gm_space_id_to_slot(d.mem.space, 1)->base_gfn, 0x300);
	CHECK_EQ(gm_space_id_to_slot(d.mem.space, 2)->npages, 8);
	CHECK_EQ(gmvm_kvm_set_slot(k, 9, 0, 0x300000, 0x1000, h), -EEXIST);
	CHECK_VALID(gm_space_validate(d.mem.space, &reason), reason);
	diff_destroy(&d);
}

int main(int argc, char **argv)
{
	const char *why = gmvm_kvm_unusable();
	if (why) {
		printf("skipped: /dev/kvm not usable (%s)\n", why);
		return 77;
	}
	return gm_test_main(argc, argv);
}

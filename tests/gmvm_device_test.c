/*
 * tests/gmvm_device_test.c — gmvm's device emulation (vmm/device.c) and its
 * memory checks (vmm/memory.c without KVM) against a live gm_space, no
 * /dev/kvm needed: hostile DMA requests (outside RAM, past a slot's end,
 * wrapping, too long, into a slot being removed, writes to a read-only
 * slot) are refused and change no byte; a DMA across two adjacent slots is
 * done; DMA writes are in the dirty log; the test device's registers and
 * commands; the serial port; and gmvm_mem's KVM-rule checks (alignment,
 * overlap, ids, read-only toggles, batches that fail leave gm_space as it
 * was).
 */
#include "harness.h"

#include "device.h"
#include "memory.h"

#include <stdatomic.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void reg(void)
{
	static _Thread_local bool done;
	if (!done) {
		gm_rcu_register_thread();
		done = true;
	}
}

struct fixture {
	struct gmvm_mem mem;
	uint8_t *ram; /* 3 slots: [0x100000, +64K) [+64K, +64K) ro [0x400000, +64K) */
};

static void fixture_init(struct fixture *f)
{
	reg();
	CHECK_EQ(gmvm_mem_init(&f->mem, NULL), 0);
	f->ram = mmap(NULL, 3 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(f->ram != MAP_FAILED);
	struct gmvm_change ch[] = {
		{GMVM_ADD, 1, 0x100000, 0x10000, (uintptr_t)f->ram, GM_SPACE_SLOT_DIRTY_LOG},
		{GMVM_ADD, 2, 0x110000, 0x10000, (uintptr_t)f->ram + 0x10000, 0},
		{GMVM_ADD, 3, 0x400000, 0x10000, (uintptr_t)f->ram + 0x20000, GM_SPACE_SLOT_READONLY},
	};
	char err[200];
	CHECK_MSG(gmvm_mem_apply(&f->mem, ch, 3, err, sizeof(err)) == 0, "%s", err);
}

static void fixture_destroy(struct fixture *f)
{
	gmvm_mem_destroy(&f->mem);
	munmap(f->ram, 3 << 16);
}

static int count_fn(void *ctx, uint64_t first, uint64_t count)
{
	(void)first;
	*(uint64_t *)ctx += count;
	return 0;
}

GM_TEST(hostile_dma_is_refused_and_changes_nothing)
{
	struct fixture f;
	fixture_init(&f);
	struct gm_space *s = f.mem.space;
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	char why[200];
	uint8_t *copy = malloc(3 << 16);
	memcpy(copy, f.ram, 3 << 16);
	struct {
		uint64_t gpa, len;
		int rc;
	} bad[] = {
		{0, 16, -EFAULT},                        /* below RAM */
		{0xfffff, 2, -EFAULT},                   /* starts one byte before RAM */
		{0x11fff0, 32, -EFAULT},                 /* runs past the second slot's end */
		{0x200000, 8, -EFAULT},                  /* a hole */
		{UINT64_MAX - 7, 16, -EFAULT},           /* wraps */
		{0x100000, GMVM_DMA_MAX + 1, -E2BIG},    /* too long */
		{0x400000, 8, -EROFS},                   /* read-only slot */
		{0x10fff8, 0x10010, -EFAULT},            /* across both slots and past */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = gmvm_dma_fill(s, &c, bad[i].gpa, bad[i].len, 0xee, why, sizeof(why));
		CHECK_MSG(rc == bad[i].rc, "case %zu: rc %d, want %d (%s)", i, rc, bad[i].rc, why);
		CHECK(why[0] != 0);
	}
	CHECK(memcmp(copy, f.ram, 3 << 16) == 0);
	uint64_t n = 0;
	CHECK_EQ(gm_space_dirty_harvest(s, gm_space_id_to_slot(s, 1), 0, UINT64_MAX, count_fn, &n), 0);
	/* a slot being removed */
	pthread_mutex_lock(&f.mem.lock);
	CHECK_EQ(gm_space_attr_set(s, 0x100, 0x10f, GMVM_ATTR_REMOVING), 0);
	pthread_mutex_unlock(&f.mem.lock);
	CHECK_EQ(gmvm_dma_fill(s, &c, 0x100000, 8, 1, why, sizeof(why)), -EBUSY);
	CHECK(memcmp(copy, f.ram, 3 << 16) == 0);
	pthread_mutex_lock(&f.mem.lock);
	CHECK_EQ(gm_space_attr_set(s, 0x100, 0x10f, 0), 0);
	pthread_mutex_unlock(&f.mem.lock);
	free(copy);
	fixture_destroy(&f);
}

GM_TEST(dma_across_two_slots_lands_and_is_logged)
{
	struct fixture f;
	fixture_init(&f);
	struct gm_space *s = f.mem.space;
	struct gm_space_cache c;
	gm_space_cache_init(&c);
	char why[200];
	/* the last 3 pages of slot 1 and the first 2 of slot 2 */
	CHECK_EQ(gmvm_dma_fill(s, &c, 0x10d000, 0x5000, 0x5a, why, sizeof(why)), 0);
	for (size_t i = 0xd000; i < 0x12000; i++)
		CHECK_EQ(f.ram[i], 0x5a);
	CHECK_EQ(f.ram[0xcfff], 0);
	CHECK_EQ(f.ram[0x12000], 0);
	uint64_t n = 0;
	CHECK_EQ(gm_space_dirty_harvest(s, gm_space_id_to_slot(s, 1), 0, UINT64_MAX, count_fn, &n), 3);
	uint64_t sum;
	CHECK_EQ(gmvm_dma_checksum(s, &c, 0x10d000, 0x5000, &sum, why, sizeof(why)), 0);
	CHECK_EQ(sum, gmvm_fnv(GMVM_FNV_BASIS, f.ram + 0xd000, 0x5000));
	CHECK_EQ(gmvm_dma_checksum(s, &c, 0x10d001, 8, &sum, why, sizeof(why)), -EINVAL);
	/* reads from the read-only slot are fine */
	CHECK_EQ(gmvm_dma_checksum(s, &c, 0x400000, 0x10000, &sum, why, sizeof(why)), 0);
	fixture_destroy(&f);
}

static uint64_t rd(struct gmvm_testdev *d, unsigned bank, unsigned reg)
{
	uint64_t v = 0;
	gmvm_testdev_io(d, GMVM_DEV_GPA + bank * GMVM_DEV_BANK + reg, &v, 8, false);
	return v;
}

static void wr(struct gmvm_testdev *d, unsigned bank, unsigned reg, uint64_t v)
{
	gmvm_testdev_io(d, GMVM_DEV_GPA + bank * GMVM_DEV_BANK + reg, &v, 8, true);
}

GM_TEST(test_device_registers_and_commands)
{
	struct fixture f;
	fixture_init(&f);
	struct gmvm_testdev d;
	gmvm_testdev_init(&d, f.mem.space, 2);
	CHECK_EQ(rd(&d, 0, R_ID), GMVM_DEV_ID);
	wr(&d, 1, R_ARG0, 0x1234);
	CHECK_EQ(rd(&d, 1, R_DATA), (0x1234ull ^ 1) * GMVM_DEV_DATA_MUL);
	/* DMA fill through the registers */
	wr(&d, 0, R_ARG0, 0x100000);
	wr(&d, 0, R_ARG1, 4096);
	wr(&d, 0, R_ARG2, 0xa5);
	wr(&d, 0, R_CMD, C_DMA_FILL);
	CHECK_EQ(rd(&d, 0, R_STATUS), 0);
	CHECK_EQ(f.ram[4095], 0xa5);
	/* hostile: into the hole; status says so, memory untouched */
	wr(&d, 0, R_ARG0, 0x300000);
	wr(&d, 0, R_CMD, C_DMA_FILL);
	CHECK_EQ((int64_t)rd(&d, 0, R_STATUS), -EFAULT);
	CHECK_EQ(atomic_load(&d.refused), 1);
	/* checksum by read DMA, report, done */
	wr(&d, 0, R_ARG0, 0x100000);
	wr(&d, 0, R_ARG1, 4096);
	wr(&d, 0, R_CMD, C_DMA_SUM);
	CHECK_EQ(rd(&d, 0, R_STATUS), 0);
	CHECK_EQ(rd(&d, 0, R_RESULT), gmvm_fnv(GMVM_FNV_BASIS, f.ram, 4096));
	wr(&d, 0, R_ARG0, 77);
	wr(&d, 0, R_CMD, C_CHECKSUM);
	wr(&d, 0, R_CMD, C_DONE);
	CHECK(d.bank[0].reported && d.bank[0].checksum == 77 && d.bank[0].done);
	CHECK(!d.bank[1].done);
	/* bad accesses: unknown command, bank past nbanks, short and unaligned accesses */
	wr(&d, 1, R_CMD, 99);
	CHECK((int64_t)rd(&d, 1, R_STATUS) == -EINVAL);
	CHECK_EQ(rd(&d, 2, R_ID), ~0ull);
	uint32_t small = 0;
	gmvm_testdev_io(&d, GMVM_DEV_GPA + R_ID, &small, 4, false);
	CHECK_EQ(small, 0xffffffffu);
	uint64_t v = 0;
	gmvm_testdev_io(&d, GMVM_DEV_GPA + 3, &v, 8, false);
	CHECK_EQ(v, ~0ull);
	gmvm_testdev_io(&d, GMVM_DEV_GPA + GMVM_DEV_BYTES + 8, &v, 8, true);
	CHECK(atomic_load(&d.bad_access) >= 4);
	gmvm_testdev_destroy(&d);
	fixture_destroy(&f);
}

GM_TEST(serial_and_io_ranges_dispatch_through_gm_space)
{
	struct fixture f;
	fixture_init(&f);
	struct gmvm_serial ser;
	struct gmvm_testdev d;
	struct gmvm_exitport ex = {0};
	gmvm_serial_init(&ser, NULL);
	gmvm_testdev_init(&d, f.mem.space, 1);
	pthread_mutex_lock(&f.mem.lock);
	CHECK_EQ(gmvm_devices_register(f.mem.space, &ser, &d, &ex), 0);
	CHECK_EQ(gmvm_devices_register(f.mem.space, &ser, &d, &ex), -EEXIST);
	pthread_mutex_unlock(&f.mem.lock);
	struct gm_space_io io;
	gm_rcu_read_lock();
	CHECK_EQ(gm_space_io_find(f.mem.space, GM_SPACE_PIO, GMVM_SERIAL_PORT + 5, &io), 0);
	uint8_t lsr = 0;
	io.fn(io.ctx, GMVM_SERIAL_PORT + 5, &lsr, 1, false);
	CHECK(lsr & 0x20);
	CHECK_EQ(gm_space_io_find(f.mem.space, GM_SPACE_PIO, GMVM_SERIAL_PORT, &io), 0);
	for (const char *p = "hi\n"; *p; p++)
		io.fn(io.ctx, GMVM_SERIAL_PORT, (void *)p, 1, true);
	CHECK_EQ(gm_space_io_find(f.mem.space, GM_SPACE_MMIO, GMVM_DEV_GPA + 8, &io), 0);
	CHECK(io.fn == gmvm_testdev_io);
	CHECK_EQ(gm_space_io_find(f.mem.space, GM_SPACE_MMIO, GMVM_DEV_GPA + GMVM_DEV_BYTES, &io), -ENOENT);
	CHECK_EQ(gm_space_io_find(f.mem.space, GM_SPACE_PIO, GMVM_EXIT_PORT, &io), 0);
	uint8_t code = 5;
	io.fn(io.ctx, GMVM_EXIT_PORT, &code, 1, true);
	gm_rcu_read_unlock();
	CHECK_EQ(atomic_load(&ex.requested), 6);
	CHECK(strcmp(ser.tail, "hi\n") == 0);
	gmvm_serial_destroy(&ser);
	gmvm_testdev_destroy(&d);
	fixture_destroy(&f);
}

GM_TEST(memory_checks_follow_kvm_rules_without_kvm)
{
	struct fixture f;
	fixture_init(&f);
	struct gm_space *s = f.mem.space;
	char err[300];
	uint64_t h = (uintptr_t)f.ram, gen = gm_space_generation(s);
	struct {
		struct gmvm_change c;
		int rc;
	} cases[] = {
		{{GMVM_ADD, 9, 0x108000, 0x1000, h, 0}, -EEXIST},          /* overlap */
		{{GMVM_ADD, 9, 0x800800, 0x1000, h, 0}, -EINVAL},          /* gpa misaligned */
		{{GMVM_ADD, 9, 0x800000, 0x1800, h, 0}, -EINVAL},          /* size misaligned */
		{{GMVM_ADD, 9, 0x800000, 0x1000, h + 8, 0}, -EINVAL},      /* hva misaligned */
		{{GMVM_ADD, 9, 0x800000, 0, h, 0}, -EINVAL},               /* size 0 */
		{{GMVM_ADD, 1, 0x800000, 0x1000, h, 0}, -EEXIST},          /* id in use */
		{{GMVM_ADD, 40000, 0x800000, 0x1000, h, 0}, -EINVAL},      /* id past KVM's */
		{{GMVM_ADD, 9, 0x800000, 0x1000, h, 0x80}, -EINVAL},       /* unknown flag */
		{{GMVM_ADD, 9, 0x800000, 1ull << 44, h, 0}, -EINVAL},      /* > KVM's pages/slot */
		{{GMVM_ADD, 9, ~0xfffull, 0x2000, h, 0}, -EINVAL},         /* gpa wraps */
		{{GMVM_ADD, 9, 0x800000, 0x2000, ~0xfffull, 0}, -EINVAL},  /* hva wraps */
		{{GMVM_DELETE, 9, 0, 0, 0, 0}, -ENOENT},
		{{GMVM_MOVE, 1, 0x40c000, 0, 0, 0}, -EEXIST},              /* onto slot 3 */
		{{GMVM_MOVE, 1, 0x800001, 0, 0, 0}, -EINVAL},
		{{GMVM_RESIZE, 1, 0, 0x20000, 0, 0}, -EEXIST},             /* into slot 2 */
		{{GMVM_FLAGS, 3, 0, 0, 0, 0}, -EINVAL},                    /* read-only off */
		{{GMVM_FLAGS, 1, 0, 0, 0, GM_SPACE_SLOT_READONLY}, -EINVAL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = 0;
		int rc = gmvm_mem_apply(&f.mem, &cases[i].c, 1, err, sizeof(err));
		CHECK_MSG(rc == cases[i].rc, "case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc, err);
		CHECK(err[0] != 0);
		CHECK_EQ(gm_space_generation(s), gen);
	}
	/* a batch: valid changes, then a bad one: nothing of it happens */
	struct gmvm_change batch[] = {
		{GMVM_DELETE, 2, 0, 0, 0, 0},
		{GMVM_RESIZE, 1, 0, 0x20000, 0, 0},   /* fine once slot 2 is gone */
		{GMVM_ADD, 5, 0x900000, 0x1000, h, 0},
		{GMVM_ADD, 6, 0x900000, 0x1000, h, 0}, /* overlaps 5 */
	};
	CHECK_EQ(gmvm_mem_apply(&f.mem, batch, 4, err, sizeof(err)), -EEXIST);
	CHECK_EQ(gm_space_generation(s), gen);
	CHECK(gm_space_id_to_slot(s, 2) != NULL);
	CHECK_EQ(gm_space_id_to_slot(s, 1)->npages, 16);
	/* the valid part alone goes through, in one generation */
	CHECK_EQ(gmvm_mem_apply(&f.mem, batch, 3, err, sizeof(err)), 0);
	CHECK_EQ(gm_space_generation(s), gen + 1);
	CHECK(gm_space_id_to_slot(s, 2) == NULL);
	CHECK_EQ(gm_space_id_to_slot(s, 1)->npages, 32);
	CHECK_VALID(gm_space_validate(s, &reason), reason);
	fixture_destroy(&f);
}

GM_TEST_MAIN()

/*
 * examples/tiny_vmm.c — a guest address space set up the way a VMM would:
 * 2 GiB of RAM below a hole, 1 GiB above 4 GiB, a UART on PIO and an APIC
 * page on MMIO in the hole, a hotplugged DIMM; two vCPU threads translate
 * addresses while the DIMM is plugged; one migration round harvests the
 * dirty log. Checks everything it prints; exits 0 on success.
 */
#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <pthread.h>
#include <stdio.h>

#define GIB_PAGES (1ull << 18)
#define RAM_HVA 0x7f0000000000ull

static struct gm_space *vm;
static int failures;

#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "FAILED: %s\n", #c); failures++; } } while (0)

static void dev(void *o, uint64_t a, void *d, unsigned s, bool w)
{
	(void)o; (void)a; (void)d; (void)s; (void)w;
}

static void *vcpu(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg, bad = 0;
	struct gm_space_cache cache;
	gm_rcu_register_thread();
	gm_space_cache_init(&cache);
	for (uint64_t i = 0; i < 200000; i++) {
		uint64_t gfn = (i * 7 + id) % (2 * GIB_PAGES), hva;
		const struct gm_space_slot *s;
		gm_rcu_read_lock();
		if (gm_space_gfn_to_hva(vm, &cache, gfn, &hva) || hva != RAM_HVA + (gfn << 12))
			bad++;
		if (i % 1000 == 0 && gm_space_gfn_to_slot(vm, &cache, gfn, &s) == 0)
			gm_space_dirty_mark(vm, s, gfn); /* the vCPU wrote the page */
		gm_rcu_read_unlock();
	}
	gm_rcu_unregister_thread();
	return (void *)(uintptr_t)bad;
}

static uint64_t runs, frames;
static int on_run(void *ctx, uint64_t first, uint64_t count)
{
	(void)ctx;
	(void)first;
	runs++;
	frames += count;
	return 0;
}

int main(void)
{
	gm_rcu_register_thread();
	if (gm_space_create(&vm, NULL, 0, NULL))
		return 1;
	gm_space_batch_begin(vm); /* boot layout, published at once */
	gm_space_batch_add(vm, 0, 0, 2 * GIB_PAGES, RAM_HVA, GM_SPACE_SLOT_DIRTY_LOG);
	gm_space_batch_add(vm, 1, 4 * GIB_PAGES, GIB_PAGES, RAM_HVA + (2ull << 30), GM_SPACE_SLOT_DIRTY_LOG);
	EXPECT(gm_space_batch_commit(vm) == 0);
	EXPECT(gm_space_io_add(vm, GM_SPACE_MMIO, 0xfee00000, 0xfee00fff, dev, NULL) == 0);
	EXPECT(gm_space_io_add(vm, GM_SPACE_PIO, 0x3f8, 0x3ff, dev, NULL) == 0);
	EXPECT(gm_space_attr_set(vm, 0, 5 * GIB_PAGES - 1, 1) == 0); /* all private */
	printf("boot: %llu slots, generation %llu\n", (unsigned long long)gm_space_slot_count(vm),
	       (unsigned long long)gm_space_generation(vm));
	EXPECT(gm_space_slot_count(vm) == 2 && gm_space_generation(vm) == 2);

	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, vcpu, (void *)i);
	/* hotplug a 1 GiB DIMM at 8 GiB while the vCPUs run */
	EXPECT(gm_space_slot_add(vm, 2, 8 * GIB_PAGES, GIB_PAGES, RAM_HVA + (4ull << 30), 0) == 0);
	uint64_t bad = 0;
	for (int i = 0; i < 2; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += (uint64_t)(uintptr_t)r;
	}
	printf("vcpus: 400000 translations, %llu wrong\n", (unsigned long long)bad);
	EXPECT(bad == 0);

	struct gm_space_io io;
	uint64_t hva;
	gm_rcu_read_lock();
	EXPECT(gm_space_io_find(vm, GM_SPACE_MMIO, 0xfee00020, &io) == 0 && io.fn == dev);
	EXPECT(gm_space_gfn_to_hva(vm, NULL, 3 * GIB_PAGES, &hva) == -ENOENT); /* the hole */
	EXPECT(gm_space_gfn_to_hva(vm, NULL, 8 * GIB_PAGES + 1, &hva) == 0 &&
	       hva == RAM_HVA + (4ull << 30) + 4096);
	long k = gm_space_dirty_harvest(vm, gm_space_id_to_slot(vm, 0), 0, UINT64_MAX, on_run, NULL);
	gm_rcu_read_unlock();
	printf("migration round: %ld dirty frames in %llu runs\n", k, (unsigned long long)runs);
	EXPECT(k > 0 && (uint64_t)k == frames && k <= 400);

	struct gm_space_stats st;
	gm_space_stats(vm, &st);
	printf("metadata: %zu bytes for %llu GiB (%.0f B/GiB), attributes %zu B\n", st.bytes_total,
	       (unsigned long long)(st.guest_pages / GIB_PAGES), st.bytes_per_gib, st.bytes_attributes);
	EXPECT(st.guest_pages == 4 * GIB_PAGES && st.bytes_attributes <= 64);
	const char *why;
	EXPECT(gm_space_validate(vm, &why) == 0);
	EXPECT(gm_space_slot_remove(vm, 2) == 0); /* unplug */
	gm_space_destroy(vm);
	gm_rcu_unregister_thread();
	printf(failures ? "tiny_vmm: FAILED\n" : "tiny_vmm: ok\n");
	return failures ? 1 : 0;
}

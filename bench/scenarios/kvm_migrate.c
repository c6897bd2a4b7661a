/*
 * bench/scenarios/kvm_migrate.c — gmvm (vmm/) on the real KVM:
 * live migration of a running guest between two VMs of this process,
 * gm_space holding every dirty log.
 *
 * Guests: "4g" (4 GiB of RAM in 4 slots) and "sparse256g" (64 MiB of RAM
 * plus a 256 GiB slot whose hva is a MAP_NORESERVE mapping: only touched
 * pages are real); one vCPU writing a hot set of 1 MiB or 64 MiB (random
 * words, without pause; one vCPU so that it and the migration thread each
 * have a core of a 2-core machine: a preempted round measures the
 * scheduler); KVM dirty tracking by bitmap
 * (KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG) or by dirty ring. --quick: a
 * 256 MiB guest and a 16 GiB sparse slot, the small hot set.
 *
 * Rows, dist = guest-hotset-mode, n = guest size in MiB:
 *   round:   per pre-copy round (median of rounds 1..), gm_space = import
 *            (gm_space_dirty_import / _import_gfns) + harvest
 *            (gm_space_dirty_harvest, copies excluded; reading the
 *            ring's entries and flagging them RESET is gmvm's, not counted);
 *            kvm_ioctl = the dirty-log ioctls (GET + CLEAR, or
 *            RESET_DIRTY_RINGS); flat_walk = the same bitmaps walked bit
 *            by bit as rust-vmm's users (Firecracker) do (bitmap mode).
 *   harvest: gm_space's harvest alone vs the flat walk.
 *   total, downtime: the migration (verification memcmp excluded).
 *   memslot_change: gmvm_mem_apply of one slot add or delete among 1000
 *            slots: gm_space (batch + commit + removal attributes; the
 *            commit alone as gm_space_batch_commit) vs the KVM ioctl, and gmvm's
 *            KVM-rule checks (gm_space lookups) on their own.
 *   gfn_to_hva: the MMIO/DMA path's translation with a per-vCPU cache
 *            (hit) and across 1000 slots (miss).
 * Reference: kvm_ioctl. Without a usable /dev/kvm: one "skipped" line.
 */
#include "gmbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef GM_HAVE_VMM
#include "migrate.h"
#include "vm.h"

#include <sys/mman.h>

struct guest_kind {
	const char *name;
	uint64_t ram, sparse;
	unsigned slots;
};

static double median_u64(const uint64_t *v, unsigned n)
{
	double d[GMVM_MAX_ROUNDS + 1];
	for (unsigned i = 0; i < n; i++)
		d[i] = (double)v[i];
	return n ? gmb_median(d, (int)n) : 0;
}

static unsigned identical_runs, runs;

/* One migration of one configuration; rows and notes. */
static void migrate_once(struct gmb_ctx *ctx, const struct guest_kind *g, uint64_t hot,
			 bool ring)
{
	char dist[64];
	snprintf(dist, sizeof(dist), "%s-hot%lluM-%s", g->name, (unsigned long long)(hot >> 20),
		 ring ? "ring" : "bitmap");
	uint64_t n = (g->ram + g->sparse) >> 20;
	struct gmvm_config cfg;
	gmvm_config_default(&cfg);
	cfg.nvcpus = 1; /* with the migration thread: one per core of a 2-core machine */
	cfg.ram_bytes = g->ram;
	cfg.ram_slots = g->slots;
	cfg.sparse_bytes = g->sparse;
	cfg.workload = W_HOT;
	cfg.hot_bytes = hot;
	cfg.rounds = 1ull << 40; /* runs until migrated and stopped */
	cfg.writes = 4096;
	cfg.dma = 0;
	cfg.dirty_log = true;
	cfg.ring_entries = ring ? 65536 : 0;
	cfg.quiet = true;
	cfg.serial_out = NULL;
	struct gmvm_config dcfg = cfg;
	dcfg.dirty_log = false;
	dcfg.ring_entries = 0;
	struct gmvm_vm *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct gmvm_migrate_stats *st = calloc(1, sizeof(*st));
	char err[600];
	if (!src || !dst || !st || gmvm_vm_create(src, &cfg, false, err, sizeof(err))) {
		gmb_note(ctx, "%s: source VM: %s", dist, src ? err : "out of memory");
		goto out;
	}
	if (gmvm_vm_create(dst, &dcfg, true, err, sizeof(err))) {
		gmb_note(ctx, "%s: destination VM: %s", dist, err);
		goto out_src;
	}
	struct gmvm_migrate_opts o;
	gmvm_migrate_opts_default(&o);
	o.max_rounds = 6;
	o.min_round_ms = 30;
	o.stop_pages = 0;
	o.flat_walk = !ring;
	if (gmvm_vm_start(src, err, sizeof(err))) {
		gmb_note(ctx, "%s: start: %s", dist, err);
		goto out_dst;
	}
	struct timespec warm = {0, 100 * 1000000}; /* the hot set becomes real */
	nanosleep(&warm, NULL);
	int rc = gmvm_migrate(src, dst, &o, st, err, sizeof(err));
	gmvm_vm_stop(dst);
	runs++;
	if (rc) {
		gmb_note(ctx, "%s: migration failed: %s", dist, err);
		goto out_dst;
	}
	identical_runs += st->identical;
	uint64_t space[GMVM_MAX_ROUNDS], kvm[GMVM_MAX_ROUNDS], flat[GMVM_MAX_ROUNDS],
		harvest[GMVM_MAX_ROUNDS], pages[GMVM_MAX_ROUNDS];
	unsigned k = 0;
	for (unsigned r = 1; r < st->rounds; r++, k++) {
		const struct gmvm_round_stats *x = &st->round[r];
		space[k] = x->d.import_ns + x->harvest_ns;
		kvm[k] = x->d.kvm_ns;
		flat[k] = x->d.flat_ns;
		harvest[k] = x->harvest_ns;
		pages[k] = x->pages;
	}
	gmb_row(ctx, "gm_space", "round", n, dist, median_u64(space, k), -1);
	gmb_row(ctx, "kvm_ioctl", "round", n, dist, median_u64(kvm, k), -1);
	gmb_row(ctx, "gm_space", "harvest", n, dist, median_u64(harvest, k), -1);
	if (!ring) {
		gmb_row(ctx, "flat_walk", "round", n, dist, median_u64(flat, k), -1);
		gmb_row(ctx, "flat_walk", "harvest", n, dist, median_u64(flat, k), -1);
	}
	gmb_row(ctx, "gmvm", "total", n, dist, (double)st->total_ns, -1);
	gmb_row(ctx, "gmvm", "downtime", n, dist, (double)st->downtime_ns, -1);
	char per[256];
	size_t o2 = 0;
	for (unsigned r = 0; r <= st->rounds && o2 < sizeof(per) - 16; r++)
		o2 += (size_t)snprintf(per + o2, sizeof(per) - o2, "%s%llu", r ? "/" : "",
				       (unsigned long long)st->round[r].pages);
	gmb_note(ctx,
		 "%s: %u pre-copy rounds + stop-and-copy, pages per round %s (median %.0f), total %.1f ms, downtime %.2f ms, destination %s",
		 dist, st->rounds, per, median_u64(pages, k), st->total_ns / 1e6,
		 st->downtime_ns / 1e6, st->identical ? "byte-identical" : "DIFFERENT");
	char what[160];
	snprintf(what, sizeof(what), "%s: gm_space's share of a round <= 10%% of the KVM ioctls", dist);
	gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_space", "round", n, dist},
			 (struct gmb_sel){"kvm_ioctl", "round", n, dist}, GMB_AT_MOST, 0.10);
	if (!ring && g->sparse) {
		snprintf(what, sizeof(what), "%s: harvest <= 0.1x the flat bitmap walk", dist);
		gmb_target_ratio(ctx, what, (struct gmb_sel){"gm_space", "harvest", n, dist},
				 (struct gmb_sel){"flat_walk", "harvest", n, dist}, GMB_AT_MOST, 0.10);
	}
out_dst:
	gmvm_vm_destroy(dst);
out_src:
	gmvm_vm_destroy(src);
out:
	free(src);
	free(dst);
	free(st);
	gmvm_dirty_release();
}

/* Memslot changes among 1000 slots, and gfn->hva on the MMIO path. */
static void memslots(struct gmb_ctx *ctx)
{
	enum { SLOTS = 1000, CHANGES = 400 };
	struct gmvm_kvm k;
	struct gmvm_mem m;
	const char *why;
	if (gmvm_kvm_open(&k, 0, false, &why)) {
		gmb_note(ctx, "memslot_change: %s", why);
		return;
	}
	uint8_t *host = mmap(NULL, (SLOTS + 1) * 4096ull, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (host == MAP_FAILED || gmvm_mem_init(&m, &k)) {
		gmvm_kvm_close(&k);
		return;
	}
	char err[300];
	for (uint32_t i = 0; i < SLOTS; i++) {
		struct gmvm_change c = {GMVM_ADD, i, (uint64_t)i << 21, 4096,
					(uintptr_t)host + i * 4096ull, 0};
		if (gmvm_mem_apply(&m, &c, 1, err, sizeof(err))) {
			gmb_note(ctx, "memslot_change: %s", err);
			goto out;
		}
	}
	double space[CHANGES], kvm[CHANGES], check[CHANGES], commit[CHANGES];
	for (int i = 0; i < CHANGES; i++) {
		struct gmvm_change c = {(i & 1) ? GMVM_DELETE : GMVM_ADD, SLOTS, (uint64_t)SLOTS << 21,
					4096, (uintptr_t)host + SLOTS * 4096ull, 0};
		if (gmvm_mem_apply(&m, &c, 1, err, sizeof(err))) {
			gmb_note(ctx, "memslot_change: %s", err);
			goto out;
		}
		space[i] = (double)m.last_space_ns;
		kvm[i] = (double)m.last_kvm_ns;
		check[i] = (double)m.last_check_ns;
		commit[i] = (double)m.last_commit_ns;
	}
	gmb_row(ctx, "gm_space", "memslot_change", SLOTS, "add-delete", gmb_median(space, CHANGES), -1);
	gmb_row(ctx, "kvm_ioctl", "memslot_change", SLOTS, "add-delete", gmb_median(kvm, CHANGES), -1);
	gmb_row(ctx, "gmvm_checks", "memslot_change", SLOTS, "add-delete", gmb_median(check, CHANGES), -1);
	gmb_row(ctx, "gm_space_batch_commit", "memslot_change", SLOTS, "add-delete", gmb_median(commit, CHANGES), -1);
	gmb_note(ctx, "memslot_change: gm_space = its batch + commit (gm_space_batch_commit row) + the "
		      "removal attributes a delete sets and clears (gm_space_attr_set, so device DMA "
		      "refuses a slot being removed)");
	gmb_target_ratio(ctx, "gm_space's share of a memslot change <= 5% of the KVM ioctl",
			 (struct gmb_sel){"gm_space", "memslot_change", SLOTS, "add-delete"},
			 (struct gmb_sel){"kvm_ioctl", "memslot_change", SLOTS, "add-delete"},
			 GMB_AT_MOST, 0.05);
	/* gfn -> hva as the MMIO and DMA paths do it: a vCPU's cache */
	struct gm_space_cache cache;
	gm_space_cache_init(&cache);
	struct gmb_rng rng;
	gmb_rng_init(&rng, gmb_seed(ctx));
	enum { LOOKUPS = 1 << 20 };
	uint64_t sum = 0, t0, t1;
	gm_rcu_read_lock();
	t0 = gmb_now_ns();
	for (int i = 0; i < LOOKUPS; i++) {
		uint64_t hva = 0;
		gm_space_gfn_to_hva(m.space, &cache, 7ull << 9, &hva);
		sum += hva;
	}
	t1 = gmb_now_ns();
	gmb_row(ctx, "gm_space", "gfn_to_hva", SLOTS, "cached", (double)(t1 - t0) / LOOKUPS, -1);
	static uint64_t gfns[LOOKUPS];
	for (int i = 0; i < LOOKUPS; i++)
		gfns[i] = gmb_rng_below(&rng, SLOTS) << 9;
	t0 = gmb_now_ns();
	for (int i = 0; i < LOOKUPS; i++) {
		uint64_t hva = 0;
		gm_space_gfn_to_hva(m.space, &cache, gfns[i], &hva);
		sum += hva;
	}
	t1 = gmb_now_ns();
	gm_rcu_read_unlock();
	gmb_sink(sum);
	gmb_row(ctx, "gm_space", "gfn_to_hva", SLOTS, "random-slot", (double)(t1 - t0) / LOOKUPS, -1);
out:
	gmvm_mem_destroy(&m);
	gmvm_kvm_close(&k);
	munmap(host, (SLOTS + 1) * 4096ull);
}

static void run(struct gmb_ctx *ctx)
{
	const char *why = gmvm_kvm_unusable();
	if (why) {
		printf("skipped: /dev/kvm not usable (%s)\n", why);
		gmb_note(ctx, "skipped: /dev/kvm not usable (%s)", why);
		return;
	}
	gm_rcu_register_thread();
	gmb_reference(ctx, "kvm_ioctl");
	bool quick = gmb_quick(ctx);
	const struct guest_kind full[] = {
		{"4g", 4ull << 30, 0, 4},
		{"sparse256g", 64ull << 20, 256ull << 30, 1},
	};
	const struct guest_kind small[] = {
		{"256m", 256ull << 20, 0, 2},
		{"sparse16g", 64ull << 20, 16ull << 30, 1},
	};
	const struct guest_kind *kinds = quick ? small : full;
	const uint64_t hots[] = {1ull << 20, 64ull << 20};
	for (int g = 0; g < 2; g++)
		for (int h = 0; h < (quick ? 1 : 2); h++)
			for (int ring = 0; ring < 2; ring++) {
				gmb_progress(ctx, "migrating %s, hot set %llu MiB, %s", kinds[g].name,
					     (unsigned long long)(hots[h] >> 20), ring ? "ring" : "bitmap");
				migrate_once(ctx, &kinds[g], hots[h], ring);
			}
	memslots(ctx);
	char measured[64];
	snprintf(measured, sizeof(measured), "%u of %u runs", identical_runs, runs);
	gmb_target_verdict(ctx, "migration byte-identical at the switchover in 100% of runs", measured,
			   runs > 0 && identical_runs == runs);
	gmb_note(ctx, "What a VMM gains: dirty state from KVM (bitmap or ring) and from its own "
		      "device DMA lands in one gm_space log per slot, harvested by range in time that "
		      "follows the dirty pages rather than the slot size, with failed sends put back.");
	gm_rcu_unregister_thread();
}

#else /* no gmvm on this platform */

static void run(struct gmb_ctx *ctx)
{
	printf("skipped: /dev/kvm not usable (gmvm is built on x86-64 Linux only)\n");
	gmb_note(ctx, "skipped: gmvm is built on x86-64 Linux only");
}

#endif

GMB_SCENARIO(kvm_migrate, "gmvm: live migration on KVM with gm_space dirty logs", run)

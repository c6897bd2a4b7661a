/*
 * vmm/migrate.h — live migration inside one process: a source VM and a
 * destination VM (a second KVM VM), pre-copy rounds while the guest keeps
 * writing (KVM's dirty state imported into gm_space, harvested from
 * gm_space per slot, pages copied), a stop-and-copy round, the vCPU state
 * (regs, sregs, XSAVE, XCRs, MSRs, LAPIC, events, MP state, debug
 * registers), the in-kernel irqchip, the clock and the device state moved;
 * then the destination resumes and finishes. Checked on every run: at the
 * switchover the destination's memory is byte-identical to the source's.
 */
#ifndef GMVM_MIGRATE_H
#define GMVM_MIGRATE_H

#include "dirty.h"
#include "vm.h"

#define GMVM_MAX_ROUNDS 64

struct gmvm_migrate_opts {
	unsigned max_rounds;      /* pre-copy rounds at most */
	uint64_t stop_pages;      /* stop-and-copy once a round sends at most this */
	uint64_t min_round_ms;    /* let the guest run at least this between rounds */
	bool fail_armed;          /* (test) one send of round fail_round fails */
	unsigned fail_round, fail_send;
	bool flat_walk;           /* also time the flat bitmap walk */
	bool verify;              /* memcmp every slot at the switchover (default on) */
	bool quiet;
	/* called before the switchover (e.g. stops a hotplug thread) */
	void (*quiesce)(void *ctx);
	void *quiesce_ctx;
	/* (test) called after each pre-copy round with the round's index */
	void (*after_round)(void *ctx, unsigned round);
	void *after_round_ctx;
};

struct gmvm_round_stats {
	uint64_t pages, runs, ns;
	struct gmvm_dirty_stats d;
	uint64_t harvest_ns;      /* gm_space_dirty_harvest, without the copies */
	uint64_t copy_ns;
};

struct gmvm_migrate_stats {
	unsigned rounds;          /* pre-copy rounds, then one stop-and-copy */
	struct gmvm_round_stats round[GMVM_MAX_ROUNDS + 1];
	uint64_t total_ns, downtime_ns, verify_ns;
	uint64_t pages_total, failed_sends, resent_slots, layout_changes;
	bool identical;
	uint64_t compared_bytes;
};

void gmvm_migrate_opts_default(struct gmvm_migrate_opts *o);

/* Migrates the running src to dst (created incoming, same config). On
 * success dst's vCPUs run; src is stopped. 0 or -errno (message in err). */
int gmvm_migrate(struct gmvm_vm *src, struct gmvm_vm *dst, const struct gmvm_migrate_opts *o,
		 struct gmvm_migrate_stats *st, char *err, size_t errlen);

/* gmvm --migrate: run, migrate, finish on the destination, check. Exit code. */
int gmvm_migrate_main(const struct gmvm_config *cfg, const struct gmvm_migrate_opts *o,
		      bool hotplug);

#endif

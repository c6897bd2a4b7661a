/*
 * vmm/hotplug.h — memory hotplug under load: a control thread that adds,
 * removes, resizes and moves memslots (virtio-mem and PCI-BAR style) in
 * the VM's hotplug window through gm_space batches mirrored to KVM while
 * the vCPUs run; it does device DMA into the slots it owns through
 * gm_space (refused when a slot is gone or being removed), and discards
 * host ranges (madvise MADV_DONTNEED, as a balloon does), finding the
 * slots they back with gm_space_hva_fill and dropping their dirty state.
 */
#ifndef GMVM_HOTPLUG_H
#define GMVM_HOTPLUG_H

#include "vm.h"

#define GMVM_HOTPLUG_SLOTS 8
#define GMVM_HOTPLUG_GPA (600ull << 30) /* above anything the guest maps */

struct gmvm_hotplug {
	struct gmvm_vm *vm;
	pthread_t thread;
	_Atomic bool stop;
	bool started;
	uint64_t seed;
	/* counters */
	uint64_t changes, refused, dma_ok, dma_refused, discards, discarded_dirty;
	int error;
	char msg[300];
	/* called (under the VM's memory lock) after a discard of gfns
	 * [first, first + count) dropped their dirty state: a migration makes
	 * its destination discard them too */
	void (*on_discard)(void *ctx, uint64_t first_gfn, uint64_t count);
	void *on_discard_ctx;
};

/* on_discard (may be NULL): see above. */
int gmvm_hotplug_start(struct gmvm_hotplug *h, struct gmvm_vm *vm,
		       void (*on_discard)(void *ctx, uint64_t first_gfn, uint64_t count),
		       void *on_discard_ctx, char *err, size_t errlen);
/* Stops the thread; 0 and a summary in msg, or -errno and the error. */
int gmvm_hotplug_stop(struct gmvm_hotplug *h, char *msg, size_t msglen);

#endif

/*
 * vmm/kvm.h — gmvm's thin layer over /dev/kvm: opening it and saying why
 * it is not usable, the capabilities gmvm relies on, memslot and dirty-log
 * ioctls, vCPU creation and mapping, and the names of exit reasons.
 * Nothing here knows about gm_space; vmm/memory.c mirrors gm_space into it.
 */
#ifndef GMVM_KVM_H
#define GMVM_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gmvm_kvm {
	int kvm_fd;            /* /dev/kvm */
	int vm_fd;
	int vcpu_mmap_size;
	uint32_t max_slots;    /* KVM_CAP_NR_MEMSLOTS */
	bool manual_protect;   /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled */
	uint32_t ring_entries; /* dirty ring entries per vCPU (0: bitmap mode) */
	uint64_t max_gfn;      /* largest gfn a slot may reach (probed) */
};

/* Why /dev/kvm cannot be used here, or NULL if it can (checked once). */
const char *gmvm_kvm_unusable(void);

/*
 * gmvm_kvm_open — opens /dev/kvm and creates a VM with an in-kernel irqchip.
 * ring_entries > 0 enables the dirty ring (before any vCPU exists), else
 * manual dirty-log protection is enabled where the kernel has it (unless
 * no_manual). Returns 0 or a negative errno with *why set to a message.
 */
int gmvm_kvm_open(struct gmvm_kvm *k, uint32_t ring_entries, bool no_manual,
		  const char **why);
void gmvm_kvm_close(struct gmvm_kvm *k);

/* KVM_SET_USER_MEMORY_REGION; npages 0 deletes. 0 or -errno. */
int gmvm_kvm_set_slot(struct gmvm_kvm *k, uint32_t id, uint32_t kvm_flags,
		      uint64_t gpa, uint64_t bytes, uint64_t hva);
/* KVM_GET_DIRTY_LOG into bitmap (npages bits), and with manual protection
 * KVM_CLEAR_DIRTY_LOG of what it returned. 0 or -errno. */
int gmvm_kvm_get_dirty(struct gmvm_kvm *k, uint32_t id, uint64_t npages,
		       uint64_t *bitmap, bool clear);
/* The largest gfn a 1-page slot is accepted at, found by bisection on a
 * scratch VM (KVM's limit follows the host's physical address width). */
uint64_t gmvm_kvm_probe_max_gfn(void);

/* A vCPU: its fd, its kvm_run page, its dirty ring (NULL: none). */
struct gmvm_kvm_vcpu {
	int fd;
	struct kvm_run *run;
	struct kvm_dirty_gfn *ring;
	uint32_t ring_entries, ring_next;
};
int gmvm_kvm_vcpu_create(struct gmvm_kvm *k, unsigned index, struct gmvm_kvm_vcpu *v);
void gmvm_kvm_vcpu_destroy(struct gmvm_kvm *k, struct gmvm_kvm_vcpu *v);

/* "KVM_EXIT_MMIO", ..., or "unknown". */
const char *gmvm_exit_name(uint32_t reason);

#endif

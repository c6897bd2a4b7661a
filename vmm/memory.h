/*
 * vmm/memory.h — guest memory for gmvm: gm_space is the one source of truth
 * and every memslot change is a gm_space batch mirrored to KVM.
 *
 * gmvm_mem_apply(m, changes, n) checks the whole batch against KVM's rules
 * first (page alignment of gpa, size and hva; slot id below
 * KVM_CAP_NR_MEMSLOTS; KVM's page-count and gfn limits; no gfn overlap;
 * what KVM lets a moved or re-flagged slot change), so gm_space never
 * takes a change KVM refuses; then it makes the KVM calls; if KVM still
 * refuses one, the calls already made are undone and gm_space was never
 * touched (it ends exactly as before); only then is the gm_space batch
 * committed (if that fails, the KVM calls are undone). While a slot is
 * being removed or moved its old gfns carry GMVM_ATTR_REMOVING in
 * gm_space's attributes, so device DMA refuses them.
 *
 * Without KVM (m->kvm NULL: the device fuzzer, unit tests) the same checks
 * run and only gm_space changes.
 *
 * Guest RAM is host memory gmvm maps: anonymous (optionally MAP_NORESERVE,
 * for sparse guests) or a memfd; slots may share hva ranges.
 */
#ifndef GMVM_MEMORY_H
#define GMVM_MEMORY_H

#include "kvm.h"

#include <gmtrack/gmtrack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMVM_ATTR_REMOVING 1u

enum gmvm_change_kind { GMVM_ADD, GMVM_DELETE, GMVM_MOVE, GMVM_RESIZE, GMVM_FLAGS };

/* One memslot change: add (id, gpa, bytes, hva, flags), delete (id), move
 * (id, gpa), resize (id, bytes), flags (id, flags). flags: GM_SPACE_SLOT_*. */
struct gmvm_change {
	enum gmvm_change_kind kind;
	uint32_t id;
	uint64_t gpa, bytes, hva;
	uint32_t flags;
};

struct gmvm_mem {
	struct gm_space *space;
	struct gmvm_kvm *kvm;    /* NULL: gm_space only */
	pthread_mutex_t lock;    /* serializes every gm_space writer call */
	uint32_t max_slots;
	uint64_t max_gfn;
	uint64_t page_size;      /* host page size: alignment KVM asks for */
	uint64_t hva_limit;      /* first hva past user space */
	/* per slot id, bumped by every applied change of that id: a slot's
	 * identity across changes (gm_space recycles slot objects, so a
	 * pointer does not tell "the same slot" from "a new one, same place") */
	uint32_t *change_seq;
	/* statistics of the last gmvm_mem_apply (ns) */
	uint64_t last_kvm_ns, last_space_ns, last_check_ns;
	uint64_t last_commit_ns;  /* of last_space_ns: the gm_space batch and commit
				   * (the rest: the removal attributes) */
};

/* A range of host memory backing guest RAM. */
struct gmvm_ram {
	uint8_t *hva;
	uint64_t bytes;
	int memfd;               /* -1: anonymous */
};

int gmvm_mem_init(struct gmvm_mem *m, struct gmvm_kvm *kvm);
void gmvm_mem_destroy(struct gmvm_mem *m);

/* Applies a batch (see above). 0, or a negative errno with a message in
 * err (errlen bytes; may be NULL): nothing changed, in KVM nor gm_space. */
int gmvm_mem_apply(struct gmvm_mem *m, const struct gmvm_change *v, size_t n,
		   char *err, size_t errlen);
/* The checks alone (no change): 0 or the errno gmvm_mem_apply would give. */
int gmvm_mem_check(struct gmvm_mem *m, const struct gmvm_change *v, size_t n,
		   char *err, size_t errlen);

/* Maps bytes of host memory (anonymous or memfd; noreserve: MAP_NORESERVE). */
int gmvm_ram_map(struct gmvm_ram *r, uint64_t bytes, bool memfd, bool noreserve);
void gmvm_ram_unmap(struct gmvm_ram *r);

/* The slot flags' KVM counterparts. */
uint32_t gmvm_kvm_flags(uint32_t space_flags);

#endif
